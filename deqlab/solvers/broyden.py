"""Broyden's ("good") method for the root of ``g(z) = f(z) − z``, batched, limited memory.

The inverse Jacobian estimate ``B ≈ (∂g/∂z)⁻¹`` starts at ``B₀ = −I`` (so the first step is a plain
fixed-point step) and takes the rank-one Sherman–Morrison update of Broyden (1965)::

    s = z_{k+1} − z_k,   y = g_{k+1} − g_k,
    B ← B + (s − B y)(sᵀ B) / (sᵀ B y).

``B = −I + U Vᵀ`` is stored in factored form (``U, V`` of shape ``(batch, memory, n)``: one
contiguous row per update, so slices and writes never copy the factors), as in
Bai et al.'s DEQ code and torchdeq, so memory is ``O(batch · n · memory)``. The step is the full
Newton-like step ``z ← z − B g``.

When the memory is full, the correction ``C = U Vᵀ`` (rank ≤ ``memory``) is replaced by its best
approximation of rank ``memory − drop`` in the 2-norm (truncated SVD): the Broyden Rank Reduction
of van de Rotten & Verduyn Lunel (2005). Restarting from ``−I`` instead throws away everything the
method learnt (on ``tanh(0.99 Q z + x)``, ``Q`` orthogonal, ``n = 256``: 4–6× the evaluations of a
Broyden that keeps every pair), and dropping the oldest rank-one term of the product form does not
give a Broyden matrix at all (it diverges there). The SVD costs ``O(n · memory²)`` per sample
(QR of ``Uᵀ`` and ``Vᵀ``, SVD of the ``memory × memory`` core ``R_U R_Vᵀ``); it runs once every
``drop`` updates, so its amortised cost is ``O(n · memory²/drop)`` per step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from deqlab.errors import InputError, require_count
from deqlab.solver_options import check_solver_options
from deqlab.solvers.result import Monitor, SolverResult, all_finite


def _apply(U: torch.Tensor, V: torch.Tensor, x: torch.Tensor, used: int) -> torch.Tensor:
    """``B x`` with ``B = −I + U Vᵀ``; ``x`` is ``(batch, n)``."""
    if used == 0:
        return -x
    # Row-vector products (xᵀ Vᵀ, then (xᵀVᵀ) U): torch's einsum/bmm with a column-vector right
    # factor is several times slower on CPU.
    coef = torch.bmm(x.unsqueeze(1), V[:, :used].transpose(1, 2))          # (batch, 1, used)
    return torch.baddbmm(x.unsqueeze(1), coef, U[:, :used], beta=-1)[:, 0]


def _apply_transpose(U: torch.Tensor, V: torch.Tensor, x: torch.Tensor, used: int) -> torch.Tensor:
    """``Bᵀ x`` with ``B = −I + U Vᵀ``."""
    if used == 0:
        return -x
    coef = torch.bmm(x.unsqueeze(1), U[:, :used].transpose(1, 2))          # (batch, 1, used)
    return torch.baddbmm(x.unsqueeze(1), coef, V[:, :used], beta=-1)[:, 0]


def _reduce_rank(U: torch.Tensor, V: torch.Tensor, keep: int) -> None:
    """Replace ``Σᵢ uᵢ vᵢᵀ = Uᵀ V`` (rows of ``U, V``: ``(batch, memory, n)``) in place by its best
    rank-``keep`` approximation, written into rows ``[0, keep)``; the other rows are zeroed. When
    the memory exceeds ``n`` the product has rank at most ``n`` and ``min(keep, n)`` rows are written.

    ``Uᵀ = Q_U R_U``, ``Vᵀ = Q_V R_V`` (thin QR), ``R_U R_Vᵀ = P Σ Rᵀ`` (SVD), so
    ``Uᵀ V = (Q_U P Σ)(Q_V R)ᵀ``; keep the ``keep`` leading singular triplets.
    """
    Qu, Ru = torch.linalg.qr(U.transpose(1, 2))                    # (batch, n, r), (batch, r, m), r = min(n, m)
    Qv, Rv = torch.linalg.qr(V.transpose(1, 2))
    P, sigma, Rh = torch.linalg.svd(Ru @ Rv.transpose(1, 2))      # singular values in descending order
    keep = min(keep, sigma.shape[-1])                              # memory > n: the rank is at most n anyway
    new_u = (Qu @ (P[:, :, :keep] * sigma[:, None, :keep])).transpose(1, 2)
    new_v = (Qv @ Rh[:, :keep].transpose(1, 2)).transpose(1, 2)
    U.zero_(), V.zero_()
    U[:, :keep], V[:, :keep] = new_u, new_v


@torch.no_grad()
def broyden(
    f: Callable[[torch.Tensor], torch.Tensor],
    z0: torch.Tensor,
    *,
    atol: float = 1e-8,
    rtol: float = 0.0,
    max_iter: int = 200,
    memory: int = 50,
    drop: int | None = None,
) -> SolverResult:
    """Solve ``z = f(z)`` by limited-memory good Broyden on ``g(z) = f(z) − z``.

    Args:
        f: batched map ``(batch, n) -> (batch, n)``.
        z0: starting point ``(batch, n)``.
        atol, rtol, max_iter: the shared stopping rule; ``max_iter`` counts evaluations of ``f``.
        memory: the largest rank of the correction ``B + I`` kept.
        drop: how much that rank is reduced (truncated SVD) when the memory is full; default
            ``max(1, memory // 5)`` (each reduction costs a QR of ``U`` and ``V`` and an SVD; batched small
            LAPACK calls are slow on CPU, so reduce in steps of a fifth of the memory). ``drop = memory``
            restarts from ``B = −I``.
    """
    check_solver_options("broyden", {"memory": memory})
    drop = max(1, memory // 5) if drop is None else require_count("drop", drop)
    if drop > memory:
        raise InputError(f"drop must be an integer in [1, memory = {memory}], got {drop!r}")
    monitor = Monitor(z0, atol=atol, rtol=rtol, max_iter=max_iter, solver="broyden")
    batch, n = z0.shape
    U = torch.zeros(batch, memory, n, dtype=z0.dtype, device=z0.device)
    V = torch.zeros_like(U)
    used = reductions = 0
    z = z0
    fz = f(z)
    monitor.n_fevals += 1
    monitor.observe(z, fz)
    g = fz - z
    steps = 1
    while steps < max_iter and not (monitor.done or monitor.hopeless):
        step = _apply(U, V, g, used).neg_().masked_fill_(monitor.best_ok[:, None], 0.0)   # freeze converged
        z_new = z + step
        fz_new = f(z_new)
        monitor.n_fevals += 1
        monitor.observe(z_new, fz_new)
        steps += 1
        g_new = fz_new - z_new
        s, y = step, g_new - g
        if used == memory:                                 # rank reduction; drop = memory restarts
            if drop == memory:
                U.zero_(), V.zero_()
            else:
                _reduce_rank(U, V, memory - drop)
            used = memory - drop
            reductions += 1
        By = _apply(U, V, y, used)
        sB = _apply_transpose(U, V, s, used)                              # Bᵀ s = (sᵀ B)ᵀ
        denom = (s * By).sum(-1)
        # Skip the update where sᵀBy vanishes (frozen or stagnating samples): it would blow up B.
        s_norm = s.norm(dim=-1)
        tiny = torch.finfo(z0.dtype).eps * s_norm * By.norm(dim=-1)
        usable = torch.isfinite(denom) & (denom.abs() > tiny) & (s_norm > 0)
        if bool(usable.all()):   # the common case: no masking (the same numbers, fewer operations)
            torch.div(s - By, denom[:, None], out=U[:, used])
            V[:, used] = sB
        else:
            safe = torch.where(usable, denom, torch.ones_like(denom))
            U[:, used] = torch.where(usable[:, None], (s - By) / safe[:, None], torch.zeros_like(s))
            V[:, used] = torch.where(usable[:, None], sB, torch.zeros_like(sB))
        used += 1
        # Non-finite trial points (a diverging sample) are not accepted as the next iterate; a finite
        # sum means every entry is finite, so the per-sample check runs only when one is not.
        if all_finite(g_new):
            z, g = z_new, g_new
        else:
            finite = torch.isfinite(g_new).all(-1)
            z = torch.where(finite[:, None], z_new, z)
            g = torch.where(finite[:, None], g_new, g)
    return monitor.result(steps, rank_reductions=reductions)
