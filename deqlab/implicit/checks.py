"""Independent routes to the same derivatives, used to check the closed form (tests, ``deqlab hessian``).

1. :func:`fd_hessian`: central finite differences of the implicit gradient, column by column,
   ``H[:, i] ≈ (∇L(θ + εeᵢ) − ∇L(θ − εeᵢ)) / 2ε`` with a fresh tight forward solve at each point.
   Error ``O(ε²)`` (truncation) ``+ O(δ/ε)`` (solve tolerance ``δ``, round-off).
2. :func:`unrolled_hessian`: ``torch.func.hessian`` of the loss after ``steps`` weight-tied layers from
   ``z⁰`` (zeros, or a given start held constant). Exact autodiff of a *different* function whose
   derivatives converge to the DEQ's geometrically (rate = spectral radius of ``J``).
3. :func:`layer_hessian`: ``torch.func.hessian`` through the implicit layer
   (:mod:`deqlab.implicit.layer`), i.e. ``jacfwd(jacrev)`` over its IFT rules.

All take the named parameters (``params`` dict), the groups forming ``θ`` (order in
:mod:`deqlab.implicit.params`), a batch ``x (B, d)`` and targets ``y (B, n_y)``.
"""

from __future__ import annotations

import torch

from deqlab.implicit.hessian import TIGHT, deq_gradient
from deqlab.implicit.layer import SolveOptions, options_or, tanh_equilibrium, tanh_map
from deqlab.implicit.params import flatten, loss_at, unflatten
from deqlab.solvers.result import tensor_norm


def unrolled_loss(theta, params, groups, x, y, steps: int, z0=None):
    """``L`` after ``steps`` layers ``z ← tanh(W_z z + U_z x + b_z)`` from ``z0`` (zeros by default)."""
    p = unflatten(theta, params, groups)
    z = torch.zeros(x.shape[0], p["W_z"].shape[0], dtype=theta.dtype, device=theta.device) if z0 is None else z0.detach()
    for _ in range(steps):
        z = tanh_map(z, p["W_z"], p["b_z"], p["U_z"], x)
    return loss_at(p, z, y)


def unrolled_hessian(params, groups, x, y, *, steps: int = 300, z0=None) -> torch.Tensor:
    """``torch.func.hessian`` through a ``steps``-layer unrolled solve; ``(P, P)``."""
    theta = flatten(params, groups)
    return torch.func.hessian(lambda t: unrolled_loss(t, params, groups, x, y, steps, z0))(theta)


def layer_loss(theta, params, groups, x, y, opts: SolveOptions | None = None):
    """``L`` with ``h*`` from the implicit layer (differentiable at any order by the IFT)."""
    p = unflatten(theta, params, groups)
    h = tanh_equilibrium(p["W_z"], p["b_z"], p["U_z"], x, opts=opts)
    return loss_at(p, h, y)


def layer_hessian(params, groups, x, y, *, opts: SolveOptions | None = None) -> torch.Tensor:
    """``torch.func.hessian`` (forward-over-reverse) through the implicit layer; ``(P, P)``."""
    theta = flatten(params, groups)
    return torch.func.hessian(lambda t: layer_loss(t, params, groups, x, y, opts))(theta)


def fd_hessian(params, groups, x, y, *, step: float = 1e-5, opts: SolveOptions | None = None) -> torch.Tensor:
    """Central differences of the implicit gradient (:func:`deq_gradient`), one column per parameter.

    Not symmetrised: its asymmetry is part of what it measures. ``2P`` forward solves.
    """
    theta = flatten(params, groups)
    opts = options_or(opts, TIGHT)
    cols = []
    for i in range(theta.numel()):
        e = torch.zeros_like(theta)
        e[i] = step
        gp = _grad_at(theta + e, params, groups, x, y, opts)
        gm = _grad_at(theta - e, params, groups, x, y, opts)
        cols.append((gp - gm) / (2 * step))
    return torch.stack(cols, dim=1)


def _grad_at(theta, params, groups, x, y, opts):
    p = unflatten(theta, params, groups)
    return deq_gradient(p["W_z"], p["b_z"], p["U_z"], p["W_y"], p["b_y"], x, y, groups=groups, opts=opts)


def relative_error(A: torch.Tensor, B: torch.Tensor) -> float:
    """``‖A − B‖_F / ‖B‖_F`` (0 where ``A`` equals ``B``, zeros included; ``inf`` for ``A ≠ B = 0``), the norms by
    :func:`~deqlab.solvers.result.tensor_norm` (torch sums the squares as they are: a gradient of size 1e-171
    had norm 0 and the ratio came out NaN)."""
    diff = tensor_norm(A - B)
    if diff == 0:
        return 0.0
    norm_b = tensor_norm(B)
    return diff / norm_b if norm_b > 0 else float("inf")


def symmetry_error(A: torch.Tensor) -> float:
    """``‖A − Aᵀ‖_F / ‖A‖_F`` (NaN for ``A = 0``)."""
    norm = tensor_norm(A)
    return tensor_norm(A - A.T) / norm if norm > 0 else float("nan")
