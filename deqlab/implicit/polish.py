"""Polishing a tanh DEQ's fixed point to the accuracy its conditioning allows (issue 11 item 2).

Every derivative of the closed form (:mod:`deqlab.implicit.hessian`, :mod:`deqlab.implicit.hvp`) is a
smooth function of ``z*``, with a sensitivity that grows like ``cond₂(I − J)``: a solver stopped at
``‖f(z) − z‖ ≤ δ`` leaves ``z`` up to ``cond₂(I − J)·δ`` away from ``z*`` (along the eigenvector of
``J`` whose eigenvalue is near 1), and ``Z = (I − J)⁻¹ ∂f/∂θ`` amplifies that again. Near a fold
(``ρ(J) → 1``) a Hessian from a fixed point "converged" to 1e-14 is then only good to 1e-10 … 1e-7.

The polish is a chord (simplified Newton) iteration for ``g(z) = f(z) − z = 0``::

    (I − J₀) δ = f(z_k) − z_k,    z_{k+1} = z_k + δ,      J₀ = diag(1 − z₀²) W_z  (per sample)

with ONE per-sample LU of ``I − J₀`` at the solver's point ``z₀`` (the same factorisation the closed
form builds), so each step costs two triangular solves. Its contraction factor is
``‖(I − J₀)⁻¹ (J(z_k) − J₀)‖ ≈ cond₂(I − J)·‖z_k − z₀‖``: tiny when the solver stopped close.

What limits the result is not the iteration but the residual's own rounding: in float64,
``f(z) − z`` carries an error of about ``ε·‖z‖`` (1e-16), which the step amplifies by up to
``cond₂(I − J)``. The residual (and the iterate) are therefore carried in numpy's ``longdouble``
(x87 extended precision, 64-bit mantissa, ``ε ≈ 1.1e-19``, on x86-64 Linux) and ``z`` is rounded to the
working dtype once at the end: a Hessian at the polished point then matches one at a
correctly-rounded ``z*`` to ≈ ``cond₂(I − J)·1e-19`` (measured ≤ 1e-12 up to ``cond₂ = 1e4``; with a
float64 residual the same iteration stalls at 1e-11 … 3e-11 already at ``cond₂ ≈ 4e3``). Where
``longdouble`` is plain float64 (some platforms), :data:`EXTENDED_PRECISION` is ``False`` and the polish
still reaches the float64 floor.

Safeguard: a step is kept for a sample only while it lowers that sample's residual, so a start far from
any fixed point (where the chord iteration need not contract) is returned unchanged.

Device: a host route (``longdouble`` exists only in NumPy). The inputs are copied to the host with
``.detach().cpu()``, the LU and the steps run there, and every tensor of the :class:`PolishResult` is
moved back to ``z0``'s device (``z`` in ``z0``'s dtype).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from deqlab.errors import InputError, require_count

#: The dtype the residual is evaluated in (numpy ``longdouble``).
RESIDUAL_DTYPE = np.longdouble
#: Whether :data:`RESIDUAL_DTYPE` carries more precision than float64 on this platform.
EXTENDED_PRECISION = bool(np.finfo(np.longdouble).eps < np.finfo(np.float64).eps)
#: Chord steps at most; from a solver stopped at 1e-14 two or three suffice up to cond₂ = 1e5.
MAX_STEPS = 8


@dataclass
class PolishResult:
    """The polished fixed point and what the polish did.

    Attributes:
        z: ``(B, N)`` the polished point, in the dtype and on the device of the start (the polish itself
            runs on the CPU).
        residual_before: ``(B,)`` ``‖f(z₀) − z₀‖₂`` at the start (evaluated in :data:`RESIDUAL_DTYPE`).
        residual: ``(B,)`` ``‖f(z) − z‖₂`` at the returned point (before rounding to the working dtype).
        moved: ``(B,)`` ``‖z − z₀‖₂``: how far the polish moved each sample.
        steps: chord steps taken.
    """

    z: torch.Tensor
    residual_before: torch.Tensor
    residual: torch.Tensor
    moved: torch.Tensor
    steps: int


def _extended(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float64).numpy().astype(RESIDUAL_DTYPE)


def tanh_residual(W_z: np.ndarray, c: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``f(z) − z = tanh(z W_zᵀ + c) − z`` for ``z`` ``(B, N)``, ``c = x U_zᵀ + b_z`` ``(B, N)``, in the arrays' dtype."""
    return np.tanh(z @ W_z.T + c) - z


def polish_tanh_equilibrium(W_z, b_z, U_z, x, z0: torch.Tensor, *, max_steps: int = MAX_STEPS) -> PolishResult:
    """Chord-polish ``z0`` ``(B, N)`` towards the fixed point of ``z = tanh(W_z z + U_z x + b_z)`` nearest it.

    Shapes: ``W_z (N, N)``, ``b_z (N,)``, ``U_z (N, d)``, ``x (B, d)``. See the module docstring for
    the iteration, its accuracy, and the safeguard. No autograd graph is built. Runs on the host; the
    result lives on ``z0.device`` (module docstring).
    """
    max_steps = require_count("max_steps", max_steps, minimum=0)
    N = W_z.shape[0]
    if z0.ndim != 2 or z0.shape[1] != N or x.ndim != 2 or x.shape[0] != z0.shape[0]:
        raise InputError(f"z0 must be (B, N = {N}) for x (B, d); got z0 {tuple(z0.shape)}, x {tuple(x.shape)}")
    dtype = z0.dtype
    W = _extended(W_z)
    c = _extended(x) @ _extended(U_z).T + _extended(b_z)
    z = _extended(z0)
    r = tanh_residual(W, c, z)
    norm0 = np.sqrt((r * r).sum(axis=1))
    best_z, best_norm = z.copy(), norm0.copy()
    with torch.no_grad():  # on the CPU, whatever the device: the residual lives in numpy anyway
        z64 = z0.detach().cpu().to(torch.float64)
        J0 = (1 - z64 * z64)[:, :, None] * W_z.detach().cpu().to(torch.float64)
        # lu_factor_ex: a singular I − J0 (no derivatives exist there, which the callers say) made lu_factor raise
        # torch's 'U[1,1] is zero ...' here; its non-finite chord step now ends the polish instead (below)
        lu = torch.linalg.lu_factor_ex(torch.eye(z64.shape[1], dtype=torch.float64, device="cpu") - J0)[:2]
        steps = 0
        for steps in range(1, max_steps + 1):
            delta = torch.linalg.lu_solve(*lu, torch.from_numpy(r.astype(np.float64))[:, :, None])[..., 0].numpy()
            if not np.isfinite(delta).all():
                break
            z = z + delta.astype(RESIDUAL_DTYPE)
            r = tanh_residual(W, c, z)
            norm = np.sqrt((r * r).sum(axis=1))
            progress = norm < 0.5 * best_norm  # at least halved: still converging, not wandering at the floor
            better = norm < best_norm
            best_z[better], best_norm[better] = z[better], norm[better]
            # a step 100x below float64's resolution of z cannot change the rounded point any more
            if np.abs(delta).max() <= 1e-2 * np.finfo(np.float64).eps * max(1.0, float(np.abs(z).max())):
                break
            if not progress.any():
                break
    moved = np.sqrt(((best_z - _extended(z0)) ** 2).sum(axis=1))
    def as_tensor(a):
        return torch.from_numpy(np.asarray(a, dtype=np.float64)).to(z0.device)

    return PolishResult(as_tensor(best_z).to(dtype), as_tensor(norm0), as_tensor(best_norm), as_tensor(moved), steps)
