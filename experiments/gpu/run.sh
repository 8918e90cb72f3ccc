#!/usr/bin/env bash
# deqlab on a lent GPU machine (issue 15): the test suite, a run of every command on CUDA, and the
# benches the record's experiments/bench_gpu.md quotes, in one call of the workplace's `device` tool.
#
#   run(command="bash experiments/gpu/run.sh", carry=[".whl"], timeout_s=...)
#
# That machine has python3 with a CUDA build of torch, numpy, scipy, pandas, matplotlib, threadpoolctl
# and pytest(-xdist), but not Hydra: the wheels deqlab needs beyond them travel in .whl/ (git-ignored;
# `pip download` them here, see the device tool's README: hydra-core, omegaconf, antlr4-python3-runtime,
# the joblib and submitit launchers, submitit, typer, rich, pydantic, pydantic-core, annotated-types,
# typing-inspection) and are installed with deqlab into that machine's python. Each step has its own time limit, so one that
# hangs cannot eat the others; every log and run folder comes back in $OUT/gpu_runs.tgz, and a
# summary is printed last (the reply carries the end of the output).
#
# DEVICE=cpu bash experiments/gpu/run.sh   checks the script itself on a machine without a GPU.
set -u
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-/tmp/deqlab_gpu_out}
LOGS=$OUT/logs
mkdir -p "$LOGS"
export PYTHONUNBUFFERED=1
if [ "${WHEELS:-1}" = 1 ] && compgen -G ".whl/*.whl" >/dev/null; then  # WHEELS=0: use what is installed
    # Into the machine's own python (it is thrown away after the lease), and deqlab itself as CI installs
    # it: tests that start a python with a PYTHONPATH of their own must still find Hydra and deqlab.
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade .whl/*.whl \
        && python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir . \
        || { echo "install failed"; exit 1; }
fi

step() {  # step NAME SECONDS COMMAND...: run with a limit, log to $LOGS/NAME.log, one summary line
    local name=$1 limit=$2 start rc
    shift 2
    start=$(date +%s)
    timeout -s TERM -k 10 "$limit" "$@" >"$LOGS/$name.log" 2>&1
    rc=$?
    echo "$name: exit $rc in $(($(date +%s) - start)) s" | tee -a "$LOGS/steps.txt"
}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv 2>&1
    python3 -c "import torch, numpy, scipy; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available(), 'numpy', numpy.__version__, 'scipy', scipy.__version__)"
    nproc
} >"$LOGS/machine.txt" 2>&1
cat "$LOGS/machine.txt"

deqlab="env COLUMNS=160 DEQLAB_OUTPUT_ROOT=$PWD/outputs/gpu python3 -m deqlab"
STEPS=" ${STEPS:-tests bench_hessian bench_solvers_float64 bench_solvers_float32 bench_nethessian} "
want() { [[ $STEPS == *" $1 "* ]]; }
# 1. The tests (CUDA cases included where there is CUDA), 14 workers of one thread each (16 threads
#    per worker oversubscribe the cores many times over); failures are named as they happen (-v).
want tests && OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
    step tests "${TESTS_S:-200}" python3 -m pytest -n 14 -v --tb=short -rf -p no:cacheprovider ${TESTS:-}
# 2. The benches, one after the other on the quiet machine.
want bench_hessian && step bench_hessian "${HESSIAN_S:-120}" $deqlab bench hessian --device "$DEVICE" \
    "ladder=${LADDER:-[32,64,96,128,256,316,512,996]}" dense_max_p=11000 "dtypes=[float64,float32]" "rate_size=${RATE_SIZE:-8192}"
want bench_solvers_float64 && step bench_solvers_float64 "${SOLVERS_S:-100}" $deqlab bench solvers --device "$DEVICE" \
    "sizes=${SIZES64:-[1024,4096]}" "norms=[0.9,0.99]" dtype=float64
want bench_solvers_float32 && step bench_solvers_float32 "${SOLVERS_S:-100}" $deqlab bench solvers --device "$DEVICE" \
    "sizes=${SIZES:-[256,1024,4096]}" "norms=[0.9,0.99]" dtype=float32 tol=1e-5 "solvers=[fixed_point,anderson,broyden]"
want bench_nethessian && step bench_nethessian "${NETHESSIAN_S:-40}" $deqlab bench nethessian --device "$DEVICE"

tar czf "$OUT/gpu_runs.tgz" -C "$PWD" outputs/gpu -C "$OUT" logs 2>/dev/null
echo "=== steps"; cat "$LOGS/steps.txt"
if [ -f "$LOGS/tests.log" ]; then echo "=== tests"; grep -E "^FAILED|^ERROR| passed| failed" "$LOGS/tests.log" | tail -n 60; fi
for b in bench_hessian bench_solvers_float64 bench_solvers_float32 bench_nethessian; do
    if [ -f "$LOGS/$b.log" ]; then echo "=== $b"; grep -E "error|Error|outputs" "$LOGS/$b.log" | tail -n 5; fi
done
