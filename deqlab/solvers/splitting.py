"""Operator-splitting solvers for monotone DEQs (Winston & Kolter, NeurIPS 2020, Sec. 4; seed 003).

The equilibrium ``z = σ(W z + c)`` with ``c = U x + b`` (shape ``(batch, n)``) and ``σ = prox_f`` is
the zero of ``F + ∂f`` with ``F(z) = (I − W) z − c``. Each method below takes the structure
``(W, c, σ)`` rather than a black-box map, and a step ``α > 0``:

* forward-backward (FB): ``z⁺ = prox_{αf}((1 − α) z + α (W z + c))``; converges for
  ``α < 2m/‖I − W‖₂²`` where ``m = λ_min(sym(I − W))`` (for ``α = 1`` it is plain fixed-point
  iteration of the layer).
* Peaceman–Rachford (PR), with the resolvent ``V = (I + α(I − W))⁻¹``::

      u½ = 2z − u,   z½ = V(u½ + α c),   u⁺ = 2z½ − u½,   z⁺ = prox_{αf}(u⁺);

  converges for every ``α > 0`` when ``I − W ⪰ mI``, ``m > 0``.
* Douglas–Rachford (DR): the same half steps with the averaged update ``u⁺ = u + z½ − z``;
  converges for every ``α > 0``.

``V`` is never formed: ``I + α(I − W)`` is LU-factored once per call (``torch.linalg.lu_factor``;
it is not symmetric when ``B ≠ Bᵀ``) and the factors are reused for every iteration and every
sample of the batch (one ``lu_solve`` with ``batch`` right-hand sides per iteration).

``prox_{αf}`` is ``σ`` only for ReLU (an indicator function); for tanh and softplus it is computed by
:meth:`deqlab.models.mondeq.ProxNonlinearity.prox`.

Stopping rule: the shared one of :mod:`deqlab.solvers.result`, on the layer map ``f(z) = σ(Wz + c)``
at each iterate ``z`` (``‖f(z) − z‖ ≤ atol + rtol‖f(z)‖``), so iteration counts compare directly
with Anderson and fixed-point iteration. Winston & Kolter's code stops on ``‖z⁺ − z‖/(1e−6 + ‖z⁺‖)``
instead. Each iteration costs one product with ``W`` (the residual), plus one ``lu_solve`` for PR/DR;
``n_fevals`` counts evaluations of ``f``. ``extras`` holds ``alpha`` and ``factorizations``.
"""

from __future__ import annotations

from typing import Callable

import torch

from deqlab.solvers.prox import ProxNonlinearity, get_nonlinearity
from deqlab.solvers.result import Monitor, SolverResult


def _nl(nonlinearity: "str | ProxNonlinearity") -> ProxNonlinearity:
    return get_nonlinearity(nonlinearity) if isinstance(nonlinearity, str) else nonlinearity


def _check(W: torch.Tensor, c: torch.Tensor, alpha: float) -> None:
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    n = W.shape[0]
    if W.shape != (n, n) or c.ndim != 2 or c.shape[1] != n:
        raise ValueError(f"W must be (n, n) and c (batch, n); got W {tuple(W.shape)}, c {tuple(c.shape)}")


def layer_map(W: torch.Tensor, c: torch.Tensor, nonlinearity: "str | ProxNonlinearity") -> Callable:
    """The layer ``f(z) = σ(W z + c)`` as a batched map, for the black-box solvers."""
    nl = _nl(nonlinearity)
    return lambda z: nl.sigma(z @ W.T + c)


class Resolvent:
    """``v ↦ (I + α(I − W))⁻¹ v`` for a batch ``v (batch, n)``, from one LU factorisation."""

    def __init__(self, W: torch.Tensor, alpha: float):
        n = W.shape[0]
        eye = torch.eye(n, dtype=W.dtype, device=W.device)
        self.LU, self.pivots = torch.linalg.lu_factor(eye + alpha * (eye - W))

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        return torch.linalg.lu_solve(self.LU, self.pivots, v.T).T

    def transposed(self, v: torch.Tensor) -> torch.Tensor:
        """``v ↦ (I + α(I − Wᵀ))⁻¹ v`` from the same factors."""
        return torch.linalg.lu_solve(self.LU, self.pivots, v.T, adjoint=True).T


@torch.no_grad()
def forward_backward(
    W: torch.Tensor,
    c: torch.Tensor,
    z0: torch.Tensor,
    *,
    nonlinearity: "str | ProxNonlinearity" = "relu",
    alpha: float = 0.5,
    atol: float = 1e-8,
    rtol: float = 0.0,
    max_iter: int = 500,
) -> SolverResult:
    """Forward-backward splitting ``z⁺ = prox_{αf}((1 − α) z + α (W z + c))``.

    Args:
        W: ``(n, n)``; c: ``U x + b``, ``(batch, n)``; z0: start ``(batch, n)``.
        nonlinearity: ``σ = prox_f`` (name or :class:`ProxNonlinearity`).
        alpha: step ``α > 0``; convergence is guaranteed for ``α < 2m/‖I − W‖₂²``
            (:func:`deqlab.models.mondeq.forward_backward_bound`; not computed here: it needs an SVD).
    """
    _check(W, c, alpha)
    nl = _nl(nonlinearity)
    monitor = Monitor(z0, atol=atol, rtol=rtol, max_iter=max_iter, solver="forward_backward")
    z = z0
    steps = 0
    for steps in range(1, max_iter + 1):
        v = z @ W.T + c
        monitor.n_fevals += 1
        monitor.observe(z, nl.sigma(v))
        if monitor.done or monitor.hopeless:
            break
        z = nl.prox((1 - alpha) * z + alpha * v, alpha)
    return monitor.result(steps, alpha=alpha, factorizations=0)


def _rachford(W, c, z0, *, nonlinearity, alpha, atol, rtol, max_iter, averaged: bool, name: str) -> SolverResult:
    _check(W, c, alpha)
    nl = _nl(nonlinearity)
    monitor = Monitor(z0, atol=atol, rtol=rtol, max_iter=max_iter, solver=name)
    resolvent = Resolvent(W, alpha)
    shift = alpha * c
    u = z0.clone()
    z = nl.prox(u, alpha)
    steps = 0
    for steps in range(1, max_iter + 1):
        monitor.n_fevals += 1
        monitor.observe(z, nl.sigma(z @ W.T + c))
        if monitor.done or monitor.hopeless:
            break
        u_half = 2 * z - u
        z_half = resolvent(u_half + shift)
        u = u + z_half - z if averaged else 2 * z_half - u_half
        z = nl.prox(u, alpha)
    return monitor.result(steps, alpha=alpha, factorizations=1)


@torch.no_grad()
def peaceman_rachford(
    W: torch.Tensor,
    c: torch.Tensor,
    z0: torch.Tensor,
    *,
    nonlinearity: "str | ProxNonlinearity" = "relu",
    alpha: float = 1.0,
    atol: float = 1e-8,
    rtol: float = 0.0,
    max_iter: int = 500,
) -> SolverResult:
    """Peaceman–Rachford splitting; ``u⁰ = z0``, ``z⁰ = prox_{αf}(u⁰)`` (arguments as :func:`forward_backward`)."""
    return _rachford(W, c, z0, nonlinearity=nonlinearity, alpha=alpha, atol=atol, rtol=rtol, max_iter=max_iter,
                     averaged=False, name="peaceman_rachford")


@torch.no_grad()
def douglas_rachford(
    W: torch.Tensor,
    c: torch.Tensor,
    z0: torch.Tensor,
    *,
    nonlinearity: "str | ProxNonlinearity" = "relu",
    alpha: float = 1.0,
    atol: float = 1e-8,
    rtol: float = 0.0,
    max_iter: int = 500,
) -> SolverResult:
    """Douglas–Rachford splitting ``u⁺ = u + z½ − z`` (arguments as :func:`forward_backward`)."""
    return _rachford(W, c, z0, nonlinearity=nonlinearity, alpha=alpha, atol=atol, rtol=rtol, max_iter=max_iter,
                     averaged=True, name="douglas_rachford")


@torch.no_grad()
def pitfall_forward_backward_sigma(
    W: torch.Tensor,
    c: torch.Tensor,
    z0: torch.Tensor,
    *,
    nonlinearity: "str | ProxNonlinearity" = "tanh",
    alpha: float = 0.5,
    iterations: int = 2000,
) -> torch.Tensor:
    """PITFALL, do not use: ``z⁺ = σ((1 − α) z + α (W z + c))`` with ``σ`` in place of ``prox_{αf}``.

    The update as often written (it is right for ReLU, whose ``prox_{αf} = σ`` for all ``α``). For
    tanh or softplus and ``α ≠ 1`` its fixed point solves ``σ⁻¹(z) = (1 − α) z + α (W z + c)``, not
    the layer's ``σ⁻¹(z) = W z + c``: it converges to the wrong point (``tests/test_splitting.py``).
    Returns the last iterate ``(batch, n)``.
    """
    _check(W, c, alpha)
    nl = _nl(nonlinearity)
    z = z0
    for _ in range(iterations):
        z = nl.sigma((1 - alpha) * z + alpha * (z @ W.T + c))
    return z


@torch.no_grad()
def peaceman_rachford_backward(
    W: torch.Tensor,
    d: torch.Tensor,
    v: torch.Tensor,
    *,
    alpha: float = 1.0,
    atol: float = 1e-12,
    rtol: float = 0.0,
    max_iter: int = 1000,
    resolvent: "Resolvent | None" = None,
) -> SolverResult:
    """The implicit backward ``g = (I − Wᵀ D)⁻¹ v`` by Peaceman–Rachford (Winston & Kolter 2020, Sec. 4).

    With ``D = diag(d)``, ``d = σ'(W z* + c) ∈ [0, 1]`` (``(batch, n)``) and ``ũ = D g``, the equation
    ``g − Wᵀ D g = v`` becomes ``0 ∈ (I − Wᵀ) ũ − v + ∂f̃(ũ)`` with the convex
    ``f̃(ũ) = ½ ũᵀ (D⁻¹ − I) ũ`` (``ũᵢ = 0`` where ``dᵢ = 0``): again a strongly monotone plus a
    proximable operator. ``prox_{αf̃}(u)ᵢ = dᵢ uᵢ / (dᵢ + α(1 − dᵢ))`` and the resolvent of
    ``I − Wᵀ`` is the transpose of the forward one, so the same LU factors serve (pass the forward's
    ``resolvent`` to reuse them). Then ``g = v + Wᵀ ũ``. The stopping rule is the shared one on the
    linear map ``g ↦ v + Wᵀ(d ⊙ g)``. Returns a :class:`SolverResult` whose ``z`` is ``g`` ``(batch, n)``.
    """
    _check(W, v, alpha)
    monitor = Monitor(v, atol=atol, rtol=rtol, max_iter=max_iter, solver="peaceman_rachford_backward")
    res = resolvent or Resolvent(W, alpha)
    shrink = d / (d + alpha * (1 - d))
    u = torch.zeros_like(v)
    ut = torch.zeros_like(v)
    steps = 0
    for steps in range(1, max_iter + 1):
        g = v + ut @ W
        monitor.n_fevals += 1
        monitor.observe(g, v + (d * g) @ W)
        if monitor.done or monitor.hopeless:
            break
        u_half = 2 * ut - u
        ut_half = res.transposed(u_half + alpha * v)
        u = 2 * ut_half - u_half
        ut = shrink * u
    return monitor.result(steps, alpha=alpha, factorizations=0 if resolvent is not None else 1)


SplittingSolver = Callable[..., SolverResult]

#: Config name → splitting solver ``(W, c, z0, *, nonlinearity, alpha, atol, rtol, max_iter)``.
SPLITTING_SOLVERS: dict[str, SplittingSolver] = {
    "forward_backward": forward_backward,
    "peaceman_rachford": peaceman_rachford,
    "douglas_rachford": douglas_rachford,
}


def get_splitting_solver(name: str) -> SplittingSolver:
    try:
        return SPLITTING_SOLVERS[name]
    except KeyError:
        raise ValueError(f"unknown splitting solver {name!r}; choose one of: {', '.join(SPLITTING_SOLVERS)}") from None
