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


def solvers_vs_cpu(gpu_csv: Path, cpu_csv: Path, out: Path) -> None:
    """The problems both runs solved, GPU and CPU side by side, with the CPU / GPU time ratio."""
    g, c = pd.read_csv(gpu_csv), pd.read_csv(cpu_csv)
    keys = ["family", "n_z", "||W||_2", "solver"]
    j = g.merge(c, on=keys, suffixes=(" GPU", " CPU"))
    j["CPU / GPU"] = j["median time [ms] CPU"] / j["median time [ms] GPU"]
    j[keys + ["f evals GPU", "f evals CPU", "median time [ms] CPU", "median time [ms] GPU", "CPU / GPU",
              "time per f eval [ms] GPU"]].to_csv(out, index=False)


def figure(gpu: pd.DataFrame, cpu: pd.DataFrame, path: Path) -> None:
    """Seconds against P, log-log: the gradient, the HVP (set-up + first product, and a later product) and
    the dense Hessian, float64, on the GPU (solid) and one CPU thread (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.lines import Line2D

    gpu = gpu[gpu["dtype"] == "float64"]
    fig, ax = plt.subplots(figsize=(9.5, 4.8))
    routes = {"gradient (s)": ("implicit gradient", "C0"), "HVP cold (s)": ("HVP: set-up + first product", "C1"),
              "HVP warm (s)": ("HVP: a later product", "C2"), "dense closed form (s)": ("dense Hessian", "C3")}
    for column, (label, colour) in routes.items():
        for frame, style in ((gpu, "-"), (cpu, "--")):
            rows = frame[frame[column].notna()]
            ax.plot(rows["P"], rows[column], style, marker="o", ms=3, color=colour)
    ax.axhline(1.0, color="0.6", lw=0.8)
    ax.text(1.1e6, 0.7, "issue 15: an HVP at P ≈ 10⁶ in under 1 s", color="0.35", fontsize=8, ha="right", va="top")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("number of parameters P")
    ax.set_ylabel("time per call [s]")
    ax.set_title("Exact DEQ derivatives, tanh DEQ, batch 64, float64: GPU vs CPU")
    ax.grid(True, which="major", alpha=0.3)
    handles = [Line2D([], [], color=c, marker="o", ms=3, label=label) for label, c in routes.values()]
    handles += [Line2D([], [], color="k", ls="-", label="NVIDIA H200"), Line2D([], [], color="k", ls="--", label="one CPU thread")]
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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

    figure(gpu, cpu, OUT / "hessian_cpu_gpu.png")

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
        shutil.copy(args.cpu_solvers / "bench.csv", OUT / "solvers_float32_cpu.csv")
        solvers_vs_cpu(solvers / "bench.csv", args.cpu_solvers / "bench.csv", OUT / "solvers_float32_vs_cpu.csv")
    finished64 = [p for p in (args.runs / "solvers").iterdir() if p.is_dir() and not p.name.endswith((".failed", ".partial"))
                  and not is_float32(p)]
    if finished64:  # float64 on the GPU, beside the CPU record (experiments/bench/solvers.csv, float64, tol 1e-10)
        run64 = sorted(finished64)[-1]
        shutil.copy(run64 / "bench.csv", OUT / "solvers_float64.csv")
        solvers_vs_cpu(run64 / "bench.csv", HERE / "bench" / "solvers.csv", OUT / "solvers_float64_vs_cpu.csv")

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
