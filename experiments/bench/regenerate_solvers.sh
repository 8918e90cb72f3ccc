#!/usr/bin/env bash
# Regenerates experiments/bench/solvers.csv and solvers_summary.md with `deqlab bench solvers`.
set -euo pipefail
out=$(mktemp -d)
COLUMNS=220 deqlab bench solvers repeats=${REPEATS:-5} output_root="$out" | tail -n 3
cp "$out"/bench/solvers/*/bench.csv experiments/bench/solvers.csv
python3 - <<'PY'
import pandas as pd
df = pd.read_csv("experiments/bench/solvers.csv")
lines = ["| family | n_z | ‖W‖₂ | solver | converged | f evals | median ms | f evals / FP | time / FP | f evals / hybr |",
         "|---|---:|---:|---|:---:|---:|---:|---:|---:|---:|"]
for r in df.to_dict("records"):
    hybr = "" if pd.isna(r["f evals / hybr"]) else f"{r['f evals / hybr']:.2f}"
    lines.append(
        f"| {r['family']} | {r['n_z']} | {r['||W||_2']} | {r['solver']} | {'yes' if r['converged'] else 'NO'} "
        f"| {r['f evals']} | {r['median time [ms]']:.2f} | {r['f evals / fixed_point']:.2f} "
        f"| {r['time / fixed_point']:.2f} | {hybr} |"
    )
open("experiments/bench/solvers_summary.md", "w").write("\n".join(lines) + "\n")
PY
