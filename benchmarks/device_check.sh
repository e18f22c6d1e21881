#!/usr/bin/env bash
# Every check that needs the GPU machine (an H200 with 16 CPU cores; its python3 has CuPy,
# PyTorch, NumPy, SciPy, scikit-learn, tqdm, pytest... but not platformdirs, starlette or
# uvicorn), in one run that writes its results under $OUT. Its time is short: 15 minutes a
# session, the machine's start included.
#
# Prepare on the development machine (nothing can be fetched there):
#   mkdir -p .device-data/mnist .device-data/whl && cp ../shared/data/mnist/*.gz .device-data/mnist/
#   python3 -m pip download --no-deps --only-binary=:all: -d .device-data/whl platformdirs starlette uvicorn
# then call the device tool once: command "bash benchmarks/device_check.sh",
# carry [".device-data"], timeout_s 600 (docs/DEVELOPMENT.md, "The GPU machine").
#
# Each step has its own time limit, so one slow step cannot eat the others' time; the
# limits add up to 9 minutes. A step that fails is noted and the next one runs. What comes
# back (at most 8 files): steps.log (every step's output), machine.txt and four JSON files.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/device-out}
mkdir -p "$OUT"
DATA=${DIGITNET_DATA_DIR:-$PWD/.device-data/mnist}
export DIGITNET_DATA_DIR=$DATA
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/steps.log"; }
step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2; shift 2
    log "start $name (limit ${limit}s)"
    timeout "$limit" "$@" >>"$OUT/steps.log" 2>&1
    log "end $name: exit $?"
}

python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site \
    .device-data/whl/*.whl >>"$OUT/steps.log" 2>&1
export PYTHONPATH=/tmp/site:$PWD/src:$PWD
{ nvidia-smi -L; nproc; python3 --version; lscpu | grep -i "model name"
  python3 -c "import cupy, torch, numpy; print('cupy', cupy.__version__, 'torch', torch.__version__, torch.cuda.is_available(), 'numpy', numpy.__version__)"
  python3 -c "import numpy; numpy.show_config()" 2>&1 | grep -i -A3 "blas"
} >"$OUT/machine.txt" 2>&1

# 1. the GPU tests (real CuPy against the CPU, float64, 1e-9 relative; gradient check);
#    a fresh machine compiles each CuPy kernel on its first use, hence the longer limit
step gpu_tests 120 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_devices.py -rs
# 2. epoch time, digitnet on CuPy vs PyTorch on CUDA, three networks (issue 16)
step gpu_epochs 100 python3 -m benchmarks.gpu --data-dir "$DATA" --json "$OUT/gpu_epochs.json"
# 3. --preset best on the GPU: time to 99.0 %, both frameworks (issue 16)
step gpu_best_t99 120 python3 -m benchmarks.time_to_99 --device gpu --data-dir "$DATA" \
    --epochs 40 --max-minutes 0.8 --json "$OUT/gpu_best_t99.json"
# 4. a Cireşan-sized network on the GPU, digitnet alone, full schedule (issue 16's aim:
#    >= 99.5 % in under 10 minutes; here as much of it as the time allows)
step gpu_ciresan 90 python3 -m benchmarks.time_to_99 --device gpu --data-dir "$DATA" \
    --hidden 2500 2000 1500 1000 500 --epochs 30 --target 0.995 --full --max-minutes 1 \
    --no-torch --json "$OUT/gpu_ciresan.json"
# 5. CPU thread counts 1-16, digitnet vs PyTorch (issue 13)
step cores 110 python3 -m benchmarks.busy --threads-only --epochs 2 --data-dir "$DATA" \
    --json "$OUT/cores.json"
log "done"
