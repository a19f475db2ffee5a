"""The model zoo. Each builder takes the per-sample input shape (C, H, W) and the class count,
so the same architecture adapts to the data set (the flatten size is derived, not hard-coded).
"""
from __future__ import annotations

import math

from .. import nn
from ..nn.kernels import out_size
from .sequential import Sequential

DEFAULT_INPUT = {"mlp": (1, 28, 28), "thesis-cnn": (1, 28, 28), "lenet5": (1, 28, 28),
                 "vgg-cifar": (3, 32, 32), "mlp-wide": (1, 28, 28), "vgg-a": (3, 224, 224),
                 "resnet-20": (3, 32, 32), "resnet-small": (1, 28, 28)}


def mlp(input_shape, num_classes, hidden=(256, 256)):
    layers, n = [nn.Flatten()], math.prod(input_shape)
    for h in hidden:
        layers += [nn.Dense(n, h), nn.ReLU()]
        n = h
    layers.append(nn.Dense(n, num_classes, init="glorot"))
    return layers


def mlp_wide(input_shape, num_classes):
    """784-4096-4096-10: few FLOPs per byte of gradient, the communication-heavy benchmark."""
    return mlp(input_shape, num_classes, hidden=(4096, 4096))


def thesis_cnn(input_shape, num_classes):
    """Seed 003, Table 1: two conv5x5(32)+BN+ReLU+maxpool2 blocks, FC 256 + dropout 0.5, FC 10."""
    c, h, w = input_shape
    for _ in range(2):
        h, w = out_size(h, 5, 1, 0) // 2, out_size(w, 5, 1, 0) // 2
    return [
        nn.Conv2D(c, 32, 5), nn.BatchNorm(32), nn.ReLU(), nn.MaxPool2D(2),
        nn.Conv2D(32, 32, 5), nn.BatchNorm(32), nn.ReLU(), nn.MaxPool2D(2),
        nn.Flatten(),
        nn.Dense(32 * h * w, 256), nn.ReLU(), nn.Dropout(0.5),
        nn.Dense(256, num_classes, init="glorot"),
    ]


def lenet5(input_shape, num_classes):
    """LeCun et al. 1998 with tanh and average pooling; 28x28 inputs are padded by 2 to 32x32."""
    c, h, w = input_shape
    pad = 2 if h == 28 else 0
    h, w = out_size(h, 5, 1, pad) // 2, out_size(w, 5, 1, pad) // 2
    h, w = out_size(h, 5, 1, 0) // 2, out_size(w, 5, 1, 0) // 2
    return [
        nn.Conv2D(c, 6, 5, padding=pad, init="lecun"), nn.Tanh(), nn.AvgPool2D(2),
        nn.Conv2D(6, 16, 5, init="lecun"), nn.Tanh(), nn.AvgPool2D(2),
        nn.Flatten(),
        nn.Dense(16 * h * w, 120, init="lecun"), nn.Tanh(),
        nn.Dense(120, 84, init="lecun"), nn.Tanh(),
        nn.Dense(84, num_classes, init="glorot"),
    ]


def vgg_cifar(input_shape, num_classes, widths=(32, 64, 128)):
    """A small VGG: three blocks of two conv3x3(pad 1)+BN+ReLU and a maxpool, then FC 256."""
    c, h, w = input_shape
    layers = []
    for width in widths:
        for _ in range(2):
            layers += [nn.Conv2D(c, width, 3, padding=1), nn.BatchNorm(width), nn.ReLU()]
            c = width
        layers.append(nn.MaxPool2D(2))
        h, w = h // 2, w // 2
    layers += [nn.Flatten(), nn.Dense(c * h * w, 256), nn.ReLU(), nn.Dropout(0.5),
               nn.Dense(256, num_classes, init="glorot")]
    return layers


def vgg_a(input_shape, num_classes):
    """VGG-A (VGG-11, Simonyan & Zisserman 2014) for 224x224x3 ImageNet: Lee et al.'s model.
    133 M parameters; dptrain uses it for scaling predictions more than for training."""
    c, h, w = input_shape
    layers = []
    for width, convs in ((64, 1), (128, 1), (256, 2), (512, 2), (512, 2)):
        for _ in range(convs):
            layers += [nn.Conv2D(c, width, 3, padding=1), nn.ReLU()]
            c = width
        layers.append(nn.MaxPool2D(2))
        h, w = h // 2, w // 2
    layers += [nn.Flatten(), nn.Dense(c * h * w, 4096), nn.ReLU(), nn.Dropout(0.5),
               nn.Dense(4096, 4096), nn.ReLU(), nn.Dropout(0.5),
               nn.Dense(4096, num_classes, init="glorot")]
    return layers


def _basic_block(c_in: int, c_out: int, stride: int) -> list:
    """Two conv3x3+BN with ReLU between, summed with the block's input, then ReLU. Where the
    shape changes, the shortcut is a projection (option B): conv1x1 with the stride + BN."""
    branch = [nn.Conv2D(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm(c_out),
              nn.ReLU(), nn.Conv2D(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm(c_out)]
    shortcut = None
    if stride != 1 or c_in != c_out:
        shortcut = [nn.Conv2D(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm(c_out)]
    return [nn.Residual(branch, shortcut), nn.ReLU()]


def resnet_cifar(input_shape, num_classes, widths=(16, 32, 64), blocks: int = 3):
    """He et al. 2016 (Deep residual learning, section 4.2), the CIFAR variant: conv3x3(16)+BN+
    ReLU, three stages of ``blocks`` basic blocks with ``widths`` channels (stride 2 at the
    first block of stages 2 and 3), global average pooling, FC. Depth 6 * blocks + 2.
    Convolutions followed by BatchNorm have no bias. The two down-sampling blocks use
    projection shortcuts (the paper's option B; it used option A, zero-padded identity, on
    CIFAR): ResNet-20 has 272,474 parameters (269,722 with option A; the paper's "0.27M")."""
    c = input_shape[0]
    layers = [nn.Conv2D(c, widths[0], 3, padding=1, bias=False), nn.BatchNorm(widths[0]), nn.ReLU()]
    c = widths[0]
    for stage, width in enumerate(widths):
        for b in range(blocks):
            layers += _basic_block(c, width, 2 if stage > 0 and b == 0 else 1)
            c = width
    return layers + [nn.GlobalAvgPool(), nn.Dense(c, num_classes, init="glorot")]


def resnet20(input_shape, num_classes):
    """ResNet-20 for 32x32 images: 3 stages x 3 basic blocks, 16/32/64 channels."""
    return resnet_cifar(input_shape, num_classes, (16, 32, 64), 3)


def resnet_small(input_shape, num_classes):
    """ResNet-8 for 28x28 digits: 3 stages x 1 basic block, 8/16/32 channels (19,810
    parameters at 1x28x28); trains on mnist5k in minutes on a CPU."""
    return resnet_cifar(input_shape, num_classes, (8, 16, 32), 1)


BUILDERS = {"mlp": mlp, "thesis-cnn": thesis_cnn, "lenet5": lenet5, "vgg-cifar": vgg_cifar,
            "mlp-wide": mlp_wide, "vgg-a": vgg_a, "resnet-20": resnet20,
            "resnet-small": resnet_small}


def names() -> list[str]:
    """The zoo's model names, sorted (what ``get`` builds by name)."""
    return sorted(BUILDERS)


def get(name: str, input_shape=None, num_classes: int = 10, seed: int = 0,
        backend=None) -> Sequential:
    """Build a zoo model, or one from the user's code (``FILE.py:NAME``, reference.py);
    ``input_shape`` is per sample (C, H, W), default the zoo model's own; ``backend`` (a
    backend.Backend) that of Sequential."""
    from . import reference
    if reference.is_reference(name):
        return reference.build(name, input_shape, num_classes, seed, backend)
    if name not in BUILDERS:
        from ..suggest import did_you_mean
        raise ValueError(f"unknown model {name!r}{did_you_mean(name, names())} "
                         f"(choose {', '.join(names())})")
    shape = tuple(input_shape) if input_shape is not None else DEFAULT_INPUT[name]
    try:
        layers = BUILDERS[name](shape, num_classes)
        return Sequential(layers, shape, seed=seed, name=name, backend=backend)
    except ValueError as exc:
        raise ValueError(f"model {name!r} does not fit input shape {shape}: {exc}") from None
