"""``deqlab bench solvers``: steps, function evaluations and time of every solver on tanh DEQs.

Problem: ``f(z) = tanh(W z + x)`` with ``x ~ N(0, input_scale²)`` of shape ``(batch, n)`` and
``W`` drawn per family and rescaled to spectral norm ``‖W‖₂ = s``:

- ``gaussian``: i.i.d. normal entries; its spectral radius is about ``s/2``, so fixed-point
  iteration contracts faster than ``s`` suggests;
- ``symmetric``: ``Q diag(λ) Qᵀ`` with ``λ`` evenly spread over ``[−s, s]``: ``ρ(W) = ‖W‖₂ = s``,
  the slow case for fixed-point iteration (rate ``≈ s`` near ``z = 0``).

Every solver runs from ``z = 0`` to the shared stopping rule with ``atol = tol``. Ratios are to
fixed-point iteration on the same problem in the same run; scipy's ``hybr`` (``root``) runs for
``n ≤ scipy_max_n`` and its calls per sample are the reference of the ``f-evals / hybr`` column.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from deqlab.benchmarks import machine_note, median_time, torch_threads
from deqlab.report.result import Result, Table
from deqlab.report.progress import track
from deqlab.solvers.registry import get_solver

FAMILIES = ("gaussian", "symmetric")
REFERENCE = "fixed_point"
SCIPY = ("fsolve", "root")


def make_weight(n: int, norm: float, family: str, generator: torch.Generator, dtype) -> torch.Tensor:
    """``W`` of the given family with ``‖W‖₂ = norm``, shape ``(n, n)``."""
    if family == "gaussian":
        W = torch.randn(n, n, generator=generator, dtype=torch.float64)
    else:
        Q, _ = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
        lam = torch.linspace(-1.0, 1.0, n, dtype=torch.float64) if n > 1 else torch.ones(1, dtype=torch.float64)
        W = Q @ torch.diag(lam) @ Q.T
    return (norm * W / torch.linalg.matrix_norm(W, 2)).to(dtype)


def run(cfg) -> Result:
    with torch_threads(cfg.threads):
        return _run(cfg)


def _run(cfg) -> Result:
    dtype = getattr(torch, cfg.dtype)
    g = torch.Generator().manual_seed(cfg.seed)
    rows = []
    cases = [(fam, n, s) for fam in cfg.families for n in cfg.sizes for s in cfg.norms]
    result = Result(command="bench_solvers")
    for fam, n, s in track(cases, "bench solvers", label=lambda c: f"{c[0]} n_z={c[1]} ||W||={c[2]}"):
        W = make_weight(n, s, fam, g, dtype)
        x = cfg.input_scale * torch.randn(cfg.batch, n, generator=g, dtype=torch.float64).to(dtype)
        f = lambda z, W=W, x=x: torch.tanh(z @ W.T + x)
        z0 = torch.zeros(cfg.batch, n, dtype=dtype)
        case_rows = []
        for name in cfg.solvers:
            if name in SCIPY and n > cfg.scipy_max_n:
                continue
            solver = get_solver(name)
            repeats = 1 if name in SCIPY else cfg.repeats
            t, res = median_time(lambda: solver(f, z0, atol=cfg.tol, rtol=0.0, max_iter=cfg.max_iter), repeats)
            case_rows.append(
                {
                    "family": fam, "n_z": n, "||W||_2": s, "solver": name,
                    "converged": res.all_converged, "steps": res.n_steps, "f evals": res.n_fevals,
                    "max residual": res.max_residual, "median time [ms]": 1e3 * t,
                }
            )
            if not res.all_converged:
                result.failures.append(f"{fam} n_z={n} ||W||={s}: {name} {res.message}")
        ref = next((r for r in case_rows if r["solver"] == REFERENCE), None)
        hybr = next((r for r in case_rows if r["solver"] in SCIPY), None)
        for r in case_rows:
            r["f evals / fixed_point"] = r["f evals"] / ref["f evals"] if ref else np.nan
            r["time / fixed_point"] = r["median time [ms]"] / ref["median time [ms]"] if ref else np.nan
            r["f evals / hybr"] = r["f evals"] / hybr["f evals"] if hybr else np.nan
        rows.extend(case_rows)
    frame = pd.DataFrame(rows)
    result.tables["bench"] = Table(
        f"Solvers on tanh DEQs, batch {cfg.batch}, tol {cfg.tol:g} ({cfg.dtype}), median of {cfg.repeats}",
        frame,
        formats={"max residual": "{:.1e}", "median time [ms]": "{:.2f}", "f evals / fixed_point": "{:.2f}",
                 "time / fixed_point": "{:.2f}", "f evals / hybr": "{:.2f}"},
        caption="hybr = scipy MINPACK (fsolve/root): f evals are calls per sample, forward-difference Jacobian included.",
    )
    result.notes.append(machine_note(cfg.dtype))
    return result
