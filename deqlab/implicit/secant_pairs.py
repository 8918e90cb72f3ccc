"""Secant pairs of a DEQ's loss: steps ``s_i`` in the parameters and the changes ``y_i`` of the
implicit gradient they cause, ``y_i = ∇L(θ₀ + s_i) − ∇L(θ₀) ≈ H s_i`` (seed 004 applied to a DEQ).

The gradients are exact implicit gradients (one adjoint solve per sample,
:func:`deqlab.implicit.hessian.deq_gradient`); the reference Hessian is the closed form
(:func:`deqlab.implicit.hessian.model_hessian`). The unrolled-loss helpers are the independent
autodiff route the closed form is checked against. ``θ`` is flattened as in :mod:`deqlab.implicit.params`.
Shapes: ``x`` (batch, n_x), ``y`` (batch, n_y), ``θ`` (P,), pairs ``X, Y`` (P, k).

Device: everything runs on the device of ``θ`` (and ``x``, ``y``, the model); the pairs are returned as
host NumPy arrays for :mod:`deqlab.lowrank` (copied with ``.detach().cpu()``), and the random directions
of :func:`krylov_deq_pairs` are drawn on the generator's device (a CPU generator gives the same
directions on every device) and moved to ``θ``'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from deqlab.implicit.hessian import deq_gradient, model_hessian
from deqlab.implicit.params import flatten, loss_at, model_params
from deqlab.implicit.params import unflatten as unflatten_params

if TYPE_CHECKING:  # the model type only: implicit/ sits below models/
    from deqlab.models.tanh_deq import TanhDEQ


def n_params(n_z: int, n_x: int, n_y: int) -> int:
    """``P`` of :class:`TanhDEQ`: ``n_z² + n_z + n_z·n_x + n_y·n_z + n_y``."""
    return n_z * n_z + n_z + n_z * n_x + n_y * n_z + n_y


def flat_params(model: TanhDEQ) -> torch.Tensor:
    """θ ``(P,)`` of ``deqlab.implicit.params``: ``W_z`` (row-major), ``b_z``, ``U_z``, ``W_y``, ``b_y``; float64."""
    return flatten(model_params(model, torch.float64))


def unflatten(model: TanhDEQ, theta: torch.Tensor) -> dict[str, torch.Tensor]:
    """θ back to the parameter groups ``{"W_z", "b_z", "U_z", "W_y", "b_y"}`` (differentiably)."""
    return unflatten_params(theta, model_params(model, theta.dtype))


def _layer(p: dict, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.tanh(z @ p["W_z"].T + p["b_z"] + x @ p["U_z"].T)


def _loss_at(p: dict, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``L = (1/2B) Σ_b ‖W_y z_b + b_y − y_b‖²``: the mean of ``deqlab.implicit``'s summed loss."""
    return loss_at(p, z, y) / y.shape[0]


def unrolled_loss(model: TanhDEQ, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor, layers: int) -> torch.Tensor:
    """The loss through ``layers`` weight-tied layers from ``z⁰ = 0`` (differentiable in θ): the
    independent autodiff route the closed-form derivatives are checked against."""
    p = unflatten(model, theta)
    z = torch.zeros(x.shape[0], model.n_z, dtype=theta.dtype, device=theta.device)
    for _ in range(layers):
        z = _layer(p, z, x)
    return _loss_at(p, z, y)


def unrolled_residual(model: TanhDEQ, theta: torch.Tensor, x: torch.Tensor, layers: int) -> float:
    """``max_b ‖f(z^L) − z^L‖`` of the unrolled solve (how close ``z^L`` is to ``z*``)."""
    p = unflatten(model, theta.detach())
    z = torch.zeros(x.shape[0], model.n_z, dtype=theta.dtype, device=theta.device)
    for _ in range(layers):
        z = _layer(p, z, x)
    return float(torch.linalg.vector_norm(_layer(p, z, x) - z, dim=-1).max())


def exact_deq_hessian(model: TanhDEQ, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Exact Hessian ``∇²_θ L`` ``(P, P)`` of the mean loss (θ as in :func:`flat_params`), float64.

    The closed form of ``deqlab hessian`` (:func:`deqlab.implicit.hessian.model_hessian`, which sums
    over the batch) divided by the batch size. ``tests/test_lowrank_deq.py`` checks it against
    ``torch.func.hessian`` through a converged unrolled solve and against finite differences.
    """
    return model_hessian(model, x, y) / x.shape[0]


def implicit_gradient(model: TanhDEQ, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``∇_θ L`` of the mean loss at the equilibrium for parameters ``θ`` ``(P,)``: one adjoint solve
    per sample (:func:`deqlab.implicit.hessian.deq_gradient`), divided by the batch size."""
    p = unflatten(model, theta.detach())
    return deq_gradient(**p, x=x.to(theta.dtype), y=y.to(theta.dtype)) / x.shape[0]


def _host(t: torch.Tensor):
    """``t`` as a host NumPy array (device -> host copy when ``t`` lives on an accelerator)."""
    return t.detach().cpu().numpy()


def _draw(P: int, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """``N(0, I)`` of size ``P`` from ``generator`` on its own device, moved to ``like``'s device."""
    return torch.randn(P, generator=generator, dtype=like.dtype, device=generator.device).to(like.device)


def deq_pairs(model, theta0, x, y, directions: torch.Tensor, *, eps: float, difference: str):
    """Pairs ``s_i = eps·d_i``, ``y_i = ∇L(θ₀ + s_i) − ∇L(θ₀)`` (forward) or
    ``(∇L(θ₀ + s_i) − ∇L(θ₀ − s_i))/2`` (central); returns host numpy ``(P, k)`` arrays ``X, Y``
    (moved off ``θ₀``'s device)."""
    g0 = implicit_gradient(model, theta0, x, y)
    Xs, Ys = [], []
    for d in directions.T:
        s = eps * d
        gp = implicit_gradient(model, theta0 + s, x, y)
        yv = gp - g0 if difference == "forward" else (gp - implicit_gradient(model, theta0 - s, x, y)) / 2
        Xs.append(s)
        Ys.append(yv)
    return _host(torch.stack(Xs, 1)), _host(torch.stack(Ys, 1))


def krylov_deq_pairs(model, theta0, x, y, k: int, *, eps: float, difference: str, generator: torch.Generator):
    """Pairs along Krylov directions (Lanczos with finite-difference Hessian-vector products):
    ``d₁`` random, ``d_{i+1}`` = ``y_i`` orthogonalised (twice) against ``d₁ … d_i`` and normalised,
    so ``span(d₁ … d_k) ≈ K_k(H, d₁)``, the space where the large eigenvalues converge first.
    A direction that vanishes (invariant subspace) is replaced by a random one. Returns ``X, Y``."""
    P = theta0.numel()
    g0 = implicit_gradient(model, theta0, x, y)
    D = torch.zeros(P, 0, dtype=theta0.dtype, device=theta0.device)
    Xs, Ys = [], []
    v = _draw(P, generator, theta0)
    for _ in range(k):
        for _ in range(2):
            v = v - D @ (D.T @ v)
        if torch.linalg.vector_norm(v) <= 1e-8 * max(float(torch.linalg.vector_norm(Ys[-1])) if Ys else 1.0, 1e-300):
            v = _draw(P, generator, theta0)
            for _ in range(2):
                v = v - D @ (D.T @ v)
        d = v / torch.linalg.vector_norm(v)
        D = torch.cat([D, d[:, None]], 1)
        s = eps * d
        gp = implicit_gradient(model, theta0 + s, x, y)
        yv = gp - g0 if difference == "forward" else (gp - implicit_gradient(model, theta0 - s, x, y)) / 2
        Xs.append(s)
        Ys.append(yv)
        v = yv.clone()
    return _host(torch.stack(Xs, 1)), _host(torch.stack(Ys, 1))
