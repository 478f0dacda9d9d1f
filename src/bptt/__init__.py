"""bptt: backpropagation through time, made visible.

Recurrent cells with PyTorch's names and layouts (`RNN`, `LSTM` and its variants, `GRU`) and the
LSTM's successors (`sLSTM`, `MinGRU`, `MinLSTM`, `LRU`), a
hand-written backward pass through time equal to autograd's, and `trace`, which keeps what the
fused kernels hide: the total gradient at every step and every step's contribution to the gradient.
"""

from . import diagnostics, theory
from ._version import __version__
from .cells import GRU, LRU, LSTM, NONLINEARITIES, RNN, VARIANTS, MinGRU, MinLSTM, sLSTM
from .convert import from_torch
from .diagnostics import Monitor
from .trace import Trace, trace
from .watch import Watch, watch


def lstm_variants() -> dict[str, str]:
    """Every LSTM variant name with a one-line summary."""
    return {name: v.summary for name, v in VARIANTS.items()}


__all__ = [
    "GRU",
    "LRU",
    "LSTM",
    "NONLINEARITIES",
    "RNN",
    "MinGRU",
    "MinLSTM",
    "Monitor",
    "Trace",
    "Watch",
    "__version__",
    "diagnostics",
    "from_torch",
    "lstm_variants",
    "sLSTM",
    "theory",
    "trace",
    "watch",
]
