#!/usr/bin/env bash
# Regenerates experiments/converge/: runs the commands named in experiments/converge.md and copies
# their tables and figures here. Run from the repository root after installing deqlab.
set -euo pipefail
out=$(mktemp -d)
run() {  # run <variant> <deqlab converge args...>
  local variant=$1; shift
  COLUMNS=160 deqlab converge "$@" output_root="$out/$variant" | tee "experiments/converge/$variant/stdout.txt"
  local folder; folder=$(ls -d "$out/$variant"/converge/*/)
  cp "$folder"/{gap.csv,eigen.csv,solvers.csv,convergence.png} "experiments/converge/$variant/"
}
mkdir -p experiments/converge/{default,normal,default_float64}
run default
run normal --init normal
run default_float64 --dtype float64
