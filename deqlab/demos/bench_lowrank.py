"""``deqlab bench lowrank``: seed-004 reconstructions against scipy's SR1 updated pair by pair.

Problem: random symmetric ``H = U diag(S) Uᵀ`` (``n × n``, rank ``rank``, ``S ~ N(0, 1)``), ``k``
exact pairs ``Y = H X`` with Gaussian ``X``. Rows at ``n``: every method of :mod:`deqlab.lowrank`
(factored, ``O(n k²)``) and scipy's ``SR1`` (``initialize`` + ``k`` updates + ``get_matrix``, dense
``O(n² k)``), from ``B₀ = γI`` (auto) and ``B₀ = 0``. Error ``‖H_est − H‖_F/‖H‖_F``; time = median of
``repeats`` calls after ``warmup``; speed-up = SR1 (auto) time / method time, measured in the same
process. Rows at ``large_n``: factored methods only (an ``n × n`` float64 matrix at ``n = 10⁵`` is
80 GB), error computed in factored form, peak traced memory (``tracemalloc``) of one extra call.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd

from deqlab import lowrank as LR
from deqlab.demos.lowrank import scipy_update
from deqlab.benchmarks import machine_note, median_time, peak_memory_mib
from deqlab.report.result import Result, Table
from deqlab.report.progress import track

REFERENCE = "scipy SR1 (auto init)"


def run(cfg) -> Result:
    rng = np.random.default_rng(cfg.seed)
    result = Result(command="bench_lowrank")
    rows = []
    sizes = [cfg.n, *list(cfg.large_n)]
    for n in track(sizes, "bench lowrank", label=lambda n: f"n={n}"):
        U, S = LR.random_low_rank(n, cfg.rank, rng=rng)
        X = rng.standard_normal((n, cfg.k))
        Y = U @ (S[:, None] * (U.T @ X))
        dense = n == cfg.n
        H = (U * S) @ U.T if dense else None
        for method in LR.METHODS:
            t, est = median_time(partial(LR.estimate, method, X, Y, rtol=cfg.rtol), cfg.repeats, cfg.warmup)
            rows.append({"n": n, "rank": cfg.rank, "k": cfg.k, "method": method, "time [ms]": 1e3 * t,
                         "rel error": LR.relative_error(est, U, S), "est rank": est.rank,
                         "peak memory [MiB]": np.nan if dense else peak_memory_mib(partial(LR.estimate, method, X, Y, rtol=cfg.rtol))})
        if dense:
            for name, init in ((REFERENCE, "auto"), ("scipy SR1 (B0 = 0)", 0.0)):
                t, B = median_time(partial(scipy_update, "SR1", X, Y, init_scale=init), cfg.repeats, cfg.warmup)
                rows.append({"n": n, "rank": cfg.rank, "k": cfg.k, "method": name, "time [ms]": 1e3 * t,
                             "rel error": float(np.linalg.norm(B - H) / np.linalg.norm(H)),
                             "est rank": int(np.linalg.matrix_rank(B)), "peak memory [MiB]": np.nan})
    frame = pd.DataFrame(rows)
    ref = frame[(frame["n"] == cfg.n) & (frame["method"] == REFERENCE)]["time [ms]"].iloc[0]
    frame["speed-up vs SR1"] = np.where(frame["n"] == cfg.n, ref / frame["time [ms]"], np.nan)
    frame["meets targets"] = (frame["rel error"] <= cfg.target_error) & (
        (frame["n"] != cfg.n) | (frame["speed-up vs SR1"] >= cfg.target_speedup))
    result.tables["bench"] = Table(
        f"Symmetric H from k = {cfg.k} exact pairs (rank {cfg.rank}): median of {cfg.repeats} after {cfg.warmup} warm-up",
        frame,
        formats={"time [ms]": "{:.3f}", "rel error": "{:.2e}", "speed-up vs SR1": "{:.1f}", "peak memory [MiB]": "{:.1f}"},
        caption=f"speed-up: {REFERENCE} time at n = {cfg.n} / method time (same process). "
        f"Targets: rel error <= {cfg.target_error:g}, speed-up >= {cfg.target_speedup:g} (at n = {cfg.n}); "
        "only rank_k_recovery and seed_method are meant to meet the error target (the others return other solutions).",
    )
    result.notes.append(machine_note("float64") + " torch is not used by this benchmark.")
    return result
