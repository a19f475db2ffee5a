"""The optimiser's update rules as CUDA kernels: one launch updates a whole flat group.

A flat group (optim/flat.py) holds many layers' parameters, gradients and state in buffers of
one layout, so each rule is a single element-wise grid-stride loop over it instead of several
array operations per parameter (PyTorch's multi-tensor-apply idea, without the tensor lists).
Hyper-parameters arrive as scalars; whatever depends on the step count (Adam's and AdaMax's
bias corrections) is computed on the host, in float64, as the NumPy rules do. The learning
rate is the scalar times ``lr_scale[0]``, read on the device: 1 for a learning rate given as
a number (exact), or the learning rate itself, with the scalar 1, when it lives in a device
array -- what a replayed CUDA graph needs (train/graph_step.py), since the scalars of a
captured launch are frozen at the capture.

Each kernel evaluates its rule in the order of the NumPy expressions of rules.py, with every
scalar rounded to the element type first (as NumPy rounds a Python float against a float32
array), so compiled for the CPU (tests, g++) it agrees with them to the last bit or nearly;
on a GPU NVRTC may contract a multiply and an add into one FMA, which differs by a rounding.
Weight decay, when set, is added to the gradient first, as Optimizer does.

The source is compiled with the layers' kernels, as one module (nn/kernels_cuda/compile.py):
valid C++ when run as one block of one thread, which is how tests/optim/test_fused_kernels.py
checks it without a GPU (nn/kernels_cuda/host.py).
"""
from __future__ import annotations

from ..nn.kernels_cuda import compile

SOURCE = r"""
/* the gradient with weight decay, as Optimizer.update adds it (only when set) */
#define DECAYED(gi, i) T gi = g[i]; if (wd != (T)0) gi = gi + wd * w[i];

extern "C" __global__ void sgd(T* __restrict__ w, const T* __restrict__ g, long long n,
        T wd, T lr,
        const T* __restrict__ lr_scale)
{
    lr = lr * lr_scale[0];
    GRID_LOOP(i, n) { DECAYED(gi, i) w[i] = w[i] - lr * gi; }
}

extern "C" __global__ void momentum(T* __restrict__ w, const T* __restrict__ g,
        T* __restrict__ v, long long n, T wd, T lr, T mu,
        const T* __restrict__ lr_scale)
{
    lr = lr * lr_scale[0];
    GRID_LOOP(i, n) {
        DECAYED(gi, i)
        T vi = v[i] * mu;
        vi = vi - lr * gi;
        v[i] = vi;
        w[i] = w[i] + vi;
    }
}

extern "C" __global__ void nesterov(T* __restrict__ w, const T* __restrict__ g,
        T* __restrict__ v, long long n, T wd, T lr, T mu,
        const T* __restrict__ lr_scale)
{
    lr = lr * lr_scale[0];
    GRID_LOOP(i, n) {
        DECAYED(gi, i)
        T vi = v[i] * mu;
        vi = vi - lr * gi;
        v[i] = vi;
        w[i] = w[i] + (mu * vi - lr * gi);
    }
}

extern "C" __global__ void adagrad(T* __restrict__ w, const T* __restrict__ g,
        T* __restrict__ G, long long n, T wd, T lr, T eps,
        const T* __restrict__ lr_scale)
{
    lr = lr * lr_scale[0];
    GRID_LOOP(i, n) {
        DECAYED(gi, i)
        T Gi = G[i] + gi * gi;
        G[i] = Gi;
        w[i] = w[i] - lr * gi / sqrt(Gi + eps);
    }
}

extern "C" __global__ void rmsprop(T* __restrict__ w, const T* __restrict__ g,
        T* __restrict__ v, long long n, T wd, T lr, T gamma, T one_minus_gamma, T eps,
        const T* __restrict__ lr_scale)
{
    lr = lr * lr_scale[0];
    GRID_LOOP(i, n) {
        DECAYED(gi, i)
        T vi = v[i] * gamma;
        vi = vi + one_minus_gamma * gi * gi;
        v[i] = vi;
        w[i] = w[i] - lr * gi / sqrt(vi + eps);
    }
}

extern "C" __global__ void adadelta(T* __restrict__ w, const T* __restrict__ g,
        T* __restrict__ v, T* __restrict__ s, long long n, T wd, T lr, T rho,
        T one_minus_rho, T eps,
        const T* __restrict__ lr_scale)
{
    lr = lr * lr_scale[0];
    GRID_LOOP(i, n) {
        DECAYED(gi, i)
        T vi = v[i] * rho;
        vi = vi + one_minus_rho * gi * gi;
        v[i] = vi;
        T si = s[i];
        T dw = -sqrt(si + eps) / sqrt(vi + eps) * gi;
        si = si * rho;
        s[i] = si + one_minus_rho * dw * dw;
        w[i] = w[i] + lr * dw;
    }
}

/* c1 = 1 - beta1^t, c2 = 1 - beta2^t: the bias corrections, from the host */
extern "C" __global__ void adam(T* __restrict__ w, const T* __restrict__ g,
        T* __restrict__ m, T* __restrict__ v, long long n, T wd, T lr, T beta1,
        T one_minus_beta1, T beta2, T one_minus_beta2, T c1, T c2, T eps,
        const T* __restrict__ lr_scale)
{
    lr = lr * lr_scale[0];
    GRID_LOOP(i, n) {
        DECAYED(gi, i)
        T mi = m[i] * beta1;
        mi = mi + one_minus_beta1 * gi;
        m[i] = mi;
        T vi = v[i] * beta2;
        vi = vi + one_minus_beta2 * gi * gi;
        v[i] = vi;
        w[i] = w[i] - lr * (mi / c1) / sqrt(vi / c2 + eps);
    }
}

/* step = lr / (1 - beta1^t), from the host; the max propagates NaN as numpy.maximum does */
extern "C" __global__ void adamax(T* __restrict__ w, const T* __restrict__ g,
        T* __restrict__ m, T* __restrict__ u, long long n, T wd, T beta1,
        T one_minus_beta1, T beta2, T step, T eps,
        const T* __restrict__ lr_scale)
{
    step = step * lr_scale[0];
    GRID_LOOP(i, n) {
        DECAYED(gi, i)
        T mi = m[i] * beta1;
        mi = mi + one_minus_beta1 * gi;
        m[i] = mi;
        T a = beta2 * u[i], b = fabs(gi);
        T ui = (a >= b || a != a) ? a : b;
        u[i] = ui;
        w[i] = w[i] - step * mi / (ui + eps);
    }
}
"""

# p: array pointer, q: 64-bit integer, t: a scalar of the element type. Every kernel takes
# (w, g, the rule's state slots in Optimizer.slot_names order, n, weight decay, its scalars,
# lr_scale).
SIGNATURES = {
    "sgd": "ppqttp",
    "momentum": "pppqtttp",
    "nesterov": "pppqtttp",
    "adagrad": "pppqtttp",
    "rmsprop": "pppqtttttp",
    "adadelta": "ppppqtttttp",
    "adam": "ppppqtttttttttp",
    "adamax": "ppppqttttttp",
}

# The backend.kernels family that switches these kernels (``--kernels generic`` leaves it out).
FAMILY = "optimizer"


# Set by tests only: a factory (dtype -> launcher) running the kernels compiled for the CPU,
# so that whole models train through the fused update without a GPU.
host_launcher = None


def launcher_for(a):
    """How to run the fused update on ``a``'s device, or None for the NumPy/CuPy expressions
    of rules.py: CuPy arrays take the kernels unless backend.kernels leaves them out."""
    from .. import backend
    if not backend.kernels_enabled(FAMILY):
        return None
    if backend.is_device_array(a):
        return compile.cupy_launcher(a.dtype)
    return host_launcher(a.dtype) if host_launcher is not None else None


def update(launch, kernel: str, scalars: tuple, w, g, slots: list, weight_decay: float,
           lr_scale) -> None:
    """One launch of ``kernel`` over flat, contiguous ``w``, ``g`` and ``slots``; ``lr_scale``
    is a one-element array on ``w``'s device that multiplies the learning rate."""
    n = int(w.size)
    launch(kernel, n, w, g, *slots, n, weight_decay, *scalars, lr_scale)
