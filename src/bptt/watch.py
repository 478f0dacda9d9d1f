"""`bptt.watch`: a `Trace` of every recurrent submodule, from the user's own training step.

    with bptt.watch(model) as w:            # every torch.nn.RNN/LSTM/GRU and bptt module inside
        loss = criterion(model(tokens), targets)
        loss.backward()
    w.traces["rnn"]                          # keyed by qualified name, as in model.named_modules()

Inside the block each recurrent submodule runs through bptt's engine on its own parameters, with
a recorder attached: its forward pass keeps the tapes (states, gates), and the explicit backward
pass that `loss.backward()` runs fills in ∂loss/∂h_t and ∂loss/∂c_t. Nothing else runs: no second
forward or backward pass, no draw from the random number generator, no change of train/eval mode.
So the parameters' `.grad` are the gradients autograd gives without watching (to float rounding:
the engine sums in another order than torch.nn's fused kernels), dropout between layers draws the
same masks, and a training run watched every k steps follows the unwatched one.

A torch.nn module runs through its bptt twin (`bptt.from_torch`, built without touching the random
number generator), whose copied weights are the module's weights at the time of the call; the
gradients flow to the module's own parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from ._checks import InputError, InputTypeError
from .cells.base import RecurrentBase, State
from .convert import from_torch, torch_recurrent
from .engine.tape import Tape
from .trace import Trace, build


def recurrent_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Every torch.nn.RNN/LSTM/GRU and bptt recurrent module in `model`, by qualified name ("" for `model` itself)."""
    twins = torch_recurrent()
    return {
        name: m for name, m in model.named_modules() if isinstance(m, RecurrentBase) or isinstance(m, twins)
    }


@dataclass
class _Call:
    """One run of a watched module: the bptt module that ran, its tapes, and its parameters as they were."""

    name: str
    model: RecurrentBase
    tapes: list[Tape]
    params: dict[str, Tensor]
    output: Tensor
    state: State


def _detach(value: Any) -> Any:
    """A tensor, a state tuple or a PackedSequence, detached."""
    if isinstance(value, PackedSequence):
        return value._replace(data=value.data.detach())
    return tuple(s.detach() for s in value) if isinstance(value, tuple) else value.detach()


class Watch:
    """Traces of a model's recurrent submodules from the forward and backward pass run inside `with`.

    Use it through `bptt.watch(model)`. Attributes:
        modules: the watched submodules by qualified name.
        loss: optional; set it to the loss tensor inside the block and every trace's `loss` is its value
            (otherwise NaN: the watch never sees the loss itself, only its gradient).
    """

    def __init__(self, model: nn.Module) -> None:
        if not isinstance(model, nn.Module):
            raise InputTypeError(f"watch expects a torch.nn.Module, got {type(model).__name__}")
        self.modules = recurrent_modules(model)
        if not self.modules:
            raise InputError(
                f"watch found no recurrent module in {type(model).__name__}: expected a torch.nn.RNN, "
                "LSTM or GRU or a bptt.RNN, LSTM or GRU among its submodules"
            )
        self.loss: Tensor | None = None
        self._calls: list[_Call] = []
        self._traces: dict[str, Trace] | None = None
        self._active = False

    # -- the block ----------------------------------------------------------------------------

    def __enter__(self) -> Watch:
        if self._active:
            raise InputError("this watch is already active; a block cannot be entered twice at once")
        for name, module in self.modules.items():
            if "forward" in module.__dict__:
                raise InputError(
                    f"the module {name or type(module).__name__!r} is already watched (or its forward is replaced)"
                )
        self._calls, self._traces, self.loss = [], None, None
        for name, module in self.modules.items():
            module.forward = self._forward(name, module)
        self._active = True
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        for module in self.modules.values():
            module.__dict__.pop("forward", None)
        self._active = False

    def _forward(self, name: str, module: nn.Module) -> Callable[..., tuple[Tensor, State]]:
        def forward(input: Tensor, hx: State | None = None) -> tuple[Tensor, State]:
            if not torch.is_grad_enabled():  # an evaluation pass: nothing to trace, run as usual
                return type(module).forward(module, input, hx)  # type: ignore[no-any-return]
            tapes: list[Tape] = []
            if isinstance(module, RecurrentBase):
                output, state = module.run(input, hx, recorder=tapes)
                bmodel = module
                params = {n: getattr(module, n).detach().clone() for n, _ in module.named_parameters()}
            else:
                bmodel = from_torch(module)  # its weights: a copy of the module's as they are now
                live = {n: getattr(module, n) for n, _ in bmodel.named_parameters()}
                output, state = bmodel.run(input, hx, params=live, recorder=tapes)
                params = {n: p.detach() for n, p in bmodel.named_parameters()}
            self._calls.append(_Call(name, bmodel, tapes, params, _detach(output), _detach(state)))
            return output, state

        return forward

    # -- what it saw --------------------------------------------------------------------------

    @property
    def traces(self) -> dict[str, Trace]:
        """A `Trace` per call of a watched module, keyed by its qualified name.

        A module that ran k > 1 times in the block has traces `name`, `name#1`, …, `name#(k−1)`
        in call order. Available once `loss.backward()` has run (inside the block or after it).
        """
        if self._traces is None:
            if not self._calls:
                raise InputError(
                    "no watched module ran with gradients enabled inside the block; run the forward pass "
                    f"of the model inside `with bptt.watch(model)` (watched: {', '.join(map(repr, self.modules))})"
                )
            if all(t.dh is None for c in self._calls for t in c.tapes):
                raise InputError(
                    "the backward pass has not run yet: call loss.backward() before reading the traces"
                )
            loss = (
                self.loss.detach().reshape(()).double()
                if isinstance(self.loss, Tensor)
                else torch.tensor(float("nan"), dtype=torch.float64)
            )
            seen: dict[str, int] = {}
            traces = {}
            for c in self._calls:
                n = seen.get(c.name, 0)
                seen[c.name] = n + 1
                traces[c.name if n == 0 else f"{c.name}#{n}"] = build(
                    c.model, c.tapes, c.params, loss.to(_values(c.output).dtype), c.output, c.state
                )
            self._traces = traces
        return self._traces

    @property
    def trace(self) -> Trace:
        """The only trace, where one recurrent module ran once."""
        traces = self.traces
        if len(traces) != 1:
            raise InputError(
                f"expected one trace, got {len(traces)} ({', '.join(map(repr, traces))}); use .traces[name]"
            )
        return next(iter(traces.values()))


def _values(output: Tensor | PackedSequence) -> Tensor:
    return output.data if isinstance(output, PackedSequence) else output


def watch(model: nn.Module) -> Watch:
    """Watch every recurrent submodule of `model` through the forward and backward pass run inside `with`.

    Arguments:
        model: any `torch.nn.Module`; its torch.nn.RNN/LSTM/GRU and bptt.RNN/LSTM/GRU submodules
            (or the model itself, if it is one) are watched.

    Returns:
        a `Watch`; after `loss.backward()`, `w.traces[name]` is the `bptt.Trace` of the submodule
        `name` under the real loss: `dh[l, t]` the total ∂loss/∂h_t, `dx` ∂loss/∂x_t, the gates, the
        per-step contributions, the Jacobian products.

    Example:
        >>> import torch, bptt
        >>> model = torch.nn.Sequential()
        >>> model.rnn = torch.nn.LSTM(3, 8, num_layers=2)
        >>> x, y = torch.randn(12, 4, 3), torch.randn(12, 4, 8)
        >>> with bptt.watch(model) as w:
        ...     out, _ = model(x)
        ...     loss = torch.nn.functional.mse_loss(out, y)
        ...     loss.backward()
        >>> tr = w.traces["rnn"]
        >>> tr.dh.shape  # (layers · directions, T, B, H)
        torch.Size([2, 12, 4, 8])
        >>> torch.allclose(tr.grads["weight_hh_l0"], model.rnn.weight_hh_l0.grad, atol=1e-6)
        True
    """
    return Watch(model)
