"""The model a task trains: a recurrent core and a linear readout, at the last step or at every step."""

from __future__ import annotations

from torch import Tensor, nn

from .._checks import InputError
from ..cells import GRU, LSTM, RNN, RecurrentBase

CELLS = ("rnn", "lstm", "gru")
CORES = ("bptt", "torch")


def make_core(
    cell: str,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    variant: str = "vanilla",
    nonlinearity: str = "tanh",
    core: str = "bptt",
) -> RecurrentBase | nn.RNNBase:
    """A bptt cell, or (`core="torch"`) PyTorch's fused module where the cell is a standard one."""
    if core == "torch":
        if cell == "lstm" and variant in ("vanilla", "np"):
            return nn.LSTM(input_size, hidden_size, num_layers)
        if cell == "gru":
            return nn.GRU(input_size, hidden_size, num_layers)
        if cell == "rnn" and nonlinearity in ("tanh", "relu"):
            return nn.RNN(input_size, hidden_size, num_layers, nonlinearity=nonlinearity)
        what = f"lstm variant {variant!r}" if cell == "lstm" else f"rnn nonlinearity {nonlinearity!r}"
        raise InputError(f"torch.nn has no {what}; use core='bptt'")
    if cell == "lstm":
        return LSTM(input_size, hidden_size, num_layers, variant=variant)
    if cell == "gru":
        return GRU(input_size, hidden_size, num_layers)
    return RNN(input_size, hidden_size, num_layers, nonlinearity=nonlinearity)


class SequenceModel(nn.Module):
    """core → Linear readout; `every_step` reads every output, otherwise the last one.

    Shapes: x (T, B, I) → prediction (B, O), or (T, B, O) with `every_step`; plus the core's state.
    """

    def __init__(self, core: RecurrentBase | nn.RNNBase, output_size: int, every_step: bool) -> None:
        super().__init__()
        self.core = core
        width = core.proj_size or core.hidden_size
        self.readout = nn.Linear(width * (2 if core.bidirectional else 1), output_size)
        self.every_step = every_step

    def head(self, output: Tensor) -> Tensor:
        """The readout applied to the core's output (T, B, ·)."""
        prediction: Tensor = self.readout(output if self.every_step else output[-1])
        return prediction

    def forward(self, x: Tensor, hx: object = None) -> tuple[Tensor, object]:
        output, state = self.core(x, hx)
        return self.head(output), state
