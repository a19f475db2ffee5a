#!/usr/bin/env bash
# Verify dptrain on a machine with an NVIDIA GPU, in one command that always ends in bounded
# time: the GPU tests, the GPU transports and training on two ranks (first: the multi-rank
# path is what matters most), one- against two-rank parameters, the kernel families, the
# per-layer profile, and the benchmark against PyTorch + cuDNN on the same GPU.
#
#   scripts/gpu_check.sh [OUTDIR]          (default gpu_check/)
#
# Writes OUTDIR/report.md as it goes (every section with its command, output, exit status and
# wall time, for docs/performance.md), OUTDIR/bench.json, OUTDIR/kernel_ops.json,
# OUTDIR/profile.json, OUTDIR/graph_{off,on}.jsonl (training metrics without and with
# --cuda-graph: compare the epochs' samples_per_s).
# Every section runs under `timeout -k 10 S` (SIGTERM, then SIGKILL 10 s later: dptrain
# finishes its step on SIGTERM, and a stuck collective never finishes it), and every
# multi-rank run has a short --comm-timeout, so a hang costs one section, not the lease.
# The whole check has a time budget (BUDGET seconds, default 345 with QUICK=1, else 3600):
# each section's limit is cut to what is left of it, and sections left without time are
# reported as not run, so QUICK=1 ends within 6 minutes whatever happens.
#
# Python environment, one of:
#   (default)                  .venv from `make`, plus the gpu extra (CuPy, NCCL) and a CUDA
#                              build of PyTorch, installed from the package index
#   GPU_CHECK_PYTHON=python3   an interpreter that already has CuPy (and PyTorch): dptrain
#                              runs from this checkout through PYTHONPATH; only WHEELS is
#                              installed
# WHEELS=DIR installs the wheels in DIR without network (mpich, mpi4py, pytest-mpi, mlxtend,
# which the lent machines lack: ../shared/gpu/fetch-wheels.sh) with --prefix, not --target
# (--target drops the mpich wheel's lib/, and libmpi.so with it). NO_TORCH=1 skips PyTorch.
# Sections that cannot run say why. Exits non-zero if any section failed or timed out.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu_check}
mkdir -p "$out"
report="$out/report.md"
: > "$report"
started=$SECONDS

pip_install() {
    if [ -n "${WHEELS:-}" ]; then "$py" -m pip install -q --no-index --find-links "$WHEELS" "$@"
    else "$py" -m pip install -q "$@"; fi
}
if [ -n "${GPU_CHECK_PYTHON:-}" ]; then
    py=$(command -v "$GPU_CHECK_PYTHON") || { echo "gpu_check: no $GPU_CHECK_PYTHON" >&2; exit 1; }
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
    if [ -n "${WHEELS:-}" ]; then
        prefix=$(mktemp -d)
        pyver=$("$py" -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}")')
        if "$py" -m pip install -q --no-index --no-deps --ignore-installed --prefix "$prefix" \
                "$WHEELS"/*.whl; then
            export PYTHONPATH="$PYTHONPATH:$prefix/lib/$pyver/site-packages"
            export PATH="$prefix/bin:$PATH"
            export LD_LIBRARY_PATH="$prefix/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        else
            echo "gpu_check: could not install the wheels in $WHEELS" >&2
        fi
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
steps=20; rounds=3; batches=64,256,1024; budget=${BUDGET:-3600}
[ -n "${QUICK:-}" ] && { steps=8; rounds=1; budget=${BUDGET:-345}; }
deadline=$((started + budget))
torch_flag=(); [ -n "${NO_TORCH:-}" ] && torch_flag=(--no-torch)
mpi_ok=1; mpi_why=""
command -v mpiexec >/dev/null || { mpi_ok=0; mpi_why="no mpiexec"; }
"$py" -c 'import pytest_mpi' 2>/dev/null || { mpi_ok=0; mpi_why="${mpi_why:+$mpi_why, }no pytest-mpi"; }
"$py" -c 'from mpi4py import MPI' 2>/dev/null || { mpi_ok=0; mpi_why="${mpi_why:+$mpi_why, }mpi4py cannot load an MPI library"; }
mpirun2=(mpiexec -n 2)
comm_timeout=(--comm-timeout 60)

status=0
summary=()
say() { printf '%s\n' "$*" | tee -a "$report"; }
run() {   # run TITLE LIMIT_S CMD...: a titled, timed section; a failure marks the check failed
    local title=$1 limit=$2; shift 2
    local t0=$SECONDS rc left=$((deadline - SECONDS))
    if [ "$left" -lt 15 ]; then skip "$title" "the ${budget} s budget is spent"; status=1; return; fi
    [ "$limit" -gt "$left" ] && limit=$left
    say ""; say "## $title"; say ""; say '```'; say "\$ $*"
    timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$report"
    rc=${PIPESTATUS[0]}
    local took=$((SECONDS - t0)) verdict=ok
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then verdict="TIMED OUT after ${limit} s"; status=1
    elif [ "$rc" != 0 ]; then verdict="FAILED (exit $rc)"; status=1; fi
    say '```'; say "$verdict, ${took} s"
    summary+=("| $title | $verdict | ${took} s |")
}
skip() { say ""; say "## $1"; say ""; say "not run: $2"; summary+=("| $1 | not run: $2 | |"); }

say "# dptrain GPU check, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null)"
say '```'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee -a "$report"
"$py" -c "import sys, cupy; print('Python', sys.version.split()[0], '| CuPy', cupy.__version__, '| CUDA runtime', cupy.cuda.runtime.runtimeGetVersion(), '| devices', cupy.cuda.runtime.getDeviceCount())" 2>&1 | tee -a "$report"
"$py" -c "from dptrain.comm import nccl, cuda_aware; print('NCCL:', nccl.available(), '| CUDA-aware MPI:', *cuda_aware.detect())" 2>&1 | tee -a "$report"
"$py" -c "import torch; print('PyTorch', torch.__version__, '| cuDNN', torch.backends.cudnn.version(), '| CUDA', torch.cuda.is_available())" 2>&1 | tee -a "$report"
say '```'
# GPU_CHECK_WITHOUT_GPU=1 runs the sections anyway (they fail fast): a test of this script's
# time limits and report on a machine without a GPU (tests/test_gpu_check_script.py)
if [ -z "${GPU_CHECK_WITHOUT_GPU:-}" ] && \
        ! "$py" -c 'from dptrain import backend; import sys; sys.exit(0 if backend.gpu_available() else 1)'; then
    say ""; say "gpu_check: no usable GPU here (CuPy missing or no CUDA device); nothing checked"
    exit 1
fi

# --- two ranks first: the path every multi-GPU run takes ------------------------------------
if [ $mpi_ok = 1 ]; then
    run "GPU transports on 2 ranks sharing the GPU(s), every schedule, order-checked" 240 \
        "${mpirun2[@]}" env DPTRAIN_CHECK_COLLECTIVES=strict "$py" -m pytest -q -p no:cacheprovider \
        --with-mpi -m gpu tests/gpu/test_gpu_comm.py
    run "2-epoch training, 2 ranks sharing the GPU (transport chosen by --comm auto)" 150 \
        "${mpirun2[@]}" "${dptrain[@]}" train --device gpu --allow-gpu-sharing --model thesis-cnn \
        --dataset mnist5k --epochs 2 --check-collectives 10 "${comm_timeout[@]}"
    run "1 rank against 2 ranks on the GPU: the same parameters (float64, --sync-bn, 20 steps)" 150 \
        "$py" scripts/compare_ranks.py --ranks 2 --device gpu --outdir "$out/compare" -- \
        --model thesis-cnn --dataset synthetic:1x28x28:640 --dtype float64 --sync-bn \
        --batch-size 32 --max-steps 20 --bucket-mb 0.05 --check-collectives strict "${comm_timeout[@]}"
else
    skip "GPU transports and 2-rank training" "$mpi_why (carry mpich, mpi4py and pytest-mpi wheels in WHEELS)"
fi

# --- one rank: correctness first, then issue 15's figures, then the detail behind them ---------
run "GPU tests (every layer NumPy vs CuPy, kernels and generic; 10 steps CPU vs GPU; prefetching trainer)" 180 \
    "$py" -m pytest -q -p no:cacheprovider -m gpu tests/gpu --ignore=tests/gpu/test_gpu_graph.py
run "CUDA graph: --cuda-graph on against off, bitwise, and no memory taken by replays" 150 \
    "$py" -m pytest -q -p no:cacheprovider -m gpu tests/gpu/test_gpu_graph.py
# one sweep, one start-up: kernels auto and generic, eager and replayed, PyTorch alongside,
# and the peak memory of each against PyTorch's (the issue-15 table)
run "Step time and peak memory against PyTorch + cuDNN, --kernels auto,generic, --cuda-graph off,on" 300 \
    "${dptrain[@]}" bench --device gpu --model thesis-cnn,vgg-cifar --batch-sizes $batches \
        --kernels auto,generic --cuda-graph off,on --rounds $rounds --steps $steps --warmup 5 \
        "${torch_flag[@]}" --json-out "$out/bench.json"
run "Where a step's GPU time goes: per-layer profile with CUDA events (batch 256)" 120 \
    "${dptrain[@]}" bench --profile --device gpu --model thesis-cnn,vgg-cifar --batch-size 256 \
        --steps $steps --warmup 3 --json-out "$out/profile.json"
run "Each CUDA kernel family against the generic CuPy code (batch 256)" 120 \
    "${dptrain[@]}" bench --kernel-ops --device gpu --model thesis-cnn,vgg-cifar --batch-size 256 \
        --steps $steps --json-out "$out/kernel_ops.json"
for g in off on; do
    run "2-epoch training, 1 rank on the GPU, --cuda-graph $g (samples/s in the metrics)" 120 \
        "${dptrain[@]}" train --device gpu --model thesis-cnn --dataset mnist5k --epochs 2 \
        --batch-size 64 --cuda-graph $g --metrics-out "$out/graph_$g.jsonl"
done
run "The CUDA kernels' source compiled for the CPU, and by nvcc (what CI checks)" 120 \
    "$py" -m pytest -q -p no:cacheprovider tests/nn/test_cuda_kernels.py

say ""; say "## Summary"; say ""
say "| section | result | wall time |"; say "|---|---|---|"
for line in "${summary[@]}"; do say "$line"; done
say ""; say "status: $([ $status = 0 ] && echo PASSED || echo FAILED), $((SECONDS - started)) s in all"
exit $status
