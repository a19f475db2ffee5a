"""Links BatchNorm -> ReLU -> MaxPool2D runs of a model so that, with the ``bn_relu_pool``
CUDA kernels, the batch norm computes all three (nn/kernels_cuda/fused.py) and the ReLU and
the pooling pass their input through (``bypass``, set by the batch norm's every forward).

The layer list, the parameter names and the checkpoints stay those of the unfused model; the
array code (CPUs, ``--kernels generic``) runs the three layers as before, and evaluation
always does. On the CPU (float32) the array code runs a linked run in nn/fused_cpu.py, and a
first-layer Conv2D right before it (``fused_next``) hands it its output window offset first.
A BatchNorm followed by a ReLU and no pooling (``fused_relu``) runs both with the compiled
CPU kernels (nn/batchnorm_native.py) and the ReLU passes its input through.
"""
from __future__ import annotations

from .activations import ReLU
from .conv import Conv2D
from .norm import BatchNorm
from .pool import MaxPool2D


def link_bn_relu_pool(layers) -> int:
    """Mark every BatchNorm directly followed by ReLU and MaxPool2D; returns how many."""
    linked = 0
    for bn, relu, pool in zip(layers, layers[1:], layers[2:]):
        if type(bn) is BatchNorm and type(relu) is ReLU and type(pool) is MaxPool2D:
            bn.fused_tail = (relu, pool)
            linked += 1
    for bn, relu in zip(layers, layers[1:]):       # BN -> ReLU alone: the compiled kernels
        if type(bn) is BatchNorm and type(relu) is ReLU and bn.fused_tail is None:
            bn.fused_relu = relu                   # (nn/batchnorm_native.py) run both
    for conv, bn in zip(layers, layers[1:]):      # its input may come blocked (fused_cpu.py)
        if type(conv) is Conv2D and getattr(bn, "fused_tail", None) is not None:
            conv.fused_next = bn
    return linked
