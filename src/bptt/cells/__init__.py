"""Recurrent cells: each file holds one family's step equations, forward and backward, its module and
its `CellSpec` (registry.py); the registration order here is the order of `registry.names()`.

Each registered cell's module and step (`registry.register`), and what they hold, are safe for
`torch.load`'s default `weights_only=True`, so a module saved whole with `torch.save(module)` loads
back without unpickling arbitrary code.
"""

import torch

from ..engine.function import LayerPlan
from . import registry
from .base import RecurrentBase
from .gru import GRU, GRUStep
from .lru import LRU, LRUStep
from .lstm import LSTM, VARIANTS, LSTMStep, LSTMVariant
from .minimal import MinGRU, MinGRUStep, MinLSTM, MinLSTMStep, parallel_scan
from .registry import CellSpec, register
from .rnn import NONLINEARITIES, RNN, ElmanStep
from .slstm import SLSTMStep, sLSTM

torch.serialization.add_safe_globals([LSTMVariant, LayerPlan])  # held by LSTMStep and the modules

__all__ = [
    "GRU",
    "LRU",
    "LSTM",
    "NONLINEARITIES",
    "RNN",
    "VARIANTS",
    "CellSpec",
    "ElmanStep",
    "GRUStep",
    "LRUStep",
    "LSTMStep",
    "LSTMVariant",
    "MinGRU",
    "MinGRUStep",
    "MinLSTM",
    "MinLSTMStep",
    "RecurrentBase",
    "SLSTMStep",
    "parallel_scan",
    "register",
    "registry",
    "sLSTM",
]
