"""Fixed-point (Picard) iteration, optionally damped.

``z_{k+1} = (1 − β) z_k + β f(z_k)`` with damping ``β ∈ (0, 1]``. For a contraction with Lipschitz
constant ``ρ < 1`` the error falls like ``ρ^k``; near a fixed point the observed rate is the spectral
radius of ``J = ∂f/∂z`` (tested in ``tests/test_solvers.py``).
"""

from __future__ import annotations

from typing import Callable

import torch

from deqlab.solver_options import check_solver_options
from deqlab.solvers.result import Monitor, SolverResult


@torch.no_grad()
def fixed_point_iteration(
    f: Callable[[torch.Tensor], torch.Tensor],
    z0: torch.Tensor,
    *,
    atol: float = 1e-8,
    rtol: float = 0.0,
    max_iter: int = 500,
    damping: float = 1.0,
) -> SolverResult:
    """Solve ``z = f(z)`` by (damped) fixed-point iteration.

    Args:
        f: batched map ``(batch, n) -> (batch, n)``.
        z0: starting point ``(batch, n)``.
        atol, rtol, max_iter: the shared stopping rule (:mod:`deqlab.solvers.result`).
        damping: ``β`` in ``z ← (1−β) z + β f(z)``, in ``(0, 1]``.
    """
    check_solver_options("fixed_point", {"damping": damping})
    monitor = Monitor(z0, atol=atol, rtol=rtol, max_iter=max_iter, solver="fixed_point")
    z = z0
    steps = 0
    for steps in range(1, max_iter + 1):
        fz = f(z)
        monitor.n_fevals += 1
        monitor.observe(z, fz)
        if monitor.done or monitor.hopeless:
            break
        z = fz if damping == 1 else (1 - damping) * z + damping * fz
    return monitor.result(steps)
