"""The lecture's reference: scipy's MINPACK ``hybr`` (Powell's hybrid method), per sample, float64.

``scipy.optimize.fsolve`` and ``scipy.optimize.root(method="hybr")`` solve ``g(z) = f(z) − z = 0``
for one sample at a time in NumPy float64, with a forward-difference Jacobian (``n + 1`` calls of
``f`` per Jacobian). Their own termination (relative step ``xtol``) is not our rule, so the returned
point is re-checked with the shared stopping rule of :mod:`deqlab.solvers.result`; scipy's own
verdict is kept in ``extras``.

``n_fevals`` counts single-sample calls summed over the batch and divided by the batch size, i.e.
calls per sample, comparable with the batched solvers' whole-batch evaluations.

Device: MINPACK runs on the host. Each sample's iterate is copied to ``z0.device`` for every call of
``f`` and its residual copied back (``.detach().cpu()``: a device synchronisation per call on a GPU);
the solution is moved back to ``z0.device`` (and ``z0.dtype``) before the final check, so every
tensor of the result lives where ``z0`` does, and the result says ``host_roundtrip=True``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.optimize
import torch

from deqlab.solver_options import check_solver_options
from deqlab.solvers.result import Monitor, SolverResult, check_image


def _solve_each(f, z0, *, atol, rtol, max_iter, xtol, method_name, call) -> SolverResult:
    check_solver_options(method_name, {"xtol": xtol})
    monitor = Monitor(z0, atol=atol, rtol=rtol, max_iter=max_iter, solver=method_name)
    batch, n = z0.shape
    dtype, device = z0.dtype, z0.device
    total_calls = 0
    scipy_ok, messages = [], []
    solutions = np.empty((batch, n))
    # ``f`` is batched and may close over per-sample data (the injected input), so sample ``b`` is
    # evaluated inside a full batch whose other rows stay at ``z0``.
    base = z0.detach().clone()
    for b in range(batch):
        def g(zb: np.ndarray, b: int = b) -> np.ndarray:
            zz = base.clone()
            zz[b] = torch.as_tensor(zb, dtype=dtype, device=device)
            with torch.no_grad():
                fzz = f(zz)
            check_image(zz, fzz, f"{method_name}: f(z)")
            return (fzz[b] - zz[b]).detach().to(torch.float64).cpu().numpy()  # device -> host

        x0 = z0[b].detach().to(torch.float64).cpu().numpy()  # device -> host
        sol, nfev, ok, msg = call(g, x0, xtol=xtol, maxfev=max_iter * (n + 1))
        solutions[b] = sol
        total_calls += nfev
        scipy_ok.append(ok)
        messages.append(msg)
    z = torch.as_tensor(solutions, dtype=dtype, device=device)  # host -> z0's device
    with torch.no_grad():
        fz = f(z)
    per_sample = total_calls / batch if batch else 0.0   # (an empty batch: nothing to solve)
    monitor.n_fevals = int(round(per_sample)) + 1
    monitor.observe(z, fz)
    return monitor.result(1, host_roundtrip=True, scipy_success=scipy_ok, scipy_messages=messages, calls_per_sample=per_sample)


def _fsolve_call(g, x0, *, xtol, maxfev):
    sol, info, ier, msg = scipy.optimize.fsolve(g, x0, full_output=True, xtol=xtol, maxfev=maxfev)
    return sol, int(info["nfev"]), ier == 1, msg


def _root_call(g, x0, *, xtol, maxfev):
    out = scipy.optimize.root(g, x0, method="hybr", options={"xtol": xtol, "maxfev": maxfev})
    return out.x, int(out.nfev), bool(out.success), str(out.message)


def scipy_fsolve(
    f: Callable[[torch.Tensor], torch.Tensor],
    z0: torch.Tensor,
    *,
    atol: float = 1e-8,
    rtol: float = 0.0,
    max_iter: int = 200,
    xtol: float = 1e-13,
) -> SolverResult:
    """Solve ``z = f(z)`` sample by sample with ``scipy.optimize.fsolve`` (MINPACK hybrd).

    ``max_iter`` bounds the Jacobian evaluations: ``maxfev = max_iter · (n + 1)``. Runs on the host:
    data leaves ``z0.device`` and comes back (module docstring; ``result.host_roundtrip`` is True).
    """
    return _solve_each(f, z0, atol=atol, rtol=rtol, max_iter=max_iter, xtol=xtol, method_name="fsolve", call=_fsolve_call)


def scipy_root(
    f: Callable[[torch.Tensor], torch.Tensor],
    z0: torch.Tensor,
    *,
    atol: float = 1e-8,
    rtol: float = 0.0,
    max_iter: int = 200,
    xtol: float = 1e-13,
) -> SolverResult:
    """Solve ``z = f(z)`` sample by sample with ``scipy.optimize.root(method="hybr")``.

    Runs on the host like :func:`scipy_fsolve` (``result.host_roundtrip`` is True).
    """
    return _solve_each(f, z0, atol=atol, rtol=rtol, max_iter=max_iter, xtol=xtol, method_name="root", call=_root_call)
