#!/usr/bin/env bash
# Verify dptrain on a machine with an NVIDIA GPU: the GPU tests, then a GPU training run and
# step benchmark, written to a report (default gpu_report.txt).
#
#   scripts/gpu_check.sh [REPORT]
#
# Installs the gpu extra (cupy-cuda12x) into .venv first. Exits non-zero if a test fails.
set -uo pipefail
cd "$(dirname "$0")/.."
report=${1:-gpu_report.txt}
make -s .venv/.installed-stamp >/dev/null || exit 1
.venv/bin/python -m pip install -q -e '.[gpu]' || { echo "cannot install cupy" >&2; exit 1; }
{
    echo "# dptrain GPU check, $(date -u +%Y-%m-%dT%H:%MZ)"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1
    .venv/bin/python -c "import cupy; print('cupy', cupy.__version__, 'devices', cupy.cuda.runtime.getDeviceCount())"
    echo; echo "## GPU tests"
    .venv/bin/python -m pytest -q -m gpu tests/gpu 2>&1
    status=$?
    echo; echo "## GPU communicators on 2 ranks"
    .venv/bin/mpiexec -n 2 .venv/bin/python -m pytest -q --with-mpi -m gpu tests/gpu/test_gpu_comm.py 2>&1 \
        || status=1
    echo; echo "## 2-epoch training on the GPU"
    .venv/bin/dptrain train --device gpu --model thesis-cnn --epochs 2 --quiet --metrics-out /tmp/gpu_check.jsonl 2>&1
    tail -1 /tmp/gpu_check.jsonl 2>/dev/null
    echo; echo "## step benchmark on the GPU (thesis-cnn, batch 64 and 256)"
    for b in 64 256; do
        .venv/bin/python - "$b" <<'PY' 2>&1
import sys, time, numpy as np
from dptrain import backend, models, nn, optim
backend.use_device("gpu")
b = int(sys.argv[1])
model = models.get("thesis-cnn"); opt = optim.get("adadelta", model, lr=1.0); loss = nn.SoftmaxCrossEntropy()
x = backend.xp.asarray(np.random.default_rng(0).random((b, 1, 28, 28), dtype=np.float32))
y = backend.xp.asarray(np.random.default_rng(1).integers(0, 10, b))
times = []
for i in range(30):
    t0 = time.perf_counter()
    loss.forward(model.forward(x, True), y); model.backward(loss.backward()); opt.step()
    backend.xp.cuda.Stream.null.synchronize()
    if i >= 5: times.append(time.perf_counter() - t0)
print(f"thesis-cnn batch {b}: median step {1e3 * float(np.median(times)):.2f} ms")
PY
    done
    exit $status
} | tee "$report"
exit "${PIPESTATUS[0]}"
