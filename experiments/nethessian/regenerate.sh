#!/usr/bin/env bash
# Regenerate experiments/nethessian/ from the commands named in experiments/nethessian.md.
# Run from the repository root. Each command writes a fresh run folder; the newest is copied here.
set -euo pipefail
here=experiments/nethessian
root=$(mktemp -d)
export DEQLAB_OUTPUT_ROOT="$root"
newest() { ls -d "$1"/*/ | grep -v '\.partial/\|\.failed/' | sort | tail -1; }
python -m deqlab nethessian --check
d=$(ls -d "$root"/nethessian/20*/ | sort | tail -1)
cp "$d"/check.csv "$d"/pitfalls.csv "$d"/check.png "$here"/
python -m deqlab nethessian pinn
d=$(newest "$root/nethessian/pinn"); cp "$d"/pinn.csv "$d"/pinn.png "$here"/
python -m deqlab nethessian pinn --hidden 64,64,64 pinn.n_interior=1024 --steps 1000
d=$(newest "$root/nethessian/pinn"); cp "$d"/pinn.csv "$here"/pinn_wide.csv
python -m deqlab bench nethessian
d=$(newest "$root/bench/nethessian"); cp "$d"/bench.csv "$here"/bench.csv
echo "copied into $here (run folders under $root)"
