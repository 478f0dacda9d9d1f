"""The Elman RNN: h_t = a(W_ih x_t + b_ih + W_hh h_{t−1} + b_hh).

`ElmanStep` is one time step forward and backward; `RNN` is the `torch.nn.RNN`-compatible module.
Beyond PyTorch's `tanh` and `relu`, the nonlinearity may be `sigmoid` (γ = 1/4 in the seeds'
bound) or `linear` (the seeds' h_t = w^t x example).

The step Jacobian the diagnostics study is ∂h_t/∂h_{t−1} = diag(a'(z_t)) W_hh.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ..engine import dispatch, gpu, native
from ..engine.sweep import Carry, Params, StepGrads
from ..engine.tape import Tape, state_buffer
from ..engine.terms import Term, projection_terms
from . import registry
from .base import Option, RecurrentBase

NONLINEARITIES = ("tanh", "relu", "sigmoid", "linear")
GAMMA = {"tanh": 1.0, "sigmoid": 0.25, "relu": 1.0, "linear": 1.0}  # sup |a'(z)|
RANGES: dict[str, tuple[float, float] | None] = {
    "tanh": (-1.0, 1.0),
    "sigmoid": (0.0, 1.0),
    "relu": (0.0, float("inf")),  # saturated at 0 means dead
    "linear": None,
}

# a(z) in place, and a'(z) from h = a(z): every activation here has a derivative expressible in its output.
_ACTIVATE: dict[str, Callable[[Tensor], object]] = {
    "tanh": Tensor.tanh_,
    "relu": Tensor.relu_,
    "sigmoid": Tensor.sigmoid_,
    "linear": lambda h: h,
}


# a(z) out of place, for the path autograd differentiates (engine/unrolled.py).
_FUNCTION: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "linear": lambda z: z,
}


def activation_grad(nonlinearity: str, h: Tensor) -> Tensor:
    """a'(z) computed from h = a(z)."""
    if nonlinearity == "tanh":
        return 1 - h * h  # tanh' = 1 − tanh²
    if nonlinearity == "sigmoid":
        return h * (1 - h)  # σ' = σ(1 − σ)
    if nonlinearity == "relu":
        return (h > 0).to(h.dtype)  # relu' = 1[z > 0]
    return torch.ones_like(h)  # linear


@dataclass(frozen=True)
class ElmanStep:
    """One step of the Elman RNN, forward and backward."""

    nonlinearity: str = "tanh"
    gate_names: tuple[str, ...] = ("h",)
    fold_bias_hh: bool = True
    separate_dgh: bool = False
    has_cell: bool = False
    zero_state: ClassVar[bool] = True  # new_tape takes h0 = None for zeros

    def new_tape(
        self, x: Tensor, h0: Tensor | None, c0: Tensor | None, reverse: bool, params: Params
    ) -> Tape:
        if h0 is None:  # a zero state: the buffer zeroed, no initial slot to copy
            T, B = x.shape[:2]
            H = params["weight_hh"].shape[1]
            return Tape(x=x, reverse=reverse, hidden_size=H, h_buf=x.new_zeros((T + 1, B, H)))
        tape = Tape(x=x, reverse=reverse, hidden_size=h0.shape[-1], h_buf=state_buffer(h0, x.shape[0]))
        tape.h_buf[tape.initial_slot()] = h0
        return tape

    def forward(self, t: int, gx: Tensor, gh: Tensor, tape: Tape, p: Params) -> None:
        h = tape.h[t]
        torch.add(gx, gh, out=h)  # z_t = W_ih x_t + b_ih + W_hh h_{t−1} + b_hh
        _ACTIVATE[self.nonlinearity](h)  # h_t = a(z_t)

    def initial_state(self, h0: Tensor, c0: Tensor | None) -> Carry:
        return (h0,)

    def cell(self, gx: Tensor, gh: Tensor, state: Carry, p: Params) -> Carry:
        """`forward` out of place, for autograd: (h_{t−1},) → (h_t,)."""
        return (_FUNCTION[self.nonlinearity](gx + gh),)  # h_t = a(W_ih x_t + b_ih + W_hh h_{t−1} + b_hh)

    def initial_carry(self, tape: Tape, dc_n: Tensor | None) -> Carry:
        return ()

    def backward(self, t: int, dh: Tensor, carry: Carry, tape: Tape, p: Params) -> StepGrads:
        dz = dh * activation_grad(self.nonlinearity, tape.h[t])  # ∂L/∂z_t = ∂L/∂h_t ⊙ a'(z_t)
        return StepGrads(dz, dz, None, None, carry)

    def grad_terms(self, tape: Tape, p: Params) -> dict[str, Term]:
        return projection_terms(tape, p)

    def gates(self, tape: Tape) -> dict[str, Tensor]:
        return {}


class RNN(RecurrentBase):
    """An Elman RNN with `torch.nn.RNN`'s arguments, parameters and forward contract.

    h_t = a(x_t W_ihᵀ + b_ih + h_{t−1} W_hhᵀ + b_hh), with a one of `tanh`, `relu`, `sigmoid`, `linear`.
    Its backward pass through time is the hand-written one in `ElmanStep.backward`.

    Arguments:
        input_size: features of x_t.
        hidden_size: features of h_t.
        num_layers: stacked layers; layer l > 0 reads the outputs of layer l − 1.
        nonlinearity: `"tanh"` (default), `"relu"`, `"sigmoid"` or `"linear"`.
        bias: whether to use b_ih and b_hh.
        batch_first: input and output as (B, T, features) instead of (T, B, features).
        dropout: dropout on the outputs of every layer but the last, in training mode.
        bidirectional: add a layer that reads the sequence backwards (`*_reverse` parameters).

    Shapes: input (T, B, input_size), or (B, T, input_size) with `batch_first`, or (T, input_size)
    unbatched; hx (num_layers·D, B, hidden_size) or (num_layers·D, hidden_size), zeros when None.
    Returns output (T, B, D·hidden_size) and h_n (num_layers·D, B, hidden_size), D = 2 if bidirectional.

    Example:
        >>> import torch, bptt
        >>> rnn = bptt.RNN(2, 8, nonlinearity="relu")
        >>> output, h_n = rnn(torch.randn(5, 3, 2))
        >>> output.shape, h_n.shape
        (torch.Size([5, 3, 8]), torch.Size([1, 3, 8]))
    """

    OPTION = Option("nonlinearity", NONLINEARITIES)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        proj_size: int | None = None,
    ) -> None:
        self._no_projection(proj_size)
        args = (input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional)
        super().__init__(ElmanStep(self._option(nonlinearity)), *args, device=device, dtype=dtype)
        self.nonlinearity = nonlinearity


def _label(step: ElmanStep) -> str:
    return f"rnn ({step.nonlinearity})"


def _gamma(step: ElmanStep) -> float:
    return GAMMA[step.nonlinearity]


def _ranges(step: ElmanStep) -> dict[str, tuple[float, float] | None]:
    return {"h": RANGES[step.nonlinearity]}  # the Elman RNN has no gates: its activation, as "h"


def _activation_grad(step: ElmanStep, h: Tensor) -> Tensor:
    return activation_grad(step.nonlinearity, h)


def _twin_options(module: torch.nn.Module) -> dict[str, object]:
    return {"nonlinearity": module.nonlinearity}


def _twin_arguments(options: Mapping[str, str]) -> dict[str, object] | None:
    nl = options["nonlinearity"]
    return {"nonlinearity": nl} if nl in ("tanh", "relu") else None  # torch.nn.RNN has only these


SPEC = registry.register(
    registry.CellSpec(
        name="rnn",
        summary="the Elman RNN, h_t = a(W_ih x_t + b_ih + W_hh h_{t−1} + b_hh)",
        step=ElmanStep,
        module=RNN,
        gate_ranges=_ranges,
        label=_label,
        gamma=_gamma,
        activation_grad=_activation_grad,
        inits=("default", "orthogonal", "identity"),
        torch_twin=torch.nn.RNN,
        twin_options=_twin_options,
        twin_arguments=_twin_arguments,
        twin_gates=1,
    )
)


def _native_accepts(step: ElmanStep) -> bool:
    return step.nonlinearity in native.ACTIVATIONS


dispatch.register(
    dispatch.Kernel(
        "native",
        ElmanStep,
        "cpu",
        native.rnn_forward_sweep,
        native.rnn_backward_sweep,
        accepts=_native_accepts,
        available=native.usable,
    )
)

gpu.register(ElmanStep, "rnn")  # the Triton sweeps on CUDA (engine/gpu.py)
