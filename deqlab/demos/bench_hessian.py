"""``deqlab bench hessian``: cost of exact DEQ second derivatives, beside references measured in the same run.

Table ``reference`` (the issue's problem ``N = 32, d = 8, batch 64``, ``θ = (W_z, b_z, U_z)``, ``P = 1312``):

* the structured closed-form Hessian vs ``torch.func.hessian`` through a ``unroll_steps``-layer unroll
  (reference; target ≥ 1000× faster at ≤ 1e-13 relative difference);
* one matrix-free HVP vs one implicit gradient (cold, i.e. operator set-up plus the first product:
  target ≤ 2×; warm, a later product: ≤ 0.5×), beside the same ratio for autodiff through the
  unroll (forward-over-reverse HVP vs reverse gradient);
* peak memory of each route: in a fresh process (``spawn``) per route, the kernel's RSS high-water
  mark is reset after setup and the route's peak is ``VmHWM − VmRSS`` (``/proc/self/status``), so routes
  do not hide in each other's peaks or in the import-time peak.

Table ``ladder``: sizes ``N ∈ ladder`` (same ``d`` and batch) in each of ``dtypes``: gradient, HVP,
top-k eigenvalues by eigsh on the HVP operator (float64 rows), and the dense closed form where
``P ≤ dense_max_p``, with its rate (``2P²B`` flop per second) over the device's matrix-product rate
in the same dtype, timed in the same run on a ``rate_size``-square product.

Table ``dense_costs``: where the dense closed form's time goes, at each ladder size with a dense form:
its phases (:data:`deqlab.implicit.hessian.PHASES`: set-up, building the row operands, the products
that write ``H``, the in-place symmetrisation), each the median over ``repeats`` calls as a multiple
of the floor timed in the same row. Their sum is the inverse of ``dense fraction of floor`` up to
timing noise: the target ``≥ 0.5`` means the four phases together may cost at most two floors.

Table ``targets`` (issue 12, targets 1 and 2), each row with the floor or reference it is measured
against in the same run, the target and whether it is met:

* the dense closed form at ``≥ 50%`` of its floor, one ``(P×B)@(B×P)`` product (``P²·B``
  multiply-adds, the same count as the assembly), timed interleaved with it at every ladder size
  with ``P ≤ dense_max_p``; its relative difference to the unrolled ``torch.func.hessian``
  ``≤ 1e-13``; its peak memory ``≤ 1.5×`` the ``8P²`` bytes of ``H`` at ``N = memory_n_z``
  (``P ≈ 10⁴`` for the default 96);
* the matrix-free HVP: operator set-up plus the first product ``≤ 2×`` one implicit gradient
  (:func:`deqlab.implicit.hessian.deq_gradient`: one dense per-sample solve), each later product
  ``≤ 0.5×``, and the set-up plus first product's peak memory ``≤ 2×`` one ``B·N²`` float64
  factorisation at the largest ladder size.

On a GPU (``device=cuda``) the same table has issue 15's targets: the dense closed form at ``≥ 30%``
of the float64 matrix-product rate at ``P ≈ 10⁴`` (ladder rows with ``P ≥ 9000``), and the HVP's
set-up plus first product in under a second at ``P ≈ 10⁶`` (rows with ``P ≥ 9·10⁵``); the rows appear
wherever the ladder reaches those sizes, on any device.

Times are medians of ``repeats`` calls after ``warmup`` calls, the methods compared in one row
interleaved (A B A B …) so that drift hits both (the unrolled Hessian reference: of ``ref_repeats``
calls, it takes seconds), each timed by :class:`deqlab.benchmarks.Stopwatch` (CUDA events on a GPU).
Torch's threads and the BLAS/OpenMP pools (``threadpoolctl``) are pinned to ``threads`` for the whole
bench. Peak memory: on the CPU the RSS of a fresh process; on a GPU the CUDA allocator's peak. The
machine and device are stated in a note.

Figure ``ladder.png``: the ladder's times against ``P`` (log-log) with the unrolled reference.
``reference_samples.npz`` (``time_s``), ``ladder_samples.npz`` (one ``<quantity>_s`` array per time column,
and the matrix-product rate's ``matmul_s``, one row per dtype) and ``dense_costs_samples.npz`` (one array
per phase): every timed call, seconds, one NaN-padded row per table row (:mod:`deqlab.report.timing_samples`).
"""

from __future__ import annotations

import re
import resource
import statistics
from functools import partial

import pandas as pd
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from deqlab.benchmarks import (device_name, interleaved_medians, is_cuda, machine_note, median_time, peak_device_memory_mib,
                               pinned_threads, run_in_child)
from deqlab.implicit.checks import relative_error, unrolled_hessian, unrolled_loss
from deqlab.implicit.hessian import PHASES, deq_gradient, deq_hessian, deq_hessian_parts, solve_equilibrium
from deqlab.implicit.hvp import DEQHessianOperator
from deqlab.implicit.layer import SolveOptions
from deqlab.implicit.params import check_groups, flatten, model_params
from deqlab.implicit.spectrum import extreme_eigenvalues
from deqlab.models.tanh_deq import TanhDEQ
from deqlab.report.hessian_figures import ladder_times
from deqlab.report.progress import track
from deqlab.report.result import Result, Table
from deqlab.report.timing_samples import sample_arrays


def setup(n_z: int, n_x: int, batch: int, seed: int, groups, device="cpu"):
    """Weights (TanhDEQ default init, float64), inputs and targets on ``device``.

    Drawn on the CPU and then moved, so that every device measures the same problem (a CUDA
    generator would draw other numbers for the same seed)."""
    torch.manual_seed(seed)
    with torch.device("cpu"):
        params = model_params(TanhDEQ(n_z, n_x, 1))
        gen = torch.Generator().manual_seed(seed + 1)
        x = torch.randn(batch, n_x, generator=gen, dtype=torch.float64)
        y = torch.randn(batch, 1, generator=gen, dtype=torch.float64)
    device = torch.device(device)
    return {k: v.to(device) for k, v in params.items()}, x.to(device), y.to(device)


def random_vector(size: int, seed: int, like: torch.Tensor) -> torch.Tensor:
    """A standard normal vector of ``size`` drawn on the CPU (the same on every device), with ``like``'s
    dtype and device."""
    return torch.randn(size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64,
                       device="cpu").to(device=like.device, dtype=like.dtype)


def timed(fn, repeats: int, warmup: int, device=None, samples: list[float] | None = None):
    """(last output, median seconds) by :func:`deqlab.benchmarks.median_time` on ``device``; ``samples``
    receives every timed call's seconds."""
    seconds, out = median_time(fn, repeats, warmup, device, samples=samples)
    return out, seconds


#: Issue 12's targets: the dense closed form's fraction of its floor, its error against the unroll,
#: its peak memory over the ``8P²`` bytes of ``H``; the HVP's cost in implicit gradients and its
#: peak memory over one ``B·N²`` float64 factorisation.
DENSE_FLOOR_FRACTION = 0.5
DENSE_UNROLL_RTOL = 1e-13
#: issue 12: at P = 1312 the closed form should be this many times faster than the unrolled autodiff Hessian
DENSE_UNROLL_SPEEDUP = 1000.0
DENSE_MEMORY_RATIO = 1.5
HVP_COLD_RATIO = 2.0
HVP_WARM_RATIO = 0.5
HVP_MEMORY_RATIO = 2.0
#: Issue 15 (the GPU): the dense closed form at ≥ 30% of the device's float64 matrix-product rate at
#: P ≈ 10⁴ (rows with P ≥ DENSE_RATE_MIN_P), and one HVP (operator set-up plus the first product) in
#: under a second at P ≈ 10⁶ (rows with P ≥ HVP_SECOND_MIN_P).
DENSE_RATE_FRACTION = 0.3
DENSE_RATE_MIN_P = 9_000
HVP_SECONDS = 1.0
HVP_SECOND_MIN_P = 900_000
#: Seconds a memory probe's child process may take before it is killed and the bench fails.
PROBE_TIMEOUT_S = 900


#: Shortest timed sample: a cheap call (an HVP, a gradient: well under a millisecond at N = 32) is
#: repeated within one sample until the sample lasts this long, so that one preemption on a shared
#: machine does not decide a median.
MIN_SAMPLE_S = 0.02


def interleaved(fns: dict, repeats: int, warmup: int, cpu: dict | None = None, device=None,
                samples: dict | None = None) -> tuple[dict, dict]:
    """(``name → median seconds per call``, ``name → last output``) by
    :func:`deqlab.benchmarks.interleaved_medians` on ``device``, at least one warm-up and samples of at
    least :data:`MIN_SAMPLE_S`; ``cpu`` receives the CPU-clock medians (NaN on a GPU), ``samples``
    every sample (seconds per call)."""
    timed = interleaved_medians(fns, repeats, max(warmup, 1), cpu=cpu, min_sample_s=MIN_SAMPLE_S, device=device,
                                samples=samples)
    return {name: t for name, (t, _) in timed.items()}, {name: out for name, (_, out) in timed.items()}


def gemm_floor(P: int, batch: int, device="cpu", dtype=torch.float64):
    """The dense Hessian's floor: a ``(P×B)@(B×P)`` product (``P²·B`` multiply-adds, a fresh ``P×P``
    output like ``H``'s) in ``dtype`` on ``device``, as a zero-argument callable."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(P, batch, generator=gen, dtype=torch.float64, device="cpu").to(device=device, dtype=dtype)
    b = torch.randn(batch, P, generator=gen, dtype=torch.float64, device="cpu").to(device=device, dtype=dtype)
    return lambda: a @ b


def matmul_rate(n: int, device, dtype, repeats: int, warmup: int, samples: list[float] | None = None) -> float:
    """The device's matrix-product rate in flop/s: ``2n³`` over the median time of one ``(n×n)@(n×n)``
    product in ``dtype`` (random operands, not zeros, which some hardware multiplies faster); ``samples``
    receives every timed product's seconds."""
    a = gemm_floor(n, n, device, dtype)
    seconds, _ = median_time(a, repeats, max(warmup, 1), device, samples=samples)
    return 2.0 * n ** 3 / seconds


def routes(params, x, y, groups, z, steps, opts):
    """name → zero-argument callable, for timing and for the memory probe."""
    theta = flatten(params, groups)
    v = random_vector(theta.numel(), 3, theta)
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
        "implicit gradient": lambda: deq_gradient(**params, x=x, y=y, groups=groups, z_star=z),
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


def _peak_rss_increase_mib(fn) -> float:
    """Peak RSS increase (MiB) of one ``fn()`` call: reset the kernel's high-water mark
    (``clear_refs`` 5), read ``VmRSS`` before and ``VmHWM`` after. Falls back to ``ru_maxrss`` where
    ``/proc`` does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        before = _status_kib("VmRSS")
        fn()
        after = _status_kib("VmHWM")
    except OSError:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        fn()
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return max(after - before, 0) / 1024.0  # KiB → MiB


def _route_memory(name, n_z, n_x, batch, seed, groups, steps, atol, threads) -> float:
    """In the child: peak RSS increase (MiB) of one call of reference route ``name``."""
    torch.set_num_threads(threads)
    threadpool_limits(limits=threads)
    params, x, y = setup(n_z, n_x, batch, seed, groups)
    opts = SolveOptions(atol=atol, max_iter=5000)
    z = solve_equilibrium(params["W_z"], params["b_z"], params["U_z"], x, opts=opts)
    fns = routes(params, x, y, groups, z, steps, opts)
    return _peak_rss_increase_mib(fns[name])


def _target_memory(kind, n_z, n_x, batch, seed, groups, atol, threads, device="cpu") -> tuple[float, float]:
    """(peak memory increase, its floor) in MiB for ``kind`` ``"dense"`` (one :func:`deq_hessian`; floor
    the ``8P²`` bytes of ``H``) or ``"hvp"`` (operator set-up plus one product; floor one ``B·N²``
    float64 factorisation). On the CPU, run in a fresh process (:func:`run_in_child`) and measured as
    the RSS increase; on a GPU, run here and measured by the CUDA allocator's peak."""
    if is_cuda(device):
        measure = lambda fn: peak_device_memory_mib(fn, device)  # noqa: E731
    else:
        torch.set_num_threads(threads)
        threadpool_limits(limits=threads)
        measure = _peak_rss_increase_mib
    params, x, y = setup(n_z, n_x, batch, seed, groups, device)
    z = solve_equilibrium(params["W_z"], params["b_z"], params["U_z"], x, opts=SolveOptions(atol=atol, max_iter=5000))
    P = flatten(params, groups).numel()
    if kind == "dense":
        return measure(lambda: deq_hessian(**params, x=x, y=y, groups=groups, z_star=z)), 8 * P * P / 2**20
    v = random_vector(P, 3, z)
    peak = measure(lambda: DEQHessianOperator(params, groups, x, y, z_star=z).matvec(v))
    return peak, 8 * batch * n_z * n_z / 2**20


def target_memory(kind, n_z, n_x, batch, seed, groups, atol, threads, device, what: str) -> tuple[float, float]:
    """:func:`_target_memory`, in a fresh process on the CPU (so that earlier work does not hide in the peak)."""
    args = (kind, n_z, n_x, batch, seed, tuple(groups), atol, threads)
    if is_cuda(device):
        return _target_memory(*args, device=device)
    return run_in_child(_target_memory, args, f"memory probe of the {what} at N = {n_z}", timeout_s=PROBE_TIMEOUT_S)


def peak_memory_mib(name, n_z, n_x, batch, seed, groups, steps, atol, threads) -> float:
    """Increase of peak RSS (MiB) caused by one call of route ``name`` in a fresh process."""
    return float(run_in_child(_route_memory, (name, n_z, n_x, batch, seed, tuple(groups), steps, atol, threads),
                              f"memory probe of '{name}'", timeout_s=PROBE_TIMEOUT_S))


def _dense_costs(p, x, y, z, groups, repeats: int, floor_s: float) -> dict:
    """The dense closed form's phases (median seconds over ``repeats`` calls) as multiples of ``floor_s``;
    under the key ``"samples"`` every call's seconds per phase (``phase → list``)."""
    samples = {name: [] for name in PHASES}
    for _ in range(max(1, repeats)):
        phases = dict.fromkeys(PHASES, 0.0)
        deq_hessian_parts(**p, x=x, y=y, groups=groups, z_star=z, split_terms=False, diagnostics=False, phases=phases)
        for name in PHASES:
            samples[name].append(phases[name])
    costs = {f"{name} / floor": statistics.median(samples[name]) / floor_s for name in PHASES}
    return {**costs, "sum / floor": sum(costs.values()), "samples": samples}


def _ladder_row(n: int, cfg, groups, opts, dtype: str, rates: dict) -> dict:
    """One size of the ladder in ``dtype``: forward solve, gradient, HVP cold/warm (interleaved), eigsh
    on the HVP operator, and the dense closed form beside its floor where ``P ≤ dense_max_p`` (its
    phases under the key ``"dense costs"``). ``rates``: ``dtype → the device's matrix-product rate``.
    Under the key ``"samples"``: quantity (``forward solve``, ``gradient``, ``cold``, ``warm``,
    ``eigsh``, ``dense``, ``floor``) → every timed call's seconds behind the row's times (empty: not timed).

    The fixed point is solved in float64 (float32 cannot meet ``solver_atol``) and then cast with the
    parameters: a float32 row times the derivatives, not the solve. eigsh (ARPACK, float64 on the
    host) runs on float64 rows only."""
    device = torch.device(cfg.device)
    p, xx, yy = setup(n, cfg.n_x, cfg.batch, cfg.seed, groups, device)
    samples = {name: [] for name in LADDER_ARRAYS}
    zz, t_fwd = timed(lambda: solve_equilibrium(p["W_z"], p["b_z"], p["U_z"], xx, opts=opts), 1, 0, device, samples["forward solve"])
    dt = getattr(torch, dtype)
    p, xx, yy, zz = {k: v.to(dt) for k, v in p.items()}, xx.to(dt), yy.to(dt), zz.to(dt)
    op = DEQHessianOperator(p, groups, xx, yy, z_star=zz, opts=opts)
    Pn = op.size
    vv = random_vector(Pn, 4, zz)
    tc = {}
    t, _ = interleaved({
        "gradient": lambda: deq_gradient(**p, x=xx, y=yy, groups=groups, z_star=zz),
        "cold": lambda: DEQHessianOperator(p, groups, xx, yy, z_star=zz, opts=opts).matvec(vv),
        "warm": lambda: op.matvec(vv),
    }, cfg.repeats, cfg.warmup, cpu=tc, device=device, samples=samples)
    nan = float("nan")
    top, t_eig, n_eig = [nan], nan, 0
    if dt == torch.float64:
        n0 = op.n_hvp
        top, t_eig = timed(lambda: extreme_eigenvalues(op.matvec, Pn, k=cfg.top_k, which="LA", tol=cfg.eigsh_tol, device=device),
                           1, 0, device, samples["eigsh"])
        n_eig = op.n_hvp - n0
    row = {"dtype": dtype, "N": n, "P": Pn, "batch": cfg.batch, "forward solve (s)": t_fwd, "gradient (s)": t["gradient"],
           "HVP cold (s)": t["cold"], "HVP warm (s)": t["warm"], "HVP cold / gradient": t["cold"] / t["gradient"],
           "HVP warm / gradient": t["warm"] / t["gradient"], f"top-{cfg.top_k} eigsh (s)": t_eig, "eigsh HVPs": n_eig,
           "lambda_max": float(top[-1]), "dense closed form (s)": nan, "dense floor (s)": nan,
           "dense fraction of floor": nan, "dense rate (Gflop/s)": nan, "dense rate / matmul rate": nan,
           "HVP cold / gradient (CPU clock)": tc["cold"] / tc["gradient"],
           "HVP warm / gradient (CPU clock)": tc["warm"] / tc["gradient"], "dense fraction of floor (CPU clock)": nan}
    if Pn <= cfg.dense_max_p:
        tdc = {}
        td, outs = interleaved({"dense": lambda: deq_hessian(**p, x=xx, y=yy, groups=groups, z_star=zz),
                                "floor": gemm_floor(Pn, cfg.batch, device, dt)}, cfg.repeats, max(cfg.warmup, 1), cpu=tdc, device=device,
                               samples=samples)
        rate = 2.0 * Pn * Pn * cfg.batch / td["dense"]  # the assembly's P²·B multiply-adds, as flop/s
        row.update({"dense closed form (s)": td["dense"], "dense floor (s)": td["floor"], "dense fraction of floor": td["floor"] / td["dense"],
                    "dense rate (Gflop/s)": rate / 1e9, "dense rate / matmul rate": rate / rates[dtype],
                    "dense fraction of floor (CPU clock)": tdc["floor"] / tdc["dense"]})
        row["dense costs"] = {"dtype": dtype, "N": n, "P": Pn, "floor (s)": td["floor"], "dense (s)": td["dense"],
                              **_dense_costs(p, xx, yy, zz, groups, cfg.repeats, td["floor"])}
        if dt == torch.float64:
            top_dense = float(torch.linalg.eigvalsh(outs["dense"])[-1])
            row["lambda_max dense - eigsh (rel.)"] = abs(top_dense - float(top[-1])) / abs(float(top[-1]))
    row["samples"] = samples
    return row


def _targets_table(cfg, groups, times, H, H_ref, ladder) -> Table:
    """Issue 12's targets 1 and 2, each beside the floor or reference it is measured against."""
    rows = []
    device = torch.device(cfg.device)

    def add(target, N, P, quantity, value, reference, ref_value, bound, met, value_cpu=float("nan")):
        rows.append({"target": target, "N": N, "P": P, "quantity": quantity, "value": value, "value (CPU clock)": value_cpu,
                     "against": reference, "against value": ref_value, "bound": bound, "met": "met" if met else "NOT met"})

    ladder = [r for r in ladder if r["dtype"] == "float64"]  # the targets are float64 ones
    for r in ladder:
        if r["dense fraction of floor"] == r["dense fraction of floor"]:  # not NaN
            add("1 dense Hessian", r["N"], r["P"], "floor time / dense time", r["dense fraction of floor"],
                "(P x B)@(B x P) product (s)", r["dense floor (s)"], f">= {DENSE_FLOOR_FRACTION:g}",
                r["dense fraction of floor"] >= DENSE_FLOOR_FRACTION, r["dense fraction of floor (CPU clock)"])
    P_ref = H.shape[0]
    err = relative_error(H, H_ref)
    add("1 dense Hessian", cfg.n_z, P_ref, "rel. difference", err, f"unrolled torch.func.hessian ({cfg.unroll_steps} steps)",
        float("nan"), f"<= {DENSE_UNROLL_RTOL:g}", err <= DENSE_UNROLL_RTOL)
    speed = times["unrolled torch.func.hessian"] / times["closed form Hessian"]
    add("1 dense Hessian", cfg.n_z, P_ref, "speed-up vs unroll", speed, "unrolled torch.func.hessian (s)",
        times["unrolled torch.func.hessian"], f">= {DENSE_UNROLL_SPEEDUP:g} (follows from the floor target at P = 1312)",
        speed >= DENSE_UNROLL_SPEEDUP)
    for r in ladder:
        add("2 HVP", r["N"], r["P"], "(set-up + first product) / gradient", r["HVP cold / gradient"], "implicit gradient (s)",
            r["gradient (s)"], f"<= {HVP_COLD_RATIO:g}", r["HVP cold / gradient"] <= HVP_COLD_RATIO, r["HVP cold / gradient (CPU clock)"])
        add("2 HVP", r["N"], r["P"], "later product / gradient", r["HVP warm / gradient"], "implicit gradient (s)",
            r["gradient (s)"], f"<= {HVP_WARM_RATIO:g}", r["HVP warm / gradient"] <= HVP_WARM_RATIO, r["HVP warm / gradient (CPU clock)"])
    if cfg.memory:
        n_big = max(cfg.ladder)
        peak_what = "peak CUDA memory increase" if is_cuda(device) else "peak RSS increase"
        for kind, n, bound, what, floor in (("dense", cfg.memory_n_z, DENSE_MEMORY_RATIO, "1 dense Hessian", "8 P^2 bytes of H (MiB)"),
                                            ("hvp", n_big, HVP_MEMORY_RATIO, "2 HVP", "one B N^2 float64 factorisation (MiB)")):
            peak, floor_mib = target_memory(kind, n, cfg.n_x, cfg.batch, cfg.seed, groups, cfg.solver_atol, cfg.threads, device, what)
            P_n = n * n + n + n * cfg.n_x
            add(what, n, P_n, f"{peak_what} / floor", peak / floor_mib, floor, floor_mib, f"<= {bound:g}", peak / floor_mib <= bound)
    where = device_name(device)
    for r in ladder:
        if r["P"] >= DENSE_RATE_MIN_P and r["dense rate / matmul rate"] == r["dense rate / matmul rate"]:
            add("15 dense Hessian rate", r["N"], r["P"], "dense rate / matrix-product rate", r["dense rate / matmul rate"],
                f"float64 ({cfg.rate_size})^2 product on {where} (Gflop/s)", r["dense rate (Gflop/s)"] / r["dense rate / matmul rate"],
                f">= {DENSE_RATE_FRACTION:g} (GPU target, P ~ 1e4)", r["dense rate / matmul rate"] >= DENSE_RATE_FRACTION)
        if r["P"] >= HVP_SECOND_MIN_P:
            add("15 HVP at P ~ 1e6", r["N"], r["P"], "set-up + first product (s)", r["HVP cold (s)"], f"later product on {where} (s)",
                r["HVP warm (s)"], f"< {HVP_SECONDS:g} s (GPU target)", r["HVP cold (s)"] < HVP_SECONDS)
    frame = pd.DataFrame(rows)
    return Table(f"Issue 12 targets 1-2 (and 15 on a GPU): measured against their floors in this run on {device_name(device)}", frame,
                 formats={"value": "{:.3g}", "value (CPU clock)": "{:.3g}", "against value": "{:.4g}"},
                 caption="dense Hessian and HVP times are medians of wall time, interleaved with what they are compared with ('met' "
                         "judges these); value (CPU clock): the same ratio from the thread's CPU time, steadier on a shared machine; "
                         "memory: peak RSS increase of one call in a fresh process; nan: the row's value is not a time ratio "
                         "(rel. difference) or its floor was not timed")


#: A ladder row's timed quantities (the keys of its samples) → their names in ``ladder_samples.npz`` (``<name>_s``).
LADDER_ARRAYS = {"forward solve": "forward_solve", "gradient": "gradient", "cold": "hvp_cold", "warm": "hvp_warm",
                 "eigsh": "eigsh", "dense": "dense", "floor": "dense_floor"}


def _array_name(label: str) -> str:
    """``"forward solve"`` → ``"forward_solve"``, ``"set-up"`` → ``"set_up"``: a label as an ``.npz`` key."""
    return re.sub(r"[^0-9a-z]+", "_", label.lower()).strip("_")


def run(cfg) -> Result:
    groups = check_groups(list(cfg.groups))
    result = Result(command="bench_hessian")
    # torch's intra-op pool and the BLAS/OpenMP pools (which threadpoolctl controls) both pinned
    with pinned_threads(cfg.threads):
        return _bench(cfg, groups, result)


def _bench(cfg, groups, result) -> Result:
    opts = SolveOptions(atol=cfg.solver_atol, max_iter=5000)
    device = torch.device(cfg.device)
    params, x, y = setup(cfg.n_z, cfg.n_x, cfg.batch, cfg.seed, groups, device)
    z = solve_equilibrium(params["W_z"], params["b_z"], params["U_z"], x, opts=opts)
    P = flatten(params, groups).numel()
    fns = routes(params, x, y, groups, z, cfg.unroll_steps, opts)
    times, outs, samples = {}, {}, {}
    slow = "unrolled torch.func.hessian"  # seconds per call: timed alone, ref_repeats times
    samples[slow] = []
    outs[slow], times[slow] = timed(fns[slow], cfg.ref_repeats, 0, device, samples[slow])
    t, o = interleaved({k: f for k, f in fns.items() if k != slow}, cfg.repeats, cfg.warmup, device=device, samples=samples)
    times.update(t)
    outs.update(o)
    mem = {}
    if cfg.memory:
        for name in track(list(fns), "memory probes", label=str):
            if is_cuda(device):  # the CUDA allocator's peak can be reset: no fresh process needed
                mem[name] = peak_device_memory_mib(fns[name], device)
            else:
                mem[name] = peak_memory_mib(name, cfg.n_z, cfg.n_x, cfg.batch, cfg.seed, groups, cfg.unroll_steps, cfg.solver_atol,
                                            cfg.threads)
    H, H_ref = outs["closed form Hessian"], outs["unrolled torch.func.hessian"]
    hv_ref = outs["unrolled HVP"]
    rows = [
        {"method": "closed form Hessian (structured)", "reference": "unrolled torch.func.hessian",
         "rel. difference": relative_error(H, H_ref), "target": ">= 1000x faster, <= 1e-13"},
        {"method": "unrolled torch.func.hessian", "reference": "(itself)", "rel. difference": 0.0, "target": ""},
        {"method": "implicit HVP, cold", "reference": "implicit gradient", "rel. difference": relative_error(outs["implicit HVP, cold"], hv_ref),
         "target": "<= 2x gradient"},
        {"method": "implicit HVP, warm", "reference": "implicit gradient", "rel. difference": relative_error(outs["implicit HVP, warm"], hv_ref),
         "target": "<= 0.5x gradient"},
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
        frame, formats={"time (s)": "{:.3g}", "ratio to reference": "{:.3g}", "speed-up vs reference": "{:.3g}",
                        "rel. difference": "{:.2e}", "peak memory (MiB)": "{:.1f}"},
        caption=f"median of {cfg.repeats} after {cfg.warmup} warm-up ({cfg.ref_repeats} for the unrolled Hessian); "
                "rel. difference: vs the unrolled route (gradient/HVP: same vector); peak memory: "
                + ("the CUDA allocator's peak increase during one call" if is_cuda(device) else "RSS increase in a fresh process") +
                " (nan: not measured, memory=false or a route it skips). " +
                "Gradient and 'cold' HVP start from z* (factorise, adjoint solve, products); 'warm' reuses the factorisation and λ "
                "(the case of many HVPs at one θ: eigsh, Hutchinson, CG)",
    )
    result.arrays["reference_samples"] = sample_arrays({"method": frame["method"].tolist(), "P": frame["P"].to_numpy(int)},
                                                       {"time": [samples[key.get(m, m)] for m in frame["method"]]})
    rate_samples = {dt: [] for dt in cfg.dtypes}
    rates = {dt: matmul_rate(cfg.rate_size, device, getattr(torch, dt), cfg.repeats, cfg.warmup, rate_samples[dt]) for dt in cfg.dtypes}
    sizes = [(dt, n) for dt in cfg.dtypes for n in cfg.ladder]
    ladder = [_ladder_row(n, cfg, groups, opts, dt, rates) for dt, n in track(sizes, "size ladder", label=lambda c: f"{c[0]} N={c[1]}")]
    costs = [row.pop("dense costs") for row in ladder if "dense costs" in row]
    ladder_samples = [row.pop("samples") for row in ladder]
    result.arrays["ladder_samples"] = {
        **sample_arrays({"dtype": [r["dtype"] for r in ladder], "N": [r["N"] for r in ladder], "P": [r["P"] for r in ladder]},
                        {LADDER_ARRAYS[q]: [s[q] for s in ladder_samples] for q in LADDER_ARRAYS}),
        # the matrix-product rate of the caption: 2 matmul_size^3 / median(matmul_s), one row per dtype
        **sample_arrays({"matmul_dtype": list(rate_samples), "matmul_size": [cfg.rate_size] * len(rate_samples)},
                        {"matmul": list(rate_samples.values())}),
    }
    cost_samples = [c.pop("samples") for c in costs]
    result.tables["ladder"] = Table(
        f"Size ladder (d={cfg.n_x}, batch={cfg.batch}, groups {', '.join(groups)}) on {device_name(device)}", pd.DataFrame(ladder),
        formats={c: "{:.3g}" for c in ("forward solve (s)", "gradient (s)", "HVP cold (s)", "HVP warm (s)", f"top-{cfg.top_k} eigsh (s)",
                                       "dense closed form (s)", "dense floor (s)", "dense rate (Gflop/s)")}
        | {c: "{:.2f}" for c in ("HVP cold / gradient", "HVP warm / gradient", "dense fraction of floor", "HVP cold / gradient (CPU clock)",
                                 "HVP warm / gradient (CPU clock)", "dense fraction of floor (CPU clock)", "dense rate / matmul rate")} | {
           "lambda_max": "{:.6g}", "lambda_max dense - eigsh (rel.)": "{:.1e}"},
        caption=f"eigsh (ARPACK, which=LA, tol {cfg.eigsh_tol:g}) on the matrix-free HVP; dense closed form only for P <= {cfg.dense_max_p}; "
                "gradient: deq_gradient (one dense per-sample solve); HVP cold: operator set-up + first product, warm: a later product "
                "(timed interleaved with the gradient); dense floor: a (P x B)@(B x P) product in the row's dtype timed interleaved with the "
                "dense form; dense rate: its 2 P^2 B flop per second, over the rate of a (n x n)@(n x n) product in the same dtype "
                f"(n = rate_size = {cfg.rate_size}: " + ", ".join(f"{dt} {r / 1e9:.4g} Gflop/s" for dt, r in rates.items()) + "); "
                "float32 rows: z* solved in float64 and cast, no eigsh; CPU-clock columns are NaN on a GPU",
    )
    if costs:
        result.arrays["dense_costs_samples"] = sample_arrays(
            {"dtype": [c["dtype"] for c in costs], "N": [c["N"] for c in costs], "P": [c["P"] for c in costs]},
            {_array_name(phase): [s[phase] for s in cost_samples] for phase in PHASES})
        result.tables["dense_costs"] = Table(
            "Where the dense closed form's time goes: its phases as multiples of the floor timed in the same row",
            pd.DataFrame(costs), formats={"floor (s)": "{:.3g}", "dense (s)": "{:.3g}"} | {c: "{:.2f}" for c in costs[0] if c.endswith("/ floor")},
            caption="floor: a (P x B)@(B x P) product in the row's dtype; phases (medians of separate calls): set-up (the per-sample "
                    "inverse of I - W D, the adjoint, the batch of N x N curvature matrices, allocation), operands (the "
                    "(B x P) matrix C_i of each row index i), products (the (K x B)@(B x P) products writing H's rows), "
                    "symmetrise (H = Y + Y^T in place). The issue-12 target, floor / dense >= 0.5, means sum / floor <= 2.",
        )
    result.tables["targets"] = _targets_table(cfg, groups, times, H, H_ref, ladder)
    result.figures["ladder"] = partial(
        ladder_times, result.tables["ladder"].frame,
        {f"closed form Hessian (N = {cfg.n_z})": (P, times["closed form Hessian"]),
         f"unrolled torch.func.hessian, {cfg.unroll_steps} steps (N = {cfg.n_z}): "
         f"{times['unrolled torch.func.hessian'] / times['closed form Hessian']:.0f}x the closed form": (P, times["unrolled torch.func.hessian"])},
        title=f"Exact DEQ second derivatives against the parameter count P (d={cfg.n_x}, batch {cfg.batch}, groups {', '.join(groups)})",
        subtitle=f"{device_name(device)}, torch threads {torch.get_num_threads()}, median of {cfg.repeats} interleaved calls after "
                 f"{cfg.warmup} warm-up (unrolled Hessian: {cfg.ref_repeats}), seed={cfg.seed}")
    result.notes.append(machine_note(", ".join(cfg.dtypes), device))
    pools = ", ".join(f"{i['internal_api']} {i['num_threads']}" for i in threadpool_info())
    result.notes.append(f"Threads pinned for the whole bench: torch {torch.get_num_threads()}; BLAS/OpenMP pools (threadpoolctl): {pools}.")
    result.notes.append(
        f"closed form {times['closed form Hessian']:.3f} s vs unrolled torch.func.hessian {times['unrolled torch.func.hessian']:.2f} s: "
        f"{times['unrolled torch.func.hessian'] / times['closed form Hessian']:.0f}x faster, rel. difference {relative_error(H, H_ref):.1e}; "
        f"HVP/gradient {times['implicit HVP, cold'] / times['implicit gradient']:.2f}x cold, "
        f"{times['implicit HVP, warm'] / times['implicit gradient']:.2f}x warm (unrolled: {times['unrolled HVP'] / times['unrolled gradient']:.2f}x)"
    )
    return result
