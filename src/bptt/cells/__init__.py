"""Recurrent cells: each file holds one family's step equations, forward and backward, and its module."""

from .base import RecurrentBase
from .gru import GRU, GRUStep
from .lstm import LSTM, VARIANTS, LSTMStep, LSTMVariant
from .rnn import NONLINEARITIES, RNN, ElmanStep

__all__ = [
    "GRU",
    "LSTM",
    "NONLINEARITIES",
    "RNN",
    "VARIANTS",
    "ElmanStep",
    "GRUStep",
    "LSTMStep",
    "LSTMVariant",
    "RecurrentBase",
]
