"""Anderson acceleration (type II) for ``z = f(z)``, batched.

With the last ``m`` iterates ``z_i``, their images ``f(z_i)`` and residuals ``g_i = f(z_i) − z_i``
(rows of ``G``, shape ``(m, n)`` per sample), solve

    min_α ‖αᵀ G‖²  subject to  Σα = 1,

solved through the bordered system ``[[0, 1ᵀ], [1, K]] [ν; α] = [1; 0]`` with the regularised
Gram matrix ``K = G Gᵀ / s + λ I``, ``s = mean(diag(G Gᵀ))`` (Walker & Ni (2011); the
implicit-layers tutorial of Kolter, Duvenaud & Johnson). The closed form ``α = K⁻¹1 / (1ᵀK⁻¹1)``
gives the same weights in exact arithmetic but loses accuracy once residuals approach round-off:
an adjoint solve to ``atol = 1e-13`` stalled at 1.1e-13 with it (``tests/test_implicit_layer.py``),
and step

    z_{k+1} = β Σ α_i f(z_i) + (1 − β) Σ α_i z_i = Σ α_i f(z_i) − (1 − β) Σ α_i g_i.

Dividing by ``s`` keeps the Tikhonov term relative as residuals fall to 1e-10 and below (and keeps
``K`` of order one in float32); ``λ`` never drops below ``10·eps`` of the dtype. A sample whose system
is still singular (a zero residual, say) takes a plain step ``z_{k+1} = f(z_k)``.

Cost per iteration, beyond the evaluation of ``f``: ``f(z_k)`` and ``g_k`` are written into
preallocated ring buffers (``(batch, m, n)``), the Gram matrix gets one new row and column
(``G g_k``: ``O(batch · m · n)``, not the ``O(batch · m² · n)`` of rebuilding it), one batched
``(m+1) × (m+1)`` solve and one ``(1 × m)(m × n)`` product per sample for the mix. At small ``n``
the time is in the number of operations, not in their flops (batch 64, ``n = 50``, one thread: the
batched LU solve of the 64 bordered systems alone takes about as long as one evaluation of a tanh
layer), so the views into the buffers are made once and the per-step checks are a few reductions
on ``(batch, m)``; at ``n = 1024`` the two ``(1 × m)(m × n)`` products dominate.

Stall safeguard. Like every secant method, Anderson can be drawn to a point where ``‖f(z) − z‖`` is
small but not zero and hover there while plain iteration converges: on a tanh DEQ with ``n = 3``
(``m = 10 > n``; ``tests/test_solvers.py``) it stayed at residual 2e-2 for 2000 steps where fixed-point
iteration converges in 83 (ρ(J) = 0.66 at the fixed point); a smaller memory, another regulariser and
restarting from the best iterate did not help. So a sample whose best residual has not fallen for
``stall_patience`` evaluations switches to plain steps ``z_{k+1} = f(z_k)`` (its history keeps filling
with them), and back to mixing after another ``stall_patience`` evaluations without progress. On 1260
random tanh DEQs (``n`` 2–50, ``‖W‖`` scales 0.6–1.2, batch 4, patience 50;
``experiments/anderson_stall_study.py`` prints these counts) it switched in 9 solves:
5 that stalled to the budget converged, 3 converged sooner, 1 later (115 → 179 evaluations); the other
1251 solves are unchanged bit for bit, as the switch is never taken while a sample keeps improving.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from deqlab.errors import InputError, require_count
from deqlab.solver_options import check_solver_options
from deqlab.solvers.result import Monitor, SolverResult, check_image, describe


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
    stall_patience: int = 50,
) -> SolverResult:
    """Solve ``z = f(z)`` by Anderson acceleration.

    Args:
        f: batched map ``(batch, n) -> (batch, n)``.
        z0: starting point ``(batch, n)``.
        atol, rtol, max_iter: the shared stopping rule; ``max_iter`` counts evaluations of ``f``.
        memory: ``m``, the number of past iterates mixed.
        lam: relative Tikhonov regularisation of the least-squares problem.
        beta: mixing parameter ``β ∈ (0, 1]``.
        stall_patience: evaluations without a new best residual after which a sample switches between
            mixing and plain steps (module docstring); ``0`` never switches.
    """
    check_solver_options("anderson", {"memory": memory, "lam": lam, "beta": beta})
    require_count("stall_patience", stall_patience, minimum=0)
    monitor = Monitor(z0, atol=atol, rtol=rtol, max_iter=max_iter, solver="anderson")
    if z0.dtype not in (torch.float32, torch.float64):
        # (torch has no LU for float16/bfloat16: say so before the first step rather than in it)
        raise InputError(f"anderson solves its least-squares systems in float32 or float64; z0 is {describe(z0)}")
    # Below a few ulps the Tikhonov term would vanish in rounding (float32: lam = 1e-8 < eps).
    reg = max(lam, 10 * torch.finfo(z0.dtype).eps)
    tiny = torch.finfo(z0.dtype).tiny
    batch, n = z0.shape
    kw = {"dtype": z0.dtype, "device": z0.device}
    F = torch.empty(batch, memory, n, **kw)          # ring buffer of f(z_i)
    G = torch.empty(batch, memory, n, **kw)          # ring buffer of g_i = f(z_i) − z_i
    gram = torch.empty(batch, memory, memory, **kw)  # G Gᵀ over the filled slots
    # Bordered system [[0, 1ᵀ], [1, K]] [ν; α] = [1; 0], preallocated: the border is written once.
    bordered = torch.zeros(batch, memory + 1, memory + 1, **kw)
    bordered[:, 0, 1:] = 1
    bordered[:, 1:, 0] = 1
    rhs = torch.zeros(batch, memory + 1, 1, **kw)
    rhs[:, 0] = 1

    # Views into the buffers, made once and reused: at n = 50 slicing costs as much as the small
    # operations themselves, and after the first `memory` steps the same views serve every iteration.
    slot_views: dict[tuple[int, int], tuple[torch.Tensor, ...]] = {}
    solve_views: dict[int, tuple[torch.Tensor, ...]] = {}

    def views_of_slot(slot: int, filled: int) -> tuple[torch.Tensor, ...]:
        """``F[:, slot]``, ``G[:, slot]``, ``G[:, :filled]ᵀ`` and the Gram matrix's column and row ``slot``."""
        if (slot, filled) not in slot_views:
            slot_views[slot, filled] = (F[:, slot], G[:, slot], G[:, :filled].transpose(1, 2),
                                        gram[:, :filled, slot], gram[:, slot, :filled])
        return slot_views[slot, filled]

    def views_of_system(h: int) -> tuple[torch.Tensor, ...]:
        """For ``h`` mixed iterates: ``K``, its diagonal, the bordered matrix, its ``K`` block and that
        block's diagonal, the right-hand side, ``F[:, :h]`` and ``G[:, :h]``."""
        if h not in solve_views:
            K, H = gram[:, :h, :h], bordered[:, : h + 1, : h + 1]
            solve_views[h] = (K, K.diagonal(dim1=1, dim2=2), H, H[:, 1:, 1:], H[:, 1:, 1:].diagonal(dim1=1, dim2=2),
                              rhs[:, : h + 1], F[:, :h], G[:, :h])
        return solve_views[h]

    def evaluate(k: int, z: torch.Tensor) -> torch.Tensor:
        """Evaluate ``f(z)``, store it and its residual in slot ``k mod m``, update the Gram matrix."""
        F_slot, G_slot, G_filled_t, gram_column, gram_row = views_of_slot(k % memory, min(k + 1, memory))
        fz = f(z)
        check_image(z, fz, "anderson: f(z)")   # before the buffers below broadcast or cast it
        monitor.n_fevals += 1
        F_slot.copy_(fz)
        g = torch.sub(fz, z, out=G_slot)
        monitor.observe(z, fz, difference=g)
        # g_k · g_i as a (1 × n)(n × filled) product per sample: torch's bmm with a column-vector
        # right factor (G g) is several times slower on CPU than this row-vector form.
        row = torch.bmm(g.unsqueeze(1), G_filled_t).squeeze(1)             # (batch, filled)
        gram_column.copy_(row)
        gram_row.copy_(row)
        return fz

    plain = np.zeros(batch, dtype=bool)   # samples taking plain steps (stall safeguard), on the host
    plain_rows: torch.Tensor | None = None  # the same on z's device while any sample has it
    switches = 0
    fz = evaluate(0, z0)
    steps = 1
    if max_iter > 1 and not monitor.done:
        fz = evaluate(1, fz)
        steps = 2
    while steps < max_iter and not (monitor.done or monitor.hopeless):
        K, K_diagonal, H, H_gram, H_gram_diagonal, rhs_h, F_h, G_h = views_of_system(min(steps, memory))
        scale = K_diagonal.mean(-1).clamp_min(tiny)
        torch.div(K, scale[:, None, None], out=H_gram)
        H_gram_diagonal.add_(reg)
        # H is exactly symmetric (both Gram writes copy one row; the border is symmetric), so Hᵀ is
        # the same matrix; as the column-major view of the row-major buffer it is what LAPACK's LU
        # reads without a transposing copy (the same solution, bit for bit).
        sol, info = torch.linalg.solve_ex(H.mT, rhs_h)                 # never raises on a singular sample
        alpha = sol[:, 1:].transpose(1, 2)                             # (batch, 1, h)
        z_next = torch.bmm(alpha, F_h).squeeze(1)
        if beta != 1:
            z_next -= (1 - beta) * torch.bmm(alpha, G_h).squeeze(1)
        # A singular least-squares system gives non-finite weights (and a non-finite f(z_i) makes
        # the Gram matrix, hence the weights, non-finite): take a plain step there. Checking the
        # (batch, h) weights rather than the (batch, n) mix keeps this off the large tensors, and
        # the common case is two reductions: a finite sum means finite weights (NaN and ±inf
        # propagate through it); only then is the per-sample mask formed.
        if bool(info.any()) or not math.isfinite(float(alpha.sum())):
            ok = (alpha.abs().amax(dim=(1, 2)) < math.inf).logical_and_(info == 0)
            z_next = torch.where(ok[:, None], z_next, fz)
        if stall_patience:
            stalled = monitor.stalled(stall_patience)
            if n_stalled := int(np.count_nonzero(stalled)):   # (count_nonzero: a fraction of ndarray.any's cost)
                plain ^= stalled
                switches += n_stalled
                plain_rows = torch.from_numpy(plain).to(z_next.device) if plain.any() else None
            if plain_rows is not None:
                z_next = torch.where(plain_rows[:, None], fz, z_next)
        fz = evaluate(steps, z_next)
        steps += 1
    return monitor.result(steps, stall_switches=switches)
