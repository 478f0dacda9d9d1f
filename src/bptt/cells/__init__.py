"""Recurrent cells: each file holds one family's step equations, forward and backward, its module and
its `CellSpec` (registry.py); the registration order here is the order of `registry.names()`."""

from . import registry
from .base import RecurrentBase
from .gru import GRU, GRUStep
from .lstm import LSTM, VARIANTS, LSTMStep, LSTMVariant
from .registry import CellSpec, register
from .rnn import NONLINEARITIES, RNN, ElmanStep

__all__ = [
    "GRU",
    "LSTM",
    "NONLINEARITIES",
    "RNN",
    "VARIANTS",
    "CellSpec",
    "ElmanStep",
    "GRUStep",
    "LSTMStep",
    "LSTMVariant",
    "RecurrentBase",
    "register",
    "registry",
]
