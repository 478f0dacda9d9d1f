"""What the RNN, LSTM and GRU modules share: PyTorch's constructor, parameters and forward contract.

Parameters are registered in `torch.nn.RNNBase`'s order (per layer, per direction: weight_ih,
weight_hh, bias_ih, bias_hh, weight_hr), followed by a variant's extra parameters, and initialised
like PyTorch, U(−1/√H, 1/√H) in registration order; so under the same seed a standard cell starts
from the same weights as its `torch.nn` twin, and a `torch.nn` state dict loads unchanged.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from .. import _checks
from .._checks import InputError, InputTypeError, ShapeError
from ..engine.function import LayerPlan
from ..engine.layers import run_layers
from ..engine.sweep import Step
from ..engine.tape import Tape

State = Tensor | tuple[Tensor, Tensor]


class Option(NamedTuple):
    """A module's one argument beyond torch.nn's (`nonlinearity`, `variant`, …) and its choices, the default first."""

    name: str
    choices: tuple[str, ...]


class RecurrentBase(nn.Module):
    """Base of `bptt.RNN`, `bptt.LSTM` and `bptt.GRU`; see those for the arguments.

    A subclass with an option of its own names it in `OPTION`; `_option` checks a value against
    its choices, the subclass keeps it in the attribute of that name, and `repr` shows it when it is
    not the default.
    """

    OPTION: ClassVar[Option | None] = None

    step: Step
    input_size: int
    hidden_size: int
    num_layers: int
    bias: bool
    batch_first: bool
    bidirectional: bool
    dropout: float
    proj_size: int

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
        if dropout > 0 and num_layers == 1:
            warnings.warn(  # torch.nn's own warning, word for word
                "dropout option adds dropout after all but last recurrent layer, so non-zero dropout "
                f"expects num_layers greater than 1, but got dropout={dropout} and num_layers={num_layers}",
                UserWarning,
                stacklevel=3,
            )
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
                in_features = input_size if layer == 0 else D * P
                layout = getattr(step, "parameter_shapes", None)
                shapes: dict[str, tuple[int, ...]]
                if layout is not None:  # a cell with a layout of its own (minGRU, minLSTM, LRU)
                    shapes = layout(in_features, H, bias)
                else:
                    shapes = {"weight_ih": (G * H, in_features), "weight_hh": (G * H, P)}
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

    @classmethod
    def _option(cls, value: object) -> str:
        """`value` checked against the choices of `OPTION`."""
        assert cls.OPTION is not None
        return _checks.choice(cls.OPTION.name, value, cls.OPTION.choices)

    @staticmethod
    def _no_projection(proj_size: int | None) -> None:
        """The RNN's and the GRU's refusal of `proj_size`: torch.nn's, even for proj_size=0."""
        if proj_size is not None:
            raise InputError("proj_size argument is only supported for LSTM, not RNN or GRU")

    def reset_parameters(self) -> None:
        """U(−1/√H, 1/√H) for every parameter, as `torch.nn.RNNBase.reset_parameters`."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    @property
    def cell_size(self) -> int:
        """Features of the cell state c: hidden_size, or the cell's own (sLSTM (c, n, m): 3·H; LRU: 2·N)."""
        size = getattr(self.step, "cell_size", None)
        return self.hidden_size if size is None else int(size(self.hidden_size))

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
        if self.OPTION is not None and (value := getattr(self, self.OPTION.name)) != self.OPTION.choices[0]:
            s += f", {self.OPTION.name}={value!r}"
        return s

    def flatten_parameters(self) -> None:
        """A no-op, as `torch.nn.RNNBase.flatten_parameters` off the GPU: the weights are used where they are."""

    def weights(self) -> dict[str, Tensor]:
        """Every layer's weights by name, as the forward pass reads them (parametrized ones computed)."""
        own = self._parameters  # the registered ones without `Module.__getattr__`; others by name
        return {
            name: own[name] if name in own else getattr(self, name)  # type: ignore[misc]  # never None here
            for plan in self._plans
            for name in plan.names
        }

    @torch.compiler.disable  # type: ignore[untyped-decorator]
    def forward(self, input: Tensor | PackedSequence, hx: State | None = None) -> tuple[Any, State]:
        """Run the sequence; returns `output, h_n` (or `output, (h_n, c_n)` for the LSTM).

        `input` may be a `PackedSequence`: then `output` is one too, with the input's batch sizes
        and order, and h_n (c_n) holds each sequence's state after its own last step, as in
        `torch.nn`. The gradient of anything computed from the result flows back through the
        explicit backward pass of each layer (`engine.function.LayerSweep`). `torch.compile`
        runs this method as it is, between the graphs it compiles around it.
        """
        return self.run(input, hx)

    def run(
        self,
        input: Tensor | PackedSequence,
        hx: State | None = None,
        params: Mapping[str, Tensor] | None = None,
        recorder: list[Tape] | None = None,
    ) -> tuple[Any, State]:
        """`forward` with explicit parameters (default: the module's) and an optional tape recorder.

        `recorder`, when given, receives each layer-direction's `Tape` in h_n's order; the tapes are
        completed with ∂L/∂h_t, ∂L/∂c_t and the pre-activation gradients when the backward pass runs.
        A packed input's tapes carry its `lengths`.
        """
        packed, lengths = None, None
        if isinstance(input, PackedSequence):
            packed, batched = input, True
            x, lengths = self._unpack(input)
        else:
            x, batched = self._time_major(input)
        _T, B = x.shape[:2]
        h0, c0 = self._initial_state(hx, B, batched, x)
        weights = self.weights() if params is None else dict(params)
        device = x.device.type
        if torch.is_autocast_enabled(device):
            # As torch.nn's recurrent modules under autocast: the layers run in the autocast dtype
            # (the PyTorch loop; the native sweeps take float32/float64), gradients flow back to the
            # parameters in their own dtype.
            dtype = torch.get_autocast_dtype(device)
            x = x.to(dtype)
            h0 = None if h0 is None else h0.to(dtype)
            c0 = None if c0 is None else c0.to(dtype)
            weights = {name: w.to(dtype) for name, w in weights.items()}
            with torch.autocast(device, enabled=False):
                output, h_n, c_n = run_layers(self, x, h0, c0, weights, recorder, lengths)
        else:
            output, h_n, c_n = run_layers(self, x, h0, c0, weights, recorder, lengths)
        if packed is not None:
            return self._pack_like(output, packed), (h_n if c_n is None else (h_n, c_n))
        if not batched:
            output, h_n = output.squeeze(1), h_n.squeeze(1)
            c_n = None if c_n is None else c_n.squeeze(1)
        elif self.batch_first:
            output = output.transpose(0, 1)
        return output, (h_n if c_n is None else (h_n, c_n))

    def _unpack(self, packed: PackedSequence) -> tuple[Tensor, Tensor]:
        """The padded (T, B, I) input in the sequences' own order, and their lengths (B,)."""
        data = packed.data
        if data.dim() != 2:
            raise ShapeError(
                f"expected a packed sequence of 2-dimensional data (steps, {self.input_size}), "
                f"got data of shape {_checks.shape_str(data.shape)}"
            )
        self._check_features(data)
        x, lengths = pad_packed_sequence(packed)  # (T, B, I), lengths in the order the user gave
        return x.contiguous(), lengths.to(x.device)

    @staticmethod
    def _pack_like(output: Tensor, packed: PackedSequence) -> PackedSequence:
        """A padded (T, B, ·) output packed with `packed`'s batch sizes and order."""
        order = packed.sorted_indices
        B = output.shape[1]
        sorted_out = output if order is None else output.index_select(1, order)
        batch_sizes = packed.batch_sizes
        valid = torch.arange(B) < batch_sizes.unsqueeze(1)  # (T, B): step t of the t-th sorted sequences
        data = sorted_out[valid.to(output.device)]  # row-major: time-major, as packed data is
        return PackedSequence(data, batch_sizes, packed.sorted_indices, packed.unsorted_indices)

    # -- checks where the input enters ---------------------------------------------------------

    @property
    def _dtype(self) -> torch.dtype:
        for p in self._parameters.values():  # the module's own, without walking its children
            if p is not None:
                return p.dtype
        return next(self.parameters()).dtype  # parametrized: the original tensors live in a child

    def _time_major(self, input: Tensor) -> tuple[Tensor, bool]:
        """(T, B, I) contiguous, and whether the input had a batch dimension."""
        _checks.tensor("input", input)
        if input.dim() not in (2, 3):
            raise InputError(
                f"expected input with 2 (unbatched: T, {self.input_size}) or 3 (batched) dimensions, "
                f"got {input.dim()} with shape {_checks.shape_str(input.shape)}"
            )
        self._check_features(input)
        batched = input.dim() == 3
        x = input.unsqueeze(1) if not batched else (input.transpose(0, 1) if self.batch_first else input)
        if x.shape[0] < 1:
            raise ShapeError(
                f"expected at least one time step, got input of shape {_checks.shape_str(input.shape)}"
            )
        return x.contiguous(), batched

    def _check_features(self, input: Tensor) -> None:
        """Size, kind and dtype of the features; any floating dtype is taken under autocast, as torch.nn does."""
        if input.shape[-1] != self.input_size:
            raise ShapeError(
                f"expected input of size {self.input_size} in the last dimension, got {input.shape[-1]}"
            )
        if not input.is_floating_point():
            raise InputTypeError(f"expected a floating-point input, got {input.dtype}")
        if not torch.is_autocast_enabled(input.device.type):
            _checks.floating("input", input, self._dtype)

    def _initial_state(
        self, hx: State | None, B: int, batched: bool, x: Tensor
    ) -> tuple[Tensor | None, Tensor | None]:
        """(h0, c0) as (L·D, B, ·) tensors; zeros where hx is None, or (None, None) where the step's
        tapes start from zeros themselves (`zero_state`: one allocation, no copies)."""
        LD, P = self.num_layers * self.num_directions, self.proj_size or self.hidden_size
        H = self.cell_size
        has_cell = self.step.has_cell
        if hx is None:
            if getattr(self.step, "zero_state", False):  # its tapes start from zeros themselves
                return None, None
            return x.new_zeros(LD, B, P), (x.new_zeros(LD, B, H) if has_cell else None)
        if has_cell:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise InputTypeError(
                    f"expected hx to be a tuple (h_0, c_0) for the {type(self).__name__}, got {type(hx).__name__}"
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
            if not torch.is_autocast_enabled(x.device.type):
                _checks.floating(name, value, self._dtype)
            out.append(value if batched else value.unsqueeze(1))
        return out[0], (out[1] if has_cell else None)
