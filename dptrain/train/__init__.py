"""The training loop, evaluation, configuration, metrics and progress."""
from .config import TrainConfig, load_toml
from .evaluate import evaluate
from .trainer import Trainer, load_weights, save_weights

__all__ = ["TrainConfig", "load_toml", "evaluate", "Trainer", "load_weights", "save_weights"]
