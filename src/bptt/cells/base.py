"""What the RNN, LSTM and GRU modules share: PyTorch's constructor, parameters and forward contract.

Parameters are registered in `torch.nn.RNNBase`'s order (per layer, per direction: weight_ih,
weight_hh, bias_ih, bias_hh, weight_hr), followed by a variant's extra parameters, and initialised
like PyTorch, U(−1/√H, 1/√H) in registration order; so under the same seed a standard cell starts
from the same weights as its `torch.nn` twin, and a `torch.nn` state dict loads unchanged.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from .. import _checks
from .._checks import InputError, InputTypeError
from ..engine.function import LayerPlan
from ..engine.layers import run_layers
from ..engine.sweep import Step
from ..engine.tape import Tape

State = Tensor | tuple[Tensor, Tensor]


class RecurrentBase(nn.Module):
    """Base of `bptt.RNN`, `bptt.LSTM` and `bptt.GRU`; see those for the arguments."""

    def __init__(
        self,
        step: Step,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        extra_params: Mapping[str, tuple[int, ...]] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.input_size = _checks.positive_int("input_size", input_size)
        self.hidden_size = _checks.positive_int("hidden_size", hidden_size)
        self.num_layers = _checks.positive_int("num_layers", num_layers)
        self.bias = _checks.flag("bias", bias)
        self.batch_first = _checks.flag("batch_first", batch_first)
        self.bidirectional = _checks.flag("bidirectional", bidirectional)
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0 <= dropout <= 1:
            raise InputError(f"expected dropout to be a probability in [0, 1], got {dropout!r}")
        self.dropout = float(dropout)
        if isinstance(proj_size, bool) or not isinstance(proj_size, int) or not 0 <= proj_size < hidden_size:
            raise InputError(f"expected proj_size in [0, hidden_size = {hidden_size}), got {proj_size!r}")
        self.proj_size: int = proj_size
        self.step: Step = step

        factory = {"device": device, "dtype": dtype}
        G, H = len(step.gate_names), hidden_size
        P = proj_size or hidden_size
        D = 2 if bidirectional else 1
        self._plans: list[LayerPlan] = []
        for layer in range(num_layers):
            for direction in range(D):
                shapes: dict[str, tuple[int, ...]] = {
                    "weight_ih": (G * H, input_size if layer == 0 else D * P),
                    "weight_hh": (G * H, P),
                }
                if bias:
                    shapes.update(bias_ih=(G * H,), bias_hh=(G * H,))
                if proj_size:
                    shapes["weight_hr"] = (P, H)
                shapes.update(extra_params or {})
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                for name, shape in shapes.items():
                    self.register_parameter(name + suffix, nn.Parameter(torch.empty(shape, **factory)))
                self._plans.append(
                    LayerPlan(step, layer, bool(direction), tuple(shapes), tuple(n + suffix for n in shapes))
                )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """U(−1/√H, 1/√H) for every parameter, as `torch.nn.RNNBase.reset_parameters`."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def plans(self) -> list[LayerPlan]:
        """One plan per layer and direction, in h_n's order (layer-major, forward before reverse)."""
        return self._plans

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s

    def forward(self, input: Tensor, hx: State | None = None) -> tuple[Tensor, State]:
        """Run the sequence; returns `output, h_n` (or `output, (h_n, c_n)` for the LSTM).

        The gradient of anything computed from the result flows back through the explicit
        backward pass of each layer (`engine.function.LayerSweep`).
        """
        return self.run(input, hx)

    def run(
        self,
        input: Tensor,
        hx: State | None = None,
        params: Mapping[str, Tensor] | None = None,
        recorder: list[Tape] | None = None,
    ) -> tuple[Tensor, State]:
        """`forward` with explicit parameters (default: the module's) and an optional tape recorder.

        `recorder`, when given, receives each layer-direction's `Tape` in h_n's order; the tapes are
        completed with ∂L/∂h_t, ∂L/∂c_t and the pre-activation gradients when the backward pass runs.
        """
        x, batched = self._time_major(input)
        _T, B = x.shape[:2]
        h0, c0 = self._initial_state(hx, B, batched, x)
        output, h_n, c_n = run_layers(
            self, x, h0, c0, dict(self.named_parameters()) if params is None else params, recorder
        )
        if not batched:
            output, h_n = output.squeeze(1), h_n.squeeze(1)
            c_n = None if c_n is None else c_n.squeeze(1)
        elif self.batch_first:
            output = output.transpose(0, 1)
        return output, (h_n if c_n is None else (h_n, c_n))

    # -- checks where the input enters ---------------------------------------------------------

    @property
    def _dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def _time_major(self, input: Tensor) -> tuple[Tensor, bool]:
        """(T, B, I) contiguous, and whether the input had a batch dimension."""
        _checks.tensor("input", input)
        if input.dim() not in (2, 3):
            raise InputError(
                f"expected input with 2 (unbatched: T, {self.input_size}) or 3 (batched) dimensions, "
                f"got {input.dim()} with shape {_checks.shape_str(input.shape)}"
            )
        if input.shape[-1] != self.input_size:
            raise InputError(
                f"expected input of size {self.input_size} in the last dimension, got {input.shape[-1]}"
            )
        if not input.is_floating_point():
            raise InputTypeError(f"expected a floating-point input, got {input.dtype}")
        _checks.floating("input", input, self._dtype)
        batched = input.dim() == 3
        x = input.unsqueeze(1) if not batched else (input.transpose(0, 1) if self.batch_first else input)
        if x.shape[0] < 1 or x.shape[1] < 1:
            raise InputError(
                f"expected at least one time step and one sequence, got input of shape {_checks.shape_str(input.shape)}"
            )
        return x.contiguous(), batched

    def _initial_state(
        self, hx: State | None, B: int, batched: bool, x: Tensor
    ) -> tuple[Tensor, Tensor | None]:
        """(h0, c0) as (L·D, B, ·) tensors; zeros where hx is None."""
        LD, H, P = self.num_layers * self.num_directions, self.hidden_size, self.proj_size or self.hidden_size
        has_cell = self.step.has_cell
        if hx is None:
            h0 = x.new_zeros(LD, B, P)
            return h0, (x.new_zeros(LD, B, H) if has_cell else None)
        if has_cell:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise InputTypeError(
                    f"expected hx to be a tuple (h_0, c_0) for the LSTM, got {type(hx).__name__}"
                )
            pairs = [("h_0", hx[0], P), ("c_0", hx[1], H)]
        else:
            if isinstance(hx, (tuple, list)):
                raise InputTypeError(f"expected hx to be a tensor h_0, got {type(hx).__name__}")
            pairs = [("h_0", hx, P)]
        out = []
        for name, value, size in pairs:
            _checks.tensor(name, value)
            expected = (LD, B, size) if batched else (LD, size)
            _checks.shape(name, value, expected)
            _checks.floating(name, value, self._dtype)
            out.append(value if batched else value.unsqueeze(1))
        return out[0], (out[1] if has_cell else None)
