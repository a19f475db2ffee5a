#!/usr/bin/env bash
# One rank per visible GPU on this node.
#
#   launch/multi-gpu.sh --model vgg-cifar --dataset cifar10:/data/cifar --epochs 30
#
# GPUs are those in CUDA_VISIBLE_DEVICES when it is set, else those nvidia-smi lists. Each
# rank binds to the GPU of its node-local rank (dptrain's backend does this), so ranks never
# share a GPU. Environment: MPIEXEC, DPTRAIN (commands to use), GPUS (override the count).
set -euo pipefail

if [[ -n "${GPUS:-}" ]]; then
    gpus=$GPUS
elif [[ -n "${CUDA_VISIBLE_DEVICES:-}" ]]; then
    gpus=$(tr ',' '\n' <<< "$CUDA_VISIBLE_DEVICES" | grep -c .)
else
    gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
fi
if (( gpus < 1 )); then
    echo "$0: no GPU visible (set CUDA_VISIBLE_DEVICES or GPUS)" >&2
    exit 2
fi
threads=$(( $(nproc) / gpus > 0 ? $(nproc) / gpus : 1 ))
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads
exec "${MPIEXEC:-mpiexec}" -n "$gpus" "${DPTRAIN:-dptrain}" train --device gpu --threads "$threads" "$@"
