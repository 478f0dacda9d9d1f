"""The model a task trains: a recurrent core and a linear readout, at the last step or at every step."""

from __future__ import annotations

from torch import Tensor, nn

from .._checks import InputError
from ..cells import registry

CORES = ("bptt", "torch")


def make_core(
    cell: str,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    variant: str = "vanilla",
    nonlinearity: str = "tanh",
    core: str = "bptt",
) -> nn.Module:
    """A registered bptt cell, or (`core="torch"`) its `torch.nn` twin where it has one for these options.

    The cell takes those of `variant` and `nonlinearity` it declares as options (registry.CellSpec).
    """
    spec = registry.get(cell)
    options = {"variant": variant, "nonlinearity": nonlinearity}
    if core != "torch":
        return spec.build(input_size, hidden_size, num_layers, options)
    twin = spec.build_twin(input_size, hidden_size, num_layers, options)
    if twin is None:
        what = ", ".join(f"{k} {v!r}" for k, v in spec.check_options(options).items())
        raise InputError(f"torch.nn has no {cell}{' with ' + what if what else ''}; use core='bptt'")
    return twin


class SequenceModel(nn.Module):
    """core → Linear readout; `every_step` reads every output, otherwise the last one.

    Shapes: x (T, B, I) → prediction (B, O), or (T, B, O) with `every_step`; plus the core's state.
    """

    def __init__(self, core: nn.Module, output_size: int, every_step: bool) -> None:
        super().__init__()
        self.core = core
        width = core.hidden_size if not getattr(core, "proj_size", 0) else core.proj_size
        self.readout = nn.Linear(width * (2 if core.bidirectional else 1), output_size)
        self.every_step = every_step

    def head(self, output: Tensor) -> Tensor:
        """The readout applied to the core's output (T, B, ·)."""
        return self.readout(output if self.every_step else output[-1])

    def forward(self, x: Tensor, hx: object = None) -> tuple[Tensor, object]:
        output, state = self.core(x, hx)
        return self.head(output), state
