"""Anderson acceleration (type II) for ``z = f(z)``, batched.

With the last ``m`` iterates ``X = [z_{k−m+1} … z_k]`` and residuals ``G = [f(z_i) − z_i]``, solve

    min_α ‖α G‖²  subject to  Σα = 1,

through the bordered system ``[[0, 1ᵀ], [1, G Gᵀ + λI]] [ν; α] = [1; 0]`` and step
``z_{k+1} = β Σ α_i f(z_i) + (1 − β) Σ α_i z_i``. Following Walker & Ni (2011) and the
implicit-layers tutorial of Kolter, Duvenaud & Johnson. The Tikhonov term is scaled by the mean of
``diag(G Gᵀ)`` so that it stays relative as residuals fall to 1e-10 and below, and never drops below
``10·eps`` of the dtype; a sample whose bordered system is still singular takes a plain step.
"""

from __future__ import annotations

from typing import Callable

import torch

from deqlab.solvers.result import Monitor, SolverResult


@torch.no_grad()
def anderson(
    f: Callable[[torch.Tensor], torch.Tensor],
    z0: torch.Tensor,
    *,
    atol: float = 1e-8,
    rtol: float = 0.0,
    max_iter: int = 200,
    memory: int = 10,
    lam: float = 1e-8,
    beta: float = 1.0,
) -> SolverResult:
    """Solve ``z = f(z)`` by Anderson acceleration.

    Args:
        f: batched map ``(batch, n) -> (batch, n)``.
        z0: starting point ``(batch, n)``.
        atol, rtol, max_iter: the shared stopping rule; ``max_iter`` counts evaluations of ``f``.
        memory: ``m``, the number of past iterates mixed.
        lam: relative Tikhonov regularisation of the least-squares problem.
        beta: mixing parameter ``β ∈ (0, 1]``.
    """
    if memory < 1:
        raise ValueError(f"memory must be >= 1, got {memory}")
    if not 0 < beta <= 1:
        raise ValueError(f"beta must lie in (0, 1], got {beta}")
    monitor = Monitor(z0, atol=atol, rtol=rtol, max_iter=max_iter, solver="anderson")
    # Below a few ulps the Tikhonov term would vanish in rounding (float32: lam = 1e-8 < eps).
    eps_reg = 10 * torch.finfo(z0.dtype).eps
    batch, n = z0.shape
    X = torch.zeros(batch, memory, n, dtype=z0.dtype, device=z0.device)
    F = torch.zeros_like(X)

    def evaluate(k: int, z: torch.Tensor) -> None:
        fz = f(z)
        monitor.n_fevals += 1
        monitor.observe(z, fz)
        X[:, k % memory], F[:, k % memory] = z, fz

    evaluate(0, z0)
    steps = 1
    if max_iter > 1 and not monitor.done:
        evaluate(1, F[:, 0].clone())
        steps = 2
    while steps < max_iter and not (monitor.done or monitor.hopeless):
        k = steps
        n_hist = min(k, memory)
        G = F[:, :n_hist] - X[:, :n_hist]                          # (batch, n_hist, n)
        GGt = torch.bmm(G, G.transpose(1, 2))                        # (batch, n_hist, n_hist)
        scale = GGt.diagonal(dim1=1, dim2=2).mean(-1).clamp_min(torch.finfo(z0.dtype).tiny)
        eye = torch.eye(n_hist, dtype=z0.dtype, device=z0.device)
        H = torch.zeros(batch, n_hist + 1, n_hist + 1, dtype=z0.dtype, device=z0.device)
        H[:, 0, 1:] = 1
        H[:, 1:, 0] = 1
        H[:, 1:, 1:] = GGt + max(lam, eps_reg) * scale[:, None, None] * eye
        rhs = torch.zeros(batch, n_hist + 1, 1, dtype=z0.dtype, device=z0.device)
        rhs[:, 0] = 1
        # solve_ex never raises on a singular sample; those samples get NaN weights and fall back below
        sol, info = torch.linalg.solve_ex(H, rhs)
        alpha = torch.where((info == 0)[:, None], sol[:, 1:, 0], torch.full_like(sol[:, 1:, 0], float("nan")))
        mixed_f = torch.einsum("bh,bhn->bn", alpha, F[:, :n_hist])
        mixed_x = torch.einsum("bh,bhn->bn", alpha, X[:, :n_hist])
        z_next = beta * mixed_f + (1 - beta) * mixed_x
        # A singular least-squares system gives NaN weights: fall back to a plain step there.
        bad = ~torch.isfinite(z_next).all(-1)
        z_next[bad] = F[bad, (k - 1) % memory]
        evaluate(k, z_next)
        steps += 1
    return monitor.result(steps)
