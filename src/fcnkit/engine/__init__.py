"""Training and evaluation: the loop, validation, checkpoints, distributed plumbing.

``train(cfg)`` runs a training job (single process or one rank under ``torchrun``);
``evaluate(model, loader, ...)`` scores a model with the paper's metrics.
"""

from .checkpoint import init_from, load_checkpoint, save_checkpoint
from .evaluate import Evaluation, evaluate
from .trainer import TrainingDiverged, train

__all__ = ["Evaluation", "TrainingDiverged", "evaluate", "init_from", "load_checkpoint", "save_checkpoint",
           "train"]
