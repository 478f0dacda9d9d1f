"""Training on the long-range tasks: the model, initialisations, clipping, the guard and the trainer."""

from .clip import clip_norm_, clip_value_, grad_norm
from .guard import NonFiniteGradient, first_nonfinite_parameter, locate
from .init import INITS, initialise
from .model import SequenceModel, make_core
from .trainer import TrainConfig, build, load_metrics, load_summary, train

__all__ = [
    "INITS",
    "NonFiniteGradient",
    "SequenceModel",
    "TrainConfig",
    "build",
    "clip_norm_",
    "clip_value_",
    "first_nonfinite_parameter",
    "grad_norm",
    "initialise",
    "load_metrics",
    "load_summary",
    "locate",
    "make_core",
    "train",
]
