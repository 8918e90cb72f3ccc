#!/usr/bin/env python
"""Put a GPU run's bench CSVs beside the CPU record: what experiments/bench_gpu.md quotes.

    python experiments/gpu/compare.py RUNS_DIR [--tiled OLD_HESSIAN_RUN] [--cpu-solvers CPU_SOLVERS_RUN]

RUNS_DIR is ``outputs/gpu/bench`` unpacked from ``gpu_runs.tgz`` (experiments/gpu/run.sh): its newest
``hessian``, ``solvers`` (float32) and ``nethessian`` runs are copied to experiments/bench_gpu/, and
joined with the CPU record (experiments/bench_hessian/ladder.csv, experiments/nethessian/bench.csv,
and ``--cpu-solvers``, a CPU run of the same solver problems) into ``*_vs_cpu.csv`` tables of times
and GPU speed-ups. ``--tiled``: a hessian run made before the GPU's strip symmetrisation, for the
before/after table ``dense_symmetrise.csv``.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent.parent
OUT = HERE / "bench_gpu"


def newest(folder: Path, want=lambda p: True) -> Path:
    runs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.endswith((".failed", ".partial")) and want(p))
    if not runs:
        raise SystemExit(f"no finished run under {folder}")
    return runs[-1]


def is_float32(run: Path) -> bool:
    return "dtype: float32" in (run / "config.yaml").read_text()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", type=Path)
    ap.add_argument("--tiled", type=Path)
    ap.add_argument("--cpu-solvers", type=Path)
    args = ap.parse_args(argv)
    OUT.mkdir(exist_ok=True)

    hess = newest(args.runs / "hessian")
    for name in ("reference", "ladder", "targets", "dense_costs"):
        shutil.copy(hess / f"{name}.csv", OUT / f"hessian_{name}.csv")
    gpu = pd.read_csv(hess / "ladder.csv")
    cpu = pd.read_csv(HERE / "bench_hessian" / "ladder.csv")
    both = gpu[gpu["dtype"] == "float64"].merge(cpu, on=["N", "P"], suffixes=(" GPU", " CPU"))
    rows = []
    for _, r in both.iterrows():
        row = {"N": r["N"], "P": r["P"]}
        for what in ("gradient", "HVP cold", "HVP warm", "dense closed form"):
            row[f"{what} CPU (s)"] = r[f"{what} (s) CPU"]
            row[f"{what} GPU (s)"] = r[f"{what} (s) GPU"]
            row[f"{what} CPU / GPU"] = r[f"{what} (s) CPU"] / r[f"{what} (s) GPU"]
        rows.append(row)
    pd.DataFrame(rows).to_csv(OUT / "hessian_vs_cpu.csv", index=False)

    if args.tiled:
        old = pd.read_csv(args.tiled / "dense_costs.csv")
        new = pd.read_csv(hess / "dense_costs.csv")
        sym = old.merge(new, on=["dtype", "N", "P"], suffixes=(" tiled", " strips"))
        sym = sym[["dtype", "N", "P", "dense (s) tiled", "dense (s) strips", "symmetrise / floor tiled", "symmetrise / floor strips",
                   "sum / floor tiled", "sum / floor strips"]]
        sym.to_csv(OUT / "dense_symmetrise.csv", index=False)

    solvers = newest(args.runs / "solvers", is_float32)
    shutil.copy(solvers / "bench.csv", OUT / "solvers_float32.csv")
    shutil.copy(solvers / "broyden_memory.csv", OUT / "broyden_memory_float32.csv")
    if args.cpu_solvers:
        g = pd.read_csv(solvers / "bench.csv")
        c = pd.read_csv(args.cpu_solvers / "bench.csv")
        shutil.copy(args.cpu_solvers / "bench.csv", OUT / "solvers_float32_cpu.csv")
        keys = ["family", "n_z", "||W||_2", "solver"]
        j = g.merge(c, on=keys, suffixes=(" GPU", " CPU"))
        j["CPU / GPU"] = j["median time [ms] CPU"] / j["median time [ms] GPU"]
        j[keys + ["f evals GPU", "f evals CPU", "median time [ms] CPU", "median time [ms] GPU", "CPU / GPU",
                  "time per f eval [ms] GPU"]].to_csv(OUT / "solvers_float32_vs_cpu.csv", index=False)

    neth = newest(args.runs / "nethessian")
    shutil.copy(neth / "bench.csv", OUT / "nethessian.csv")
    g = pd.read_csv(neth / "bench.csv")
    c = pd.read_csv(HERE / "nethessian" / "bench.csv")
    j = g.merge(c, on=["task", "dtype", "batch", "method"], suffixes=(" GPU", " CPU"))
    j["CPU / GPU"] = j["median time [ms] CPU"] / j["median time [ms] GPU"]
    j[["task", "dtype", "batch", "method", "median time [ms] CPU", "median time [ms] GPU", "CPU / GPU",
       "max rel error GPU"]].to_csv(OUT / "nethessian_vs_cpu.csv", index=False)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
