"""``deqlab bench nethessian``: input Laplacian / diagonal Hessian / full Hessian of a tanh MLP.

Network ``d → hidden… → n_out`` (default ``50 → 64 → 64 → 64 → 1``, tanh), ``x ~ N(0, 1)``. For
each dtype and task, the median wall time over ``repeats`` calls after ``warmup`` calls of:

- ``forward recursion``: :func:`deqlab.nethessian.input_derivatives` / :func:`~deqlab.nethessian.laplacian`
  (diagonal and full Hessian: both the forward recursion and the adjoint route);
- ``double-backward loop`` (the reference, ratio 1): ``torch.autograd.grad`` with ``create_graph=True``,
  then one backward per input coordinate;
- ``vmap(jvp(grad))``: forward-over-reverse HVPs against the ``d`` basis vectors;
- ``vmap(hessian)``: ``torch.func.hessian`` (= ``jacfwd(jacrev)``) per sample.

``speed-up`` = reference time / method time, measured in the same run. ``max rel error`` is against
``vmap(hessian)`` of the float64 copy of the network (float32 rows therefore show float32 round-off).
"""

from __future__ import annotations

import os
import statistics
from functools import partial

import pandas as pd
import torch

from deqlab.benchmarks import device_name, machine_note, pinned_threads, timings
from deqlab.demos.nethessian import max_rel_error
from deqlab.report.result import Result, Table
from deqlab.nethessian import input_derivatives, laplacian, make_mlp
from deqlab.nethessian import reference as R
from deqlab.report import nethessian_figures
from deqlab.report.progress import track
from deqlab.report.timing_samples import sample_arrays
from deqlab.report.words import counted

TASKS = ("laplacian", "diag_hessian", "hessian")
REFERENCE = "double-backward loop"
#: the routes of :mod:`deqlab.nethessian` (the others are autodiff references)
OURS = ("forward recursion", "forward recursion (eq. 23)", "forward recursion (H_jkm)", "adjoint (fwd J + bwd)")


def methods(task: str):
    """``name → fn(net, x)`` for ``task``; every fn returns the task's quantity."""
    diag = lambda H: torch.diagonal(H, dim1=-2, dim2=-1)  # noqa: E731
    if task == "laplacian":
        return {
            "forward recursion": laplacian,
            REFERENCE: R.double_backward_laplacian,
            "vmap(jvp(grad))": lambda net, x: R.jvp_grad_diag_hessian(net, x).sum(-1),
            "vmap(hessian)": lambda net, x: diag(R.hessian_func(net, x)).sum(-1),
        }
    if task == "diag_hessian":
        return {
            "forward recursion (eq. 23)": lambda net, x: input_derivatives(net, x, jacobian=False, diag_hessian=True, diag_method="forward").diag_hessian,
            "adjoint (fwd J + bwd)": lambda net, x: input_derivatives(net, x, jacobian=False, diag_hessian=True, diag_method="adjoint").diag_hessian,
            REFERENCE: R.double_backward_diag_hessian,
            "vmap(jvp(grad))": R.jvp_grad_diag_hessian,
            "vmap(hessian)": R.diag_hessian_func,
        }
    return {
        "forward recursion (H_jkm)": lambda net, x: input_derivatives(net, x, jacobian=False, hessian=True, hessian_method="forward").hessian,
        "adjoint (fwd J + bwd)": lambda net, x: input_derivatives(net, x, jacobian=False, hessian=True, hessian_method="adjoint").hessian,
        REFERENCE: R.double_backward_hessian,
        "vmap(jvp(grad))": R.jvp_grad_hessian,
        "vmap(hessian)": R.hessian_func,
    }


def reference_value(task: str, net64, x64):
    H = R.hessian_func(net64, x64)
    if task == "hessian":
        return H
    Hd = torch.diagonal(H, dim1=-2, dim2=-1)
    return Hd if task == "diag_hessian" else Hd.sum(-1)


def timed(fn, repeats: int, warmup: int, device) -> tuple[float, float, list[float]]:
    """(median, min) time in ms on ``device`` (:func:`deqlab.benchmarks.timings`: CUDA events on a GPU),
    and every timed call's seconds (the ``.npz``)."""
    times, _ = timings(fn, repeats, warmup, device)
    return 1e3 * statistics.median(times), 1e3 * min(times), times


def run(cfg) -> Result:
    with pinned_threads(cfg.threads):
        return _run(cfg)


def _run(cfg) -> Result:
    m, device = cfg.mlp, torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    with torch.device("cpu"):  # drawn on the CPU, then moved: every device measures the same network and inputs
        net64 = make_mlp(m.d, list(m.hidden), m.n_out, m.activation, dtype=torch.float64).requires_grad_(False)
        x_all = torch.randn(max(cfg.batch, cfg.hessian_batch), m.d, dtype=torch.float64)
    net64, x_all = net64.to(device), x_all.to(device)
    rows, samples = [], []  # samples: per table row, every timed call's seconds
    jobs = [(dt, task) for dt in cfg.dtypes for task in cfg.tasks]
    for dtype_name, task in track(jobs, "bench nethessian", label=lambda j: f"{j[1]} {j[0]}"):
        dtype = getattr(torch, dtype_name)
        batch = cfg.hessian_batch if task == "hessian" else cfg.batch
        net = make_mlp(m.d, list(m.hidden), m.n_out, m.activation, dtype=dtype).requires_grad_(False).to(device)
        net.load_state_dict({k: v.to(dtype) for k, v in net64.state_dict().items()})
        x64 = x_all[:batch]
        x = x64.to(dtype)
        ref = reference_value(task, net64, x64)
        group = []
        for name, fn in methods(task).items():
            value = fn(net, x)
            med, best, times = timed(lambda: fn(net, x), cfg.repeats, cfg.warmup, device)
            samples.append(times)
            group.append({
                "task": task, "dtype": dtype_name, "batch": batch, "method": name,
                "median time [ms]": med, "min time [ms]": best, "max rel error": max_rel_error(value.to(torch.float64), ref),
            })
        ref_ms = next(r["median time [ms]"] for r in group if r["method"] == REFERENCE)
        for r in group:
            r["speed-up vs " + REFERENCE] = ref_ms / r["median time [ms]"]
        rows.extend(group)
    frame = pd.DataFrame(rows)
    arch = f"{m.d}→{'→'.join(map(str, m.hidden))}→{m.n_out} {m.activation}"
    machine = (f"{device_name(device)}, {os.cpu_count()} CPU cores, {counted(torch.get_num_threads(), 'torch thread')}, torch {torch.__version__}, "
               f"median of {cfg.repeats} after {counted(cfg.warmup, 'warm-up call')}")
    result = Result(command="bench_nethessian")
    result.tables["bench"] = Table(
        f"Input derivatives of an MLP {arch}: forward recursion vs autodiff routes",
        frame,
        formats={"median time [ms]": "{:.3f}", "min time [ms]": "{:.3f}", "max rel error": "{:.1e}",
                 "speed-up vs " + REFERENCE: "{:.2f}"},
        caption=machine + "; error vs float64 vmap(hessian).",
    )
    result.arrays["bench_samples"] = sample_arrays(
        {"task": frame["task"].tolist(), "dtype": frame["dtype"].tolist(), "batch": frame["batch"].to_numpy(int),
         "method": frame["method"].tolist()}, {"time": samples})
    result.figures["bench"] = partial(
        nethessian_figures.bench_times, frame, reference=REFERENCE, ours=OURS,
        title=f"Input derivatives of an MLP {arch}: median time per call", subtitle=machine)
    result.notes.append(machine_note(", ".join(cfg.dtypes), device))
    return result
