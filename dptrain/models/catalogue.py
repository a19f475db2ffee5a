"""What ``dptrain models`` (and ``summary --list``) shows: every zoo model in one line.

The parameter counts are for the model's own input shape and 10 classes; a test builds
each model and checks them, so this table cannot drift from the zoo.
"""
from __future__ import annotations

from .zoo import DEFAULT_INPUT, names

# name: (parameters at the default input shape, what it is)
MODELS = {
    "thesis-cnn": (160_490, "the seed-003 thesis CNN (Table 1): 2 x conv5x5+BatchNorm+pool, "
                            "FC 256, dropout"),
    "mlp": (269_322, "784-256-256-10 multilayer perceptron"),
    "lenet5": (61_706, "LeNet-5 (LeCun et al. 1998), tanh and average pooling"),
    "vgg-cifar": (815_018, "a small VGG for 32x32x3 images: 3 blocks of 2 conv3x3+BatchNorm"),
    "mlp-wide": (20_037_642, "784-4096-4096-10: little compute per gradient byte, the "
                             "communication-heavy benchmark"),
    "vgg-a": (128_807_306, "VGG-A / VGG-11 for 224x224x3 ImageNet, Lee et al.'s model; for "
                           "scaling predictions more than training"),
    "resnet-20": (272_474, "ResNet-20 (He et al. 2016, CIFAR variant) for 32x32x3: 3 stages x 3 "
                           "basic blocks, 16/32/64 channels, projection shortcuts"),
    "resnet-small": (19_810, "ResNet-8 for 28x28 digits: 3 stages x 1 basic block, 8/16/32 "
                             "channels"),
}


def catalogue() -> list[dict]:
    return [{"model": n, "input_shape": "x".join(map(str, DEFAULT_INPUT[n])),
             "params": MODELS[n][0], "description": MODELS[n][1]} for n in names()]


def format_catalogue() -> str:
    rows = catalogue()
    lines = [f"{'model':<12} {'input':<10} {'params':>12}  description"]
    lines += [f"{r['model']:<12} {r['input_shape']:<10} {r['params']:>12,}  {r['description']}"
              for r in rows]
    lines.append("Every model adapts to the data set's image shape (dptrain summary --model NAME "
                 "--input-shape CxHxW).")
    return "\n".join(lines)
