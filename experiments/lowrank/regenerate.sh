#!/usr/bin/env bash
# Regenerates experiments/lowrank/: runs the commands named in experiments/lowrank.md and
# experiments/bench_lowrank.md and copies their tables, figures and printed output here.
# Run from the repository root. BLAS is pinned to one thread: on a shared 2-core machine the
# default multithreaded OpenBLAS oversubscribes and times become meaningless (see bench_lowrank.md).
set -euo pipefail
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
here=experiments/lowrank
out=$(mktemp -d)
run() {  # run <variant> <folder under output root> <files...> -- <deqlab args...>
  local variant=$1 sub=$2; shift 2
  local files=()
  while [[ $1 != -- ]]; do files+=("$1"); shift; done; shift
  mkdir -p "$here/$variant"
  COLUMNS=200 python -m deqlab "$@" output_root="$out/$variant" | tee "$here/$variant/stdout.txt"
  local folder; folder=$(ls -d "$out/$variant/$sub"/*/)
  for f in "${files[@]}"; do cp "$folder/$f" "$here/$variant/"; done
}
# a pairs file for part 2: rank-3 H (n = 200), 6 pairs with 1e-6 relative gradient noise
python - <<'PY'
import numpy as np
rng = np.random.default_rng(0)
U, _ = np.linalg.qr(rng.standard_normal((200, 3)))
H = (U * np.array([3.0, -1.0, 0.2])) @ U.T
X = rng.standard_normal((200, 6))
Y = H @ X + 1e-6 * np.linalg.norm(H @ X, axis=0) * rng.standard_normal((200, 6)) / np.sqrt(200)
np.savez("experiments/lowrank/pairs_example.npz", X=X, Y=Y, H=H)
PY
run example lowrank example.csv example.npz -- lowrank
run pairs lowrank pairs.csv factors.npz -- lowrank --pairs experiments/lowrank/pairs_example.npz
run study lowrank study.csv study_summary.csv study.png -- lowrank --part study
run deq lowrank deq.csv deq.png -- lowrank --part deq
run deq_central lowrank deq.csv deq.png -- lowrank --part deq deq.difference=central
run bench bench/lowrank bench.csv -- bench lowrank
