"""``deqlab bench curvature``: exact curvature through a DEQ that wraps a user ``nn.Module``, beside its gradient.

The model: a user map ``f(z, x) = tanh(W z + U x + b)`` (an ``nn.Module``) wrapped in
:class:`deqlab.implicit.DEQ` (Anderson forward and linear solves, ``atol``), a linear readout to
``classes`` logits, mean cross-entropy on a random batch (seeded; ``x ~ N(0, I)``, uniform labels).
Default weights (``nn.Linear``'s init: ``‖W‖₂ < 1`` at these sizes).

Table ``hvp`` (``hvp_n_z``): the gradient of the loss as a training step computes it (forward solve
from zero + implicit backward: one adjoint solve) is the reference; beside it, one Hessian-vector
product of :class:`deqlab.implicit.curvature.LossHessian`:

* ``Lagrangian, per-sample LU, warm``: a product on a built operator (the case of eigsh, Hutchinson,
  SLQ, CG: many products at one ``θ``): one tangent + one adjoint solve, each two triangular solves.
  **Target ≤ 3× the gradient** (also marked on the iterative route);
* ``Lagrangian, per-sample LU, cold``: building the operator (one gradient pass at ``θ`` recording
  ``z*`` and ``λ``, ``J`` by ``n_z`` vmapped VJPs, the batched LU) plus one product;
* ``Lagrangian, iterative, warm``: the same with matrix-free Anderson solves (any ``f``, any size);
* ``direct, warm``: ``torch.func.jvp(grad)`` through ``fixed_point``'s rules of every order.

Table ``eigsh`` (``eig_n_z``, ``P ≈ 10⁵``): the top-``top_k`` eigenvalues by ARPACK on the
``LinearOperator``, building included, with LU and (``eig_iterative``) with Anderson linear solves.
**Target < 60 s.**

Times are medians of ``repeats`` after ``warmup`` calls, the routes interleaved (A B C A B C …) so
drift hits all; torch and BLAS threads pinned to ``threads`` (:func:`deqlab.benchmarks.pinned_threads`).
Figure ``hvp.png``: every timed call and the median of each route. ``hvp_samples.npz`` /
``eigsh_samples.npz``: the timed calls (``time_s``, seconds, one row per table row) behind the tables' times.
"""

from __future__ import annotations

import time
from functools import partial

import pandas as pd
import torch
from torch import nn

from deqlab.benchmarks import interleaved_medians, machine_note, pinned_threads
from deqlab.implicit import SolveOptions
from deqlab.implicit.checks import relative_error
from deqlab.implicit.curvature import LossHessian
from deqlab.models.deq_classifier import TanhDEQClassifier
from deqlab.report.hessian_figures import route_times
from deqlab.report.progress import track
from deqlab.report.result import Result, Table
from deqlab.report.timing_samples import sample_arrays
from deqlab.settings.bench_curvature import CurvatureBench

#: The targets of issue 14.
HVP_TARGET = 3.0
EIGSH_TARGET_S = 60.0


def problem(settings: CurvatureBench, n_z: int):
    torch.manual_seed(settings.seed)
    opts = SolveOptions(solver="anderson", linear_solver="anderson", atol=settings.atol, max_iter=2000)
    model = TanhDEQClassifier(n_z, settings.n_x, settings.classes, opts)   # a user module inside DEQ
    gen = torch.Generator().manual_seed(settings.seed + 1)
    x = torch.randn(settings.batch, settings.n_x, generator=gen, dtype=torch.float64)
    y = torch.randint(0, settings.classes, (settings.batch,), generator=gen)
    return model, x, y


def run(settings: CurvatureBench) -> Result:
    with pinned_threads(settings.threads) as torch_count:
        result = _bench(settings)
        result.notes.append(machine_note("float64") + f" torch and BLAS threads pinned to {torch_count}.")
    return result


def _bench(s: CurvatureBench) -> Result:
    result = Result(command="bench_curvature")
    loss_fn = nn.functional.cross_entropy
    model, x, y = problem(s, s.hvp_n_z)
    params = list(model.parameters())
    lag = LossHessian(model, loss_fn, x, y, linear="lu")
    iterative = LossHessian(model, loss_fn, x, y, linear="iterative")
    direct = LossHessian(model, loss_fn, x, y, mode="direct")
    P = lag.shape[0]
    v = torch.randn(P, generator=torch.Generator().manual_seed(s.seed + 2), dtype=torch.float64)

    def gradient():
        model.deq.last_solution = None  # from zero, as a training step
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss_fn(model(x), y), params)])

    routes = {
        "gradient (forward solve + adjoint solve)": gradient,
        "HVP, Lagrangian, per-sample LU, warm": lambda: lag.hvp(v),
        "HVP, Lagrangian, per-sample LU, cold (build + 1 product)":
            lambda: LossHessian(model, loss_fn, x, y, linear="lu").hvp(v),
        "HVP, Lagrangian, iterative (Anderson), warm": lambda: iterative.hvp(v),
        "HVP, direct torch.func, warm": lambda: direct.hvp(v),
    }
    samples: dict[str, list[float]] = {}
    measured = interleaved_medians(routes, s.repeats, s.warmup, samples=samples)
    times = {name: seconds for name, (seconds, _) in measured.items()}
    outs = {name: out for name, (_, out) in measured.items()}
    ref = "gradient (forward solve + adjoint solve)"
    hv_lu = outs["HVP, Lagrangian, per-sample LU, warm"]
    rows = []
    for name, t in times.items():
        ratio = t / times[ref]
        is_target = name.endswith(", warm") and "Lagrangian" in name
        rows.append({"route": name, "n_z": s.hvp_n_z, "P": P, "batch": s.batch, "median time (ms)": 1e3 * t,
                     "ratio to gradient": ratio,
                     "rel. difference to LU HVP": relative_error(outs[name], hv_lu) if "HVP" in name else float("nan"),
                     "target": f"<= {HVP_TARGET:g}x gradient" if is_target else "",
                     "met": ("yes" if ratio <= HVP_TARGET else "NO") if is_target else ""})
    result.tables["hvp"] = Table(
        f"One HVP through a DEQ wrapping a user nn.Module vs one gradient of the same loss (n_z={s.hvp_n_z}, "
        f"n_x={s.n_x}, batch {s.batch}, P={P}, Anderson atol {s.atol:g})",
        pd.DataFrame(rows),
        formats={"median time (ms)": "{:.2f}", "ratio to gradient": "{:.2f}", "rel. difference to LU HVP": "{:.1e}"},
        caption=f"median of {s.repeats} after {s.warmup} warm-up, routes interleaved; 'warm': a product on a built "
                "operator (eigsh, Hutchinson, SLQ); 'cold': the operator's gradient pass (z*, lambda) and per-sample LU "
                f"plus one product; iterative and direct routes differ from the LU one by their solves' tolerance "
                f"(atol {s.atol:g}); rel. difference nan: the gradient row is no HVP",
    )
    result.arrays["hvp_samples"] = sample_arrays({"route": list(times), "n_z": [s.hvp_n_z] * len(times), "P": [P] * len(times)},
                                                 {"time": [samples[name] for name in times]})
    result.figures["hvp"] = partial(
        route_times, list(times), result.arrays["hvp_samples"]["time_s"], reference=ref, target_ratio=HVP_TARGET,
        target_label=f"target: a warm Lagrangian HVP <= {HVP_TARGET:g}x the gradient",
        title=f"One HVP vs one gradient through a DEQ wrapping an nn.Module (n_z={s.hvp_n_z}, P={P}, batch {s.batch})",
        subtitle=f"float64, CPU, torch threads {torch.get_num_threads()}, {s.repeats} interleaved calls after {s.warmup} warm-up, "
                 f"Anderson atol {s.atol:g}, seed={s.seed}")
    rows = []
    for linear in track(["lu", "iterative"] if s.eig_iterative else ["lu"], "top eigenvalues"):
        model, x, y = problem(s, s.eig_n_z)
        start = time.perf_counter()
        op = LossHessian(model, loss_fn, x, y, linear=linear)
        vals = op.eigenvalues(s.top_k, "LA", tol=s.eigsh_tol, seed=s.seed)
        seconds = time.perf_counter() - start
        rows.append({"linear solves": {"lu": "per-sample LU", "iterative": "Anderson"}[linear], "n_z": s.eig_n_z,
                     "P": op.shape[0], "batch": s.batch, "k": s.top_k, "eigsh tol": s.eigsh_tol,
                     "HVPs": op.n_products, "time (s)": seconds,
                     "top eigenvalues": ", ".join(f"{float(e):.6g}" for e in vals[::-1]),
                     "target": f"< {EIGSH_TARGET_S:g} s", "met": "yes" if seconds < EIGSH_TARGET_S else "NO"})
    frame = pd.DataFrame(rows)
    # one call each (seconds): the table's time is this sample, not a median
    result.arrays["eigsh_samples"] = sample_arrays({"linear_solves": frame["linear solves"].tolist(), "P": frame["P"].to_numpy(int)},
                                                   {"time": [[t] for t in frame["time (s)"]]})
    result.tables["eigsh"] = Table(
        f"Top-{s.top_k} eigenvalues of a DEQ classifier's loss Hessian (all parameters; ARPACK on the LinearOperator)",
        frame, formats={"time (s)": "{:.1f}"},
        caption="time includes building the operator (one gradient pass and, for LU, the per-sample factorisation)",
    )
    return result
