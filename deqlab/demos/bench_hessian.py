"""``deqlab bench hessian``: cost of exact DEQ second derivatives, beside references measured in the same run.

Table ``reference`` (the issue's problem ``N = 32, d = 8, batch 64``, ``θ = (W_z, b_z, U_z)``, ``P = 1312``):

* the structured closed-form Hessian vs ``torch.func.hessian`` through a ``unroll_steps``-layer unroll
  (reference; target ≥ 100× faster at ≤ 1e-10 relative difference);
* one matrix-free HVP vs one implicit gradient (target ≤ 3×), beside the same ratio for autodiff
  through the unroll (forward-over-reverse HVP vs reverse gradient);
* peak memory of each route: in a fresh process (``spawn``) per route, the kernel's RSS high-water
  mark is reset after setup and the route's peak is ``VmHWM − VmRSS`` (``/proc/self/status``), so routes
  do not hide in each other's peaks or in the import-time peak.

Table ``ladder``: sizes ``N ∈ ladder`` (same ``d`` and batch): gradient, HVP, top-k eigenvalues by eigsh
on the HVP operator, and the dense closed form where ``P ≤ dense_max_p``.

Times are medians of ``repeats`` calls after ``warmup`` calls (the unrolled Hessian reference: of
``ref_repeats`` calls, it takes seconds). The machine is stated in a note.
"""

from __future__ import annotations

import resource

import pandas as pd
import torch

from deqlab.benchmarks import machine_note, median_time, torch_threads
from deqlab.report.result import Result, Table
from deqlab.implicit.checks import relative_error, unrolled_hessian, unrolled_loss
from deqlab.implicit.hessian import deq_hessian, solve_equilibrium
from deqlab.implicit.hvp import DEQHessianOperator
from deqlab.implicit.layer import SolveOptions
from deqlab.implicit.params import check_groups, flatten, model_params
from deqlab.implicit.spectrum import extreme_eigenvalues
from deqlab.models.tanh_deq import TanhDEQ
from deqlab.report.progress import track


def setup(n_z: int, n_x: int, batch: int, seed: int, groups):
    """Weights (TanhDEQ default init, float64), inputs, targets and the fixed point."""
    torch.manual_seed(seed)
    params = model_params(TanhDEQ(n_z, n_x, 1))
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(batch, n_x, generator=gen, dtype=torch.float64)
    y = torch.randn(batch, 1, generator=gen, dtype=torch.float64)
    return params, x, y


def timed(fn, repeats: int, warmup: int):
    """(last output, median seconds) by :func:`deqlab.benchmarks.median_time`."""
    seconds, out = median_time(fn, repeats, warmup)
    return out, seconds


def routes(params, x, y, groups, z, steps, opts):
    """name → zero-argument callable, for timing and for the memory probe."""
    theta = flatten(params, groups)
    v = torch.randn(theta.numel(), generator=torch.Generator().manual_seed(3), dtype=theta.dtype)
    op = DEQHessianOperator(params, groups, x, y, z_star=z, opts=opts)

    def unroll_grad():
        return torch.func.grad(lambda t: unrolled_loss(t, params, groups, x, y, steps))(theta)

    def unroll_hvp():
        g = torch.func.grad(lambda t: unrolled_loss(t, params, groups, x, y, steps))
        return torch.func.jvp(g, (theta,), (v,))[1]

    def cold(mode):  # everything an HVP needs from z*: factor I − W D (or I − J), adjoint λ, then the product
        return lambda: DEQHessianOperator(params, groups, x, y, z_star=z, opts=opts, mode=mode).matvec(v)

    return {
        "closed form Hessian": lambda: deq_hessian(**params, x=x, y=y, groups=groups, z_star=z),
        "unrolled torch.func.hessian": lambda: unrolled_hessian(params, groups, x, y, steps=steps),
        "implicit gradient": lambda: DEQHessianOperator(params, groups, x, y, z_star=z, opts=opts).gradient(),
        "implicit HVP, cold": cold("structured"),
        "implicit HVP, warm": lambda: op.matvec(v),
        "implicit HVP (torch.func Lagrangian), cold": cold("autodiff"),
        "unrolled gradient": unroll_grad,
        "unrolled HVP": unroll_hvp,
    }


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def _memory_child(name, n_z, n_x, batch, seed, groups, steps, atol, threads, queue):
    """Peak RSS increase of one route call: reset the kernel's high-water mark (``clear_refs`` 5), read
    ``VmRSS`` before and ``VmHWM`` after. Falls back to ``ru_maxrss`` where ``/proc`` does not allow it."""
    torch.set_num_threads(threads)
    params, x, y = setup(n_z, n_x, batch, seed, groups)
    opts = SolveOptions(atol=atol, max_iter=5000)
    z = solve_equilibrium(params["W_z"], params["b_z"], params["U_z"], x, opts=opts)
    fns = routes(params, x, y, groups, z, steps, opts)
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        before = _status_kib("VmRSS")
        fns[name]()
        after = _status_kib("VmHWM")
    except OSError:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        fns[name]()
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put(max(after - before, 0) / 1024.0)  # KiB → MiB


def peak_memory_mib(name, n_z, n_x, batch, seed, groups, steps, atol, threads) -> float:
    """Increase of peak RSS (MiB) caused by one call of route ``name`` in a fresh process."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_memory_child, args=(name, n_z, n_x, batch, seed, tuple(groups), steps, atol, threads, queue))
    proc.start()
    try:
        out = queue.get(timeout=600)
    finally:
        proc.join()
    return float(out)


def run(cfg) -> Result:
    groups = check_groups(list(cfg.groups))
    result = Result(command="bench_hessian")
    with torch_threads(cfg.threads):
        return _bench(cfg, groups, result)


def _bench(cfg, groups, result) -> Result:
    opts = SolveOptions(atol=cfg.solver_atol, max_iter=5000)
    params, x, y = setup(cfg.n_z, cfg.n_x, cfg.batch, cfg.seed, groups)
    z = solve_equilibrium(params["W_z"], params["b_z"], params["U_z"], x, opts=opts)
    P = flatten(params, groups).numel()
    fns = routes(params, x, y, groups, z, cfg.unroll_steps, opts)
    times, outs = {}, {}
    for name in track(list(fns), "reference routes", label=str):
        reps, warm = (cfg.ref_repeats, 0) if name == "unrolled torch.func.hessian" else (cfg.repeats, cfg.warmup)
        outs[name], times[name] = timed(fns[name], reps, warm)
    mem = {}
    if cfg.memory:
        for name in track(list(fns), "memory probes", label=str):
            mem[name] = peak_memory_mib(name, cfg.n_z, cfg.n_x, cfg.batch, cfg.seed, groups, cfg.unroll_steps, cfg.solver_atol, cfg.threads)
    H, H_ref = outs["closed form Hessian"], outs["unrolled torch.func.hessian"]
    hv_ref = outs["unrolled HVP"]
    rows = [
        {"method": "closed form Hessian (structured)", "reference": "unrolled torch.func.hessian",
         "rel. difference": relative_error(H, H_ref), "target": ">= 100x faster, <= 1e-10"},
        {"method": "unrolled torch.func.hessian", "reference": "(itself)", "rel. difference": 0.0, "target": ""},
        {"method": "implicit HVP, cold", "reference": "implicit gradient", "rel. difference": relative_error(outs["implicit HVP, cold"], hv_ref),
         "target": "<= 3x gradient"},
        {"method": "implicit HVP, warm", "reference": "implicit gradient", "rel. difference": relative_error(outs["implicit HVP, warm"], hv_ref),
         "target": "<= 3x gradient"},
        {"method": "implicit HVP (torch.func Lagrangian), cold", "reference": "implicit gradient",
         "rel. difference": relative_error(outs["implicit HVP (torch.func Lagrangian), cold"], hv_ref), "target": "(any f)"},
        {"method": "implicit gradient", "reference": "(itself)",
         "rel. difference": relative_error(outs["implicit gradient"], outs["unrolled gradient"]), "target": ""},
        {"method": "unrolled HVP", "reference": "unrolled gradient", "rel. difference": 0.0, "target": "(issue: 4.4x)"},
        {"method": "unrolled gradient", "reference": "(itself)", "rel. difference": 0.0, "target": ""},
    ]
    key = {"closed form Hessian (structured)": "closed form Hessian"}
    for row in rows:
        name = key.get(row["method"], row["method"])
        ref = row["reference"] if row["reference"] != "(itself)" else name
        row.update({"N": cfg.n_z, "P": P, "batch": cfg.batch, "time (s)": times[name],
                    "ratio to reference": times[name] / times[ref],
                    "speed-up vs reference": times[ref] / times[name], "peak memory (MiB)": mem.get(name, float("nan"))})
    frame = pd.DataFrame(rows)[["method", "N", "P", "batch", "time (s)", "reference", "ratio to reference", "speed-up vs reference",
                                "rel. difference", "peak memory (MiB)", "target"]]
    result.tables["reference"] = Table(
        f"Exact DEQ second derivatives, N={cfg.n_z}, d={cfg.n_x}, batch={cfg.batch}, P={P} ({cfg.unroll_steps}-layer unroll as reference)",
        frame, formats={"time (s)": "{:.4f}", "ratio to reference": "{:.3g}", "speed-up vs reference": "{:.3g}",
                        "rel. difference": "{:.2e}", "peak memory (MiB)": "{:.1f}"},
        caption=f"median of {cfg.repeats} after {cfg.warmup} warm-up ({cfg.ref_repeats} for the unrolled Hessian); "
                "rel. difference: vs the unrolled route (gradient/HVP: same vector); peak memory: RSS increase in a fresh process. "
                "Gradient and 'cold' HVP start from z* (factorise, adjoint solve, products); 'warm' reuses the factorisation and λ "
                "(the case of many HVPs at one θ: eigsh, Hutchinson, CG)",
    )
    ladder = []
    for n in track(list(cfg.ladder), "size ladder", label=lambda n: f"N={n}"):
        p, xx, yy = setup(n, cfg.n_x, cfg.batch, cfg.seed, groups)
        zz, t_fwd = timed(lambda: solve_equilibrium(p["W_z"], p["b_z"], p["U_z"], xx, opts=opts), 1, 0)
        op = DEQHessianOperator(p, groups, xx, yy, z_star=zz, opts=opts)
        Pn = op.size
        vv = torch.randn(Pn, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
        _, t_g = timed(lambda: DEQHessianOperator(p, groups, xx, yy, z_star=zz, opts=opts).gradient(), cfg.repeats, cfg.warmup)
        _, t_c = timed(lambda: DEQHessianOperator(p, groups, xx, yy, z_star=zz, opts=opts).matvec(vv), cfg.repeats, cfg.warmup)
        _, t_h = timed(lambda: op.matvec(vv), cfg.repeats, cfg.warmup)
        n0 = op.n_hvp
        top, t_eig = timed(lambda: extreme_eigenvalues(op.matvec, Pn, k=cfg.top_k, which="LA", tol=cfg.eigsh_tol), 1, 0)
        row = {"N": n, "P": Pn, "batch": cfg.batch, "forward solve (s)": t_fwd, "gradient (s)": t_g, "HVP cold (s)": t_c, "HVP warm (s)": t_h,
               "HVP cold / gradient": t_c / t_g, f"top-{cfg.top_k} eigsh (s)": t_eig, "eigsh HVPs": op.n_hvp - n0,
               "lambda_max": float(top[-1]), "dense closed form (s)": float("nan")}
        if Pn <= cfg.dense_max_p:
            Hn, row["dense closed form (s)"] = timed(lambda: deq_hessian(**p, x=xx, y=yy, groups=groups, z_star=zz), 1, 1)
            row["lambda_max dense - eigsh (rel.)"] = abs(float(torch.linalg.eigvalsh(Hn)[-1]) - float(top[-1])) / abs(float(top[-1]))
            del Hn
        ladder.append(row)
    result.tables["ladder"] = Table(
        f"Size ladder (d={cfg.n_x}, batch={cfg.batch}, groups {', '.join(groups)})", pd.DataFrame(ladder),
        formats={c: "{:.4f}" for c in ("forward solve (s)", "gradient (s)", "HVP cold (s)", "HVP warm (s)", f"top-{cfg.top_k} eigsh (s)", "dense closed form (s)")}
        | {"HVP cold / gradient": "{:.2f}", "lambda_max": "{:.6g}", "lambda_max dense - eigsh (rel.)": "{:.1e}"},
        caption=f"eigsh (ARPACK, which=LA, tol {cfg.eigsh_tol:g}) on the matrix-free HVP; dense closed form only for P <= {cfg.dense_max_p}",
    )
    result.notes.append(machine_note("float64"))
    result.notes.append(
        f"closed form {times['closed form Hessian']:.3f} s vs unrolled torch.func.hessian {times['unrolled torch.func.hessian']:.2f} s: "
        f"{times['unrolled torch.func.hessian'] / times['closed form Hessian']:.0f}x faster, rel. difference {relative_error(H, H_ref):.1e}; "
        f"HVP/gradient {times['implicit HVP, cold'] / times['implicit gradient']:.2f}x cold, "
        f"{times['implicit HVP, warm'] / times['implicit gradient']:.2f}x warm (unrolled: {times['unrolled HVP'] / times['unrolled gradient']:.2f}x)"
    )
    return result
