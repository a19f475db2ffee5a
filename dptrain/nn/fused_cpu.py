"""BatchNorm -> ReLU -> MaxPool2D in NumPy, for a linked run (nn/fusion.py) on the CPU when the
pooling windows tile the input (stride = window, no padding, sizes divisible).

The unfused layers take about twenty passes over the full-size activations; this path takes
about seven. It works on ``xs = (x - mean) * inv_std * s`` with s = -1 where gamma < 0, else 1,
so that z = gamma * xhat + beta is increasing in xs: the window maximum of z is then
|gamma| * max(xs) + beta, and ReLU, the affine map and the maximum are applied to the pooled
quarter-size array only. The forward output equals the unfused layers' bit for bit
(|gamma| * (s * xhat) is gamma * xhat exactly). The backward needs only the pooled gradient
at each window's first maximum: sum(dz) and sum(dz * xhat) are sums over the pooled arrays,
and the input gradient is two full passes plus one masked add per window offset. Where gamma
is exactly 0 every z of a window ties and the gradient goes to the largest xhat instead of
the window's first element: another subgradient of the same maximum.
"""
from __future__ import annotations

import numpy as np

from . import cuda_kernels
from .kernels import window_slices

# The dtypes this path runs for. float64 runs keep the layer-by-layer arithmetic: summing in
# another order moves the rounding noise of gradients that are exactly zero in theory (the
# bias of a convolution ahead of a batch norm), which the float64 recordings
# (tests/recordings) hold bit for bit. Tests add float64 to check the path's gradients.
DTYPES = (np.float32,)


def applies(x, pool) -> bool:
    """Whether this path runs: ``x`` (N, C, H, W) a NumPy array of DTYPES that ``pool``'s
    windows tile."""
    k = pool.kh
    return (isinstance(x, np.ndarray) and x.dtype in DTYPES and x.ndim == 4 and x.shape[0] > 0
            and pool.kw == k and pool.stride == k and pool.padding == 0
            and x.shape[2] % k == 0 and x.shape[3] % k == 0)


def blocked_pooling(conv, x, oh: int, ow: int):
    """The window size k with which ``conv`` (conv_direct.py on ``x``, output oh x ow) may write
    its output window offset first, (N, C, k*k, OH*OW / k**2), for the linked batch norm it
    feeds (``conv.fused_next``): in training, in a first layer (no input gradient to un-block),
    when the run's pooling windows tile the output; else 0."""
    bn = conv.fused_next
    if bn is None or conv.needs_input_grad or x.dtype not in DTYPES or x.shape[0] == 0:
        return 0
    pool = bn.fused_tail[1]
    k = pool.kh
    if pool.kw != k or pool.stride != k or pool.padding or oh % k or ow % k:
        return 0
    if any(cuda_kernels.launcher_for(x, family, bn.backend) is not None
           for family in ("batchnorm", "bn_relu_pool")):
        return 0                      # the kernels take NCHW
    return k


def _windows(xs, k, blocked):
    """Each window offset's elements: strided slices of NCHW, or with ``blocked`` (the input
    (N, C, k*k, OH*OW) that conv_direct.py writes window offset first) contiguous blocks."""
    if blocked:
        for t in range(k * k):
            yield xs[:, :, t:t + 1]
        return
    oh, ow = xs.shape[2] // k, xs.shape[3] // k
    for _, hs, ws in window_slices(k, k, k, oh, ow):
        yield xs[:, :, hs, ws]


def forward(xc, inv_std, gamma, beta, k, blocked=False):
    """From xc = x - mean (overwritten with xs): the pooled output ((N, C, 1, OH*OW) when
    ``blocked``) and what backward needs."""
    view = (1, -1, 1, 1)
    sign = np.where(gamma < 0, -1.0, 1.0).astype(xc.dtype)
    xc *= (inv_std * sign).reshape(view)                # xs, in place
    pooled = None
    for v in _windows(xc, k, blocked):
        pooled = v.copy() if pooled is None else np.maximum(pooled, v, out=pooled)
    y = pooled * (gamma * sign).reshape(view)
    y += beta.reshape(view)
    np.maximum(y, 0, out=y)
    return y, (xc, sign, pooled, (k, blocked), y)


def grad_sums(dy, saved, out_dz, out_dz_xhat):
    """Per channel sum(dz) and sum(dz * xhat) (dz: the gradient at BN's output); returns the
    pooled dz."""
    xs, sign, pooled, _, y = saved
    gz = dy * (y > 0)
    gz.sum(axis=(0, 2, 3), out=out_dz)
    (gz * pooled).sum(axis=(0, 2, 3), out=out_dz_xhat)
    out_dz_xhat *= sign
    return gz


def input_grad(gz, saved, gamma_inv_std, total, sum_dz, sum_dz_xhat):
    """dx = gamma * inv_std / total * (total * dz - sum dz - xhat * sum(dz * xhat))."""
    xs, sign, pooled, (k, blocked), _ = saved
    view = (1, -1, 1, 1)
    scale = gamma_inv_std / total
    dx = xs * (-scale * sign * sum_dz_xhat).reshape(view)
    dx += (-scale * sum_dz).reshape(view)
    gz *= (scale * total).reshape(view)
    left = gz                     # the pooled gradient not yet given to a window's first maximum
    for v, d in zip(_windows(xs, k, blocked), _windows(dx, k, blocked)):
        part = left * (v == pooled)
        d += part
        left = left - part
    return dx
