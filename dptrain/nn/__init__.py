"""Layers, activations, losses, initialisers and regularisers (numpy or cupy)."""
from .activations import ELU, LeakyReLU, PReLU, ReLU, Sigmoid, Softplus, Tanh
from .containers import Residual
from .conv import Conv2D
from .dense import Dense
from .dropout import Dropout
from .layer import BatchContext, Layer
from .losses import MSE, SoftmaxCrossEntropy
from .norm import BatchNorm
from .pool import AvgPool2D, GlobalAvgPool, MaxPool2D
from .regularizers import L1, L2
from .reshape import Flatten

__all__ = [
    "Layer", "BatchContext", "Dense", "Conv2D", "MaxPool2D", "AvgPool2D", "GlobalAvgPool",
    "Flatten", "BatchNorm", "Dropout", "ReLU", "LeakyReLU", "PReLU", "ELU", "Sigmoid", "Tanh",
    "Softplus", "SoftmaxCrossEntropy", "MSE", "L1", "L2", "Residual",
]
