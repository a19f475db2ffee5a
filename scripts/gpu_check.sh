#!/usr/bin/env bash
# Verify dptrain on a machine with an NVIDIA GPU, in one command: the GPU tests, the GPU
# transports on two ranks, GPU training runs, and the benchmark against PyTorch + cuDNN on
# the same GPU (thesis-cnn and vgg-cifar at batch 64, 256 and 1024, with TFLOP/s).
#
#   scripts/gpu_check.sh [OUTDIR]          (default gpu_check/)
#
# Writes OUTDIR/report.md (everything, for docs/performance.md), OUTDIR/bench.json and
# OUTDIR/kernel_ops.json.
#
# Python environment, one of:
#   (default)                  .venv from `make`, plus the gpu extra (CuPy, NCCL) and a CUDA
#                              build of PyTorch, installed from the package index
#   GPU_CHECK_PYTHON=python3   an interpreter that already has CuPy (and PyTorch): dptrain
#                              runs from this checkout through PYTHONPATH, nothing installed
#                              except what WHEELS holds
# WHEELS=DIR installs from wheels in DIR without network (e.g. pytest-mpi and mpich, which
# the MPI sections need). NO_TORCH=1 skips PyTorch; QUICK=1 runs fewer benchmark steps.
# Sections that cannot run (no mpiexec, no pytest-mpi) say so. Exits non-zero if any fails.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu_check}
mkdir -p "$out"
report="$out/report.md"

pip_install() {
    if [ -n "${WHEELS:-}" ]; then "$py" -m pip install -q --no-index --find-links "$WHEELS" "$@"
    else "$py" -m pip install -q "$@"; fi
}
if [ -n "${GPU_CHECK_PYTHON:-}" ]; then
    py=$(command -v "$GPU_CHECK_PYTHON") || { echo "gpu_check: no $GPU_CHECK_PYTHON" >&2; exit 1; }
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
    if [ -n "${WHEELS:-}" ]; then
        site=$(mktemp -d)
        "$py" -m pip install -q --no-index --no-deps --target "$site" "$WHEELS"/*.whl \
            && export PYTHONPATH="$PYTHONPATH:$site" && export PATH="$site/bin:$PATH"
    fi
else
    py=.venv/bin/python
    make -s .venv/.installed-stamp >/dev/null || exit 1
    pip_install -e '.[gpu]' || { echo "gpu_check: cannot install CuPy (the gpu extra)" >&2; exit 1; }
    if [ -z "${NO_TORCH:-}" ]; then
        # the venv may hold a CPU build of torch (make bench): replace it with a CUDA one
        "$py" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null \
            || pip_install --upgrade --force-reinstall torch \
            || echo "gpu_check: no CUDA PyTorch; the benchmark runs without the reference" >&2
    fi
    export PATH="$PWD/.venv/bin:$PATH"
fi
dptrain=("$py" -m dptrain)
steps=20; rounds=3
[ -n "${QUICK:-}" ] && { steps=8; rounds=1; }
torch_flag=(); [ -n "${NO_TORCH:-}" ] && torch_flag=(--no-torch)
mpi_ok=1
command -v mpiexec >/dev/null || mpi_ok=0
"$py" -c 'import pytest_mpi' 2>/dev/null || mpi_ok=0

status=0
run() {   # a titled section; a failure marks the whole check failed
    local title=$1; shift
    printf '\n## %s\n\n```\n$ %s\n' "$title" "$*"
    "$@" 2>&1 || { echo "FAILED (exit $?)"; status=1; }
    printf '```\n'
}
skip() { printf '\n## %s\n\nnot run: %s\n' "$1" "$2"; }
{
    echo "# dptrain GPU check, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null)"
    echo '```'
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1
    "$py" -c "import sys, cupy; print('Python', sys.version.split()[0], '| CuPy', cupy.__version__, '| CUDA runtime', cupy.cuda.runtime.runtimeGetVersion(), '| devices', cupy.cuda.runtime.getDeviceCount())" 2>&1
    "$py" -c "from dptrain.comm import nccl, cuda_aware; print('NCCL:', nccl.available(), '| CUDA-aware MPI:', *cuda_aware.detect())" 2>&1
    "$py" -c "import torch; print('PyTorch', torch.__version__, '| cuDNN', torch.backends.cudnn.version(), '| CUDA', torch.cuda.is_available())" 2>&1
    echo '```'
    if ! "$py" -c 'from dptrain import backend; import sys; sys.exit(0 if backend.gpu_available() else 1)'; then
        echo; echo "gpu_check: no usable GPU here (CuPy missing or no CUDA device); nothing checked"
        exit 1
    fi
    run "GPU tests (every layer NumPy vs CuPy, kernels and generic; 10 steps CPU vs GPU; prefetching trainer)" \
        "$py" -m pytest -q -p no:cacheprovider -m gpu tests/gpu
    run "The CUDA kernels' source compiled for the CPU, and by nvcc (what CI checks)" \
        "$py" -m pytest -q -p no:cacheprovider tests/nn/test_cuda_kernels.py
    run "2-epoch training, 1 rank on the GPU" \
        "${dptrain[@]}" train --device gpu --model thesis-cnn --dataset mnist5k --epochs 2
    if [ $mpi_ok = 1 ]; then
        run "GPU transports on 2 ranks sharing the GPU(s), every schedule" \
            timeout 900 mpiexec -n 2 "$py" -m pytest -q -p no:cacheprovider --with-mpi -m gpu tests/gpu/test_gpu_comm.py
        run "2-epoch training, 2 ranks sharing the GPU (transport chosen by --comm auto)" \
            mpiexec -n 2 "${dptrain[@]}" train --device gpu --allow-gpu-sharing --model thesis-cnn --dataset mnist5k --epochs 2
    else
        skip "GPU transports and 2-rank training" "needs mpiexec and pytest-mpi (carry mpich and pytest-mpi wheels in WHEELS)"
    fi
    run "Each CUDA kernel family against the generic CuPy code (batch 256)" \
        "${dptrain[@]}" bench --kernel-ops --device gpu --model thesis-cnn,vgg-cifar --batch-size 256 \
            --steps $steps --json-out "$out/kernel_ops.json"
    run "Step time against PyTorch + cuDNN on this GPU (target: ratio <= 1.5 at batch 256)" \
        "${dptrain[@]}" bench --device gpu --model thesis-cnn,vgg-cifar --batch-sizes 64,256,1024 \
            --kernels auto,generic --rounds $rounds --steps $steps --warmup 5 "${torch_flag[@]}" \
            --json-out "$out/bench.json"
    echo; echo "status: $([ $status = 0 ] && echo PASSED || echo FAILED)"
    exit $status
} | tee "$report"
exit "${PIPESTATUS[0]}"
