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


def _unit(*tensors: torch.Tensor) -> float:
    """The largest magnitude among ``tensors`` (1 if all are 0 or it is not finite): dividing by it first keeps
    the Frobenius norms below from under- or overflowing (torch sums the squares as they are: a gradient
    of size 1e-171 has norm 0 there, and the ratio came out NaN)."""
    top = max(float(t.detach().abs().max()) if t.numel() else 0.0 for t in tensors)
    return top if 0 < top < float("inf") else 1.0


def relative_error(A: torch.Tensor, B: torch.Tensor) -> float:
    """``‖A − B‖_F / ‖B‖_F`` (0 where ``A`` equals ``B``, zeros included; ``inf`` for ``A ≠ B = 0``)."""
    s = _unit(A, B)
    diff = float(torch.linalg.norm((A - B) / s).detach())
    if diff == 0:
        return 0.0
    norm_b = float(torch.linalg.norm(B / s).detach())
    return diff / norm_b if norm_b > 0 else float("inf")


def symmetry_error(A: torch.Tensor) -> float:
    """``‖A − Aᵀ‖_F / ‖A‖_F``."""
    s = _unit(A)
    return float(torch.linalg.norm((A - A.T) / s).detach() / torch.linalg.norm(A / s).detach())
