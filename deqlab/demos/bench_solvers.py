"""``deqlab bench solvers``: steps, function evaluations and time of every solver on tanh DEQs.

Problem: ``f(z) = tanh(W z + x)`` with ``x ~ N(0, input_scale²)`` of shape ``(batch, n)`` and
``W`` drawn per family and rescaled to spectral norm ``‖W‖₂ = s``:

- ``gaussian``: i.i.d. normal entries; its spectral radius is about ``s/2``, so fixed-point
  iteration contracts faster than ``s`` suggests;
- ``symmetric``: ``Q diag(λ) Qᵀ`` with ``λ`` evenly spread over ``[−s, s]``: ``ρ(W) = ‖W‖₂ = s``,
  the slow case for fixed-point iteration (rate ``≈ s`` near ``z = 0``).

Every solver runs from ``z = 0`` to the shared stopping rule with ``atol = tol``. Ratios are to
fixed-point iteration on the same problem in the same run (the solvers interleaved, A B C A B C …);
scipy's ``hybr`` (``root``) runs for ``n ≤ scipy_max_n`` and its calls per sample are the reference
of the ``f-evals / hybr`` column. ``time per f eval / fixed_point`` is the cost of one evaluation
including the solver's own work, against fixed-point iteration's (whose overhead is only the
stopping rule).

Issue 12 targets (table ``targets``): Anderson's time per evaluation ≤ 1.3× fixed-point iteration's
at ``n_z ≥ 1024`` and ≤ 2× at ``n_z ≤ 50``; its wall time ≤ 1.3× fixed-point iteration's on the
Gaussian family at ``n_z ≥ 256`` and ≤ 0.5× on the symmetric family. Table ``broyden_memory``: on
``f(z) = tanh(0.99 Q z + x)`` (``Q`` orthogonal, ``x ~ N(0, 0.1²)``, ``n = 50, 256``), limited-memory
Broyden (``memory = 50``) needs ≤ 1.2× the evaluations of Broyden that keeps every pair
(``memory = max_iter``: what torchdeq 0.1.0 does by default, ``LBFGS_thres = max_iter``), beside the
old restart from ``−I`` (``drop = memory``).

Figures ``bench.png`` (median time against ``n_z``) and ``fevals.png`` (f-evals), a panel per family and
norm; ``bench_samples.npz`` and ``broyden_memory_samples.npz``: every timed call (``time_s``, seconds, one
NaN-padded row per table row, :mod:`deqlab.report.timing_samples`) behind the tables' medians, with the
labels of the rows.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
import torch

from deqlab.benchmarks import device_name, interleaved_medians, machine_note, pinned_threads, verdict
from deqlab.report import solver_figures
from deqlab.report.progress import track
from deqlab.report.result import Result, Table
from deqlab.report.timing_samples import sample_arrays
from deqlab.solver_options import SCIPY_SOLVERS
from deqlab.solvers.registry import get_solver

FAMILIES = ("gaussian", "symmetric")
REFERENCE = "fixed_point"

#: Issue 12 targets for Anderson against fixed-point iteration (same problem, same run).
ANDERSON_PER_FEVAL_TARGETS = ((50, 2.0), (1024, 1.3))   # (n_z: at most / at least, ratio) see anderson_targets
ANDERSON_WALL_GAUSSIAN = (256, 1.3)                      # n_z >= 256: wall time ratio <= 1.3
ANDERSON_WALL_SYMMETRIC = 0.5
#: The Broyden-memory problem: tanh(BROYDEN_NORM · Q z + x), x ~ N(0, BROYDEN_INPUT_SCALE²).
BROYDEN_SIZES = (50, 256)
BROYDEN_NORM = 0.99
BROYDEN_INPUT_SCALE = 0.1
BROYDEN_MEMORY = 50
BROYDEN_TARGET = 1.2
#: Memory of the "every pair kept" reference: more than its solves need (its ``rank reductions`` column is 0).
BROYDEN_FULL_MEMORY = 600
#: torchdeq 0.1.0's evaluations on the issue's version of this problem (issue 12; not run here).
TORCHDEQ_ISSUE_FEVALS = {50: 79, 256: 295}


def anderson_targets(family: str, n: int) -> list[tuple[str, float]]:
    """The issue-12 targets that apply to Anderson at ``(family, n)``: ``[(column, target ratio)]``."""
    out = []
    if n <= ANDERSON_PER_FEVAL_TARGETS[0][0]:
        out.append(("time per f eval / fixed_point", ANDERSON_PER_FEVAL_TARGETS[0][1]))
    if n >= ANDERSON_PER_FEVAL_TARGETS[1][0]:
        out.append(("time per f eval / fixed_point", ANDERSON_PER_FEVAL_TARGETS[1][1]))
    if family == "gaussian" and n >= ANDERSON_WALL_GAUSSIAN[0]:
        out.append(("time / fixed_point", ANDERSON_WALL_GAUSSIAN[1]))
    if family == "symmetric":
        out.append(("time / fixed_point", ANDERSON_WALL_SYMMETRIC))
    return out


def make_weight(n: int, norm: float, family: str, generator: torch.Generator, dtype, device="cpu") -> torch.Tensor:
    """``W`` of the given family with ``‖W‖₂ = norm``, shape ``(n, n)``, on ``device``.

    The normal draws come from ``generator`` on the CPU (every device gets the same problem); the QR
    and the spectral norm run on ``device``: on one pinned CPU thread they took over a minute at
    ``n = 4096`` (an SVD each), which ran a GPU bench out of its time limit."""
    A = torch.randn(n, n, generator=generator, dtype=torch.float64, device="cpu").to(device)
    if family == "gaussian":
        W = A
    else:
        Q, _ = torch.linalg.qr(A)
        lam = (torch.linspace(-1.0, 1.0, n, dtype=torch.float64, device=device) if n > 1
               else torch.ones(1, dtype=torch.float64, device=device))
        W = Q @ torch.diag(lam) @ Q.T
    return (norm * W / torch.linalg.matrix_norm(W, 2)).to(dtype)


def run(cfg) -> Result:
    with pinned_threads(cfg.threads):
        return _run(cfg)


def _run(cfg) -> Result:
    dtype, device = getattr(torch, cfg.dtype), torch.device(cfg.device)
    g = torch.Generator().manual_seed(cfg.seed)
    rows, samples = [], []  # samples[i]: every timed call (seconds) behind rows[i]'s median
    cases = [(fam, n, s) for fam in cfg.families for n in cfg.sizes for s in cfg.norms]
    result = Result(command="bench_solvers")
    for fam, n, s in track(cases, "bench solvers", label=lambda c: f"{c[0]} n_z={c[1]} ||W||={c[2]}"):
        W = make_weight(n, s, fam, g, dtype, device)
        x = (cfg.input_scale * torch.randn(cfg.batch, n, generator=g, dtype=torch.float64, device="cpu").to(dtype)).to(device)
        f = lambda z, W=W, x=x: torch.tanh(z @ W.T + x)
        z0 = torch.zeros(cfg.batch, n, dtype=dtype, device=device)
        case_rows = []
        calls = {}
        for name in cfg.solvers:
            if name in SCIPY_SOLVERS and n > cfg.scipy_max_n:
                continue
            solver = get_solver(name)
            calls[name] = lambda solver=solver, f=f, z0=z0: solver(f, z0, atol=cfg.tol, rtol=0.0, max_iter=cfg.max_iter)
        case_samples: dict[str, list[float]] = {}
        timed = interleaved_medians({k: v for k, v in calls.items() if k not in SCIPY_SOLVERS}, cfg.repeats, device=device,
                                    samples=case_samples)
        timed.update(interleaved_medians({k: v for k, v in calls.items() if k in SCIPY_SOLVERS}, 1, device=device,
                                         samples=case_samples))
        for name in calls:
            t, res = timed[name]
            case_rows.append(
                {
                    "family": fam, "n_z": n, "||W||_2": s, "solver": name,
                    "converged": res.all_converged, "steps": res.n_steps, "f evals": res.n_fevals,
                    "max residual": res.max_residual, "median time [ms]": 1e3 * t,
                    "time per f eval [ms]": 1e3 * t / max(res.n_fevals, 1),
                }
            )
            samples.append(case_samples[name])
            if not res.all_converged:
                result.failures.append(f"{fam} n_z={n} ||W||={s}: {name} {res.message}")
        ref = next((r for r in case_rows if r["solver"] == REFERENCE), None)
        hybr = next((r for r in case_rows if r["solver"] in SCIPY_SOLVERS), None)
        for r in case_rows:
            r["f evals / fixed_point"] = r["f evals"] / ref["f evals"] if ref else np.nan
            r["time / fixed_point"] = r["median time [ms]"] / ref["median time [ms]"] if ref else np.nan
            r["time per f eval / fixed_point"] = (r["time per f eval [ms]"] / ref["time per f eval [ms]"]) if ref else np.nan
            r["f evals / hybr"] = r["f evals"] / hybr["f evals"] if hybr else np.nan
        rows.extend(case_rows)
    frame = pd.DataFrame(rows)
    result.tables["bench"] = Table(
        f"Solvers on tanh DEQs, batch {cfg.batch}, tol {cfg.tol:g} ({cfg.dtype}, {device_name(device)}), median of {cfg.repeats}",
        frame,
        formats={"max residual": "{:.1e}", "median time [ms]": "{:.2f}", "f evals / fixed_point": "{:.2f}",
                 "time / fixed_point": "{:.2f}", "f evals / hybr": "{:.2f}", "time per f eval [ms]": "{:.3f}",
                 "time per f eval / fixed_point": "{:.2f}"},
        caption="hybr = scipy MINPACK (fsolve/root): f evals are calls per sample, forward-difference Jacobian included; "
                f"f evals / hybr nan: hybr is not run above n_z = {cfg.scipy_max_n} (scipy_max_n).",
    )
    result.tables["targets"] = Table(
        "Issue 12 targets for Anderson (ratios to fixed-point iteration, same problem, same run)",
        _anderson_target_rows(frame),
        formats={"ratio": "{:.2f}", "target": "{:.2f}"},
        caption="met: ratio <= target. time per f eval: the solver's median time / its f evals; fixed-point "
        "iteration (the reference) does one evaluation and the stopping rule per step.",
    )
    result.arrays["bench_samples"] = sample_arrays(
        {"family": frame["family"].tolist(), "n_z": frame["n_z"].to_numpy(int), "norm": frame["||W||_2"].to_numpy(float),
         "solver": frame["solver"].tolist()}, {"time": samples})
    problem = f"batch {cfg.batch}, tol {cfg.tol:g}, {cfg.dtype}, seed={cfg.seed}"
    labels = {name: f"{name} (scipy hybr, n_z <= {cfg.scipy_max_n})" for name in SCIPY_SOLVERS}
    result.figures["bench"] = partial(
        solver_figures.solver_times, frame, labels=labels, title="Solvers on tanh DEQs: time to tolerance",
        subtitle=f"{problem}, {device_name(device)}, torch threads {torch.get_num_threads()}, "
                 f"median of {cfg.repeats} interleaved calls (scipy: 1 call)")
    result.figures["fevals"] = partial(
        solver_figures.solver_fevals, frame, labels=labels, subtitle=problem,
        title="Solvers on tanh DEQs: f evaluations to tolerance (scipy hybr: calls per sample)")
    if "broyden" in cfg.solvers:
        result.tables["broyden_memory"], result.arrays["broyden_memory_samples"] = _broyden_memory_table(cfg, dtype, device)
    result.notes.append(machine_note(cfg.dtype, device))
    return result


def _anderson_target_rows(frame: pd.DataFrame) -> pd.DataFrame:
    rows = []
    if "anderson" not in set(frame.get("solver", [])):
        return pd.DataFrame(rows)
    for _, r in frame[frame.solver == "anderson"].iterrows():
        for column, target in anderson_targets(r["family"], int(r["n_z"])):
            rows.append({"family": r["family"], "n_z": r["n_z"], "||W||_2": r["||W||_2"], "quantity": column,
                         "ratio": r[column], "target": target, "met": verdict(r[column], target)})
    return pd.DataFrame(rows)


def _broyden_memory_table(cfg, dtype, device) -> tuple[Table, dict[str, np.ndarray]]:
    """Broyden with limited memory (rank reduction) / with every pair kept / restarting from −I: the
    table and its timing samples (the arrays of ``broyden_memory_samples.npz``, one row per table row)."""
    rows, samples = [], []
    g = torch.Generator().manual_seed(cfg.seed)
    for n in BROYDEN_SIZES:
        with torch.device("cpu"):  # drawn on the CPU, then moved (every device solves the same problem; n <= 256: the QR is cheap)
            Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
            W = (BROYDEN_NORM * Q).to(dtype)
            x = (BROYDEN_INPUT_SCALE * torch.randn(cfg.batch, n, generator=g, dtype=torch.float64)).to(dtype)
        W, x = W.to(device), x.to(device)
        f = lambda z, W=W, x=x: torch.tanh(z @ W.T + x)
        z0 = torch.zeros(cfg.batch, n, dtype=dtype, device=device)
        variants = {
            "rank reduction": {"memory": BROYDEN_MEMORY},
            "every pair": {"memory": min(cfg.max_iter, BROYDEN_FULL_MEMORY)},
            "restart (before)": {"memory": BROYDEN_MEMORY, "drop": BROYDEN_MEMORY},
        }
        variant_samples: dict[str, list[float]] = {}
        timed = interleaved_medians(
            {k: (lambda kw=kw, f=f, z0=z0: get_solver("broyden")(f, z0, atol=cfg.tol, rtol=0.0, max_iter=cfg.max_iter, **kw))
             for k, kw in variants.items()}, 1, 0, device=device, samples=variant_samples)
        full = timed["every pair"][1].n_fevals
        for name, (t, res) in timed.items():
            ratio = res.n_fevals / full
            limited = name == "rank reduction"
            rows.append({"n_z": n, "broyden": name, "converged": res.all_converged, "f evals": res.n_fevals,
                         "/ every pair": ratio, "time [ms]": 1e3 * t,
                         "reductions": res.extras.get("rank_reductions", 0),
                         "torchdeq (issue)": TORCHDEQ_ISSUE_FEVALS.get(n, np.nan),
                         "target": BROYDEN_TARGET if limited else np.nan,  # at most
                         "met": verdict(ratio, BROYDEN_TARGET) if limited else ""})
            samples.append(variant_samples[name])
    arrays = sample_arrays({"n_z": [r["n_z"] for r in rows], "broyden": [r["broyden"] for r in rows]}, {"time": samples})
    table = Table(
        f"Broyden when its memory fills: tanh({BROYDEN_NORM} Q z + x), Q orthogonal, x ~ N(0, {BROYDEN_INPUT_SCALE}^2), "
        f"batch {cfg.batch}, tol {cfg.tol:g}",
        pd.DataFrame(rows),
        formats={"/ every pair": "{:.2f}", "time [ms]": "{:.0f}", "target": "{:.1f}"},
        caption=f"rank reduction: memory {BROYDEN_MEMORY}, truncated SVD when full (now); every pair: memory "
        f"{BROYDEN_FULL_MEMORY} (never full: reductions = 0); restart (before): memory {BROYDEN_MEMORY}, restart from -I. "
        "Reference: Broyden keeping every pair, as torchdeq 0.1.0 does by default "
        "(LBFGS_thres = max_iter); it needed the same evaluations as torchdeq +-1 on this problem when checked. "
        "The torchdeq column is the issue's count on its own draw of the problem (not run here). Target: limited "
        f"memory: at most {BROYDEN_TARGET}x the evaluations of the reference (target nan: the rows it does not judge).",
    )
    return table, arrays
