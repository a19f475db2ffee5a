"""The training loop, evaluation, configuration, metrics and progress."""
from .config import TrainConfig, load_toml
from .evaluate import evaluate
from .setup import load_weights, save_weights
from .trainer import Trainer

__all__ = ["TrainConfig", "load_toml", "evaluate", "Trainer", "load_weights", "save_weights"]
