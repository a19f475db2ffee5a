"""The model zoo. Each builder takes the per-sample input shape (C, H, W) and the class count,
so the same architecture adapts to the data set (the flatten size is derived, not hard-coded).
"""
from __future__ import annotations

import math

from .. import nn
from ..nn.kernels import out_size
from .sequential import Sequential

DEFAULT_INPUT = {"mlp": (1, 28, 28), "thesis-cnn": (1, 28, 28), "lenet5": (1, 28, 28),
                 "vgg-cifar": (3, 32, 32), "mlp-wide": (1, 28, 28), "vgg-a": (3, 224, 224)}


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


BUILDERS = {"mlp": mlp, "thesis-cnn": thesis_cnn, "lenet5": lenet5, "vgg-cifar": vgg_cifar,
            "mlp-wide": mlp_wide, "vgg-a": vgg_a}


def names() -> list[str]:
    return sorted(BUILDERS)


def get(name: str, input_shape=None, num_classes: int = 10, seed: int = 0) -> Sequential:
    """Build a zoo model, or one from the user's code (``FILE.py:NAME``, reference.py);
    ``input_shape`` is per sample (C, H, W), default the zoo model's own."""
    from . import reference
    if reference.is_reference(name):
        return reference.build(name, input_shape, num_classes, seed)
    if name not in BUILDERS:
        from ..suggest import did_you_mean
        raise ValueError(f"unknown model {name!r}{did_you_mean(name, names())} "
                         f"(choose {', '.join(names())})")
    shape = tuple(input_shape) if input_shape is not None else DEFAULT_INPUT[name]
    try:
        layers = BUILDERS[name](shape, num_classes)
        return Sequential(layers, shape, seed=seed, name=name)
    except ValueError as exc:
        raise ValueError(f"model {name!r} does not fit input shape {shape}: {exc}") from None
