"""The stack: layers one after another, two directions side by side, dropout between layers.

Between layers the graph is ordinary autograd (concatenation of directions, dropout); within a
layer the backward pass through time is `LayerSweep`'s explicit one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from .function import LayerPlan, LayerSweep
from .tape import Tape


class Stack(Protocol):
    """What the loop over layers reads of a recurrent module (`bptt.cells.RecurrentBase` is one)."""

    @property
    def num_layers(self) -> int: ...
    @property
    def num_directions(self) -> int: ...
    @property
    def dropout(self) -> float: ...
    @property
    def training(self) -> bool: ...
    @property
    def plans(self) -> Sequence[LayerPlan]: ...


def run_layers(
    model: Stack,
    x: Tensor,
    h0: Tensor | None,
    c0: Tensor | None,
    params: Mapping[str, Tensor],
    recorder: list[Tape] | None,
    lengths: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """x (T, B, I), h0 (L·D, B, P), c0 (L·D, B, H) → output (T, B, D·P), h_n, c_n. h0 = c0 = None: a
    zero initial state (a step whose `zero_state` is True).

    `lengths` (B,): each sequence's own number of steps (packed input); its state is held after its end.
    """
    D = model.num_directions
    h_n: list[Tensor] = []
    c_n: list[Tensor] = []
    layer_input = x
    for layer in range(model.num_layers):
        outputs = []
        for direction in range(D):
            k = layer * D + direction
            plan = model.plans[k]
            out, h, *c = LayerSweep.apply(  # type: ignore[no-untyped-call]  # Function.apply is unannotated in torch
                plan,
                recorder,
                lengths,
                layer_input,
                None if h0 is None else h0[k],
                None if c0 is None else c0[k],
                *[params[n] for n in plan.names],
            )
            outputs.append(out)
            h_n.append(h)
            c_n.extend(c)
        layer_input = outputs[0] if D == 1 else torch.cat(outputs, dim=-1)  # (T, B, D·P)
        if model.dropout and model.training and layer < model.num_layers - 1:
            layer_input = F.dropout(layer_input, p=model.dropout, training=True)
    return layer_input, _joined(h_n), (_joined(c_n) if c_n else None)


def _joined(states: list[Tensor]) -> Tensor:
    """(L·D, B, ·) from each layer-direction's own (1, B, ·) output: that one where there is one."""
    return states[0] if len(states) == 1 else torch.cat(states)
