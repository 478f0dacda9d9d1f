"""Initialisations that matter for long time lags, on PyTorch-named parameters of any registered core.

Which block of gate rows is the forget or the input gate comes from the cell's `CellSpec.roles`.

* `default`: PyTorch's U(−1/√H, 1/√H).
* `orthogonal`: every gate block of W_hh orthogonal on its own (not the fused 4H×H matrix).
* `identity`: IRNN (Le et al. 2015): W_hh = I, W_ih ~ N(0, 0.001²), biases 0 (use with ReLU); only for
  cells that list it in their `CellSpec.inits` (the Elman RNN).
* `forget_bias`: b_f in one bias vector only (PyTorch keeps two, b_ih and b_hh; Jozefowicz et
  al. 2015, Keras' unit_forget_bias): b_ih[f] = value, b_hh[f] = 0.
* `chrono` (Tallec & Ollivier 2018): b_f ~ log U[1, T_max − 1], b_i = −b_f (in b_ih; b_hh = 0).
* `input_bias`: b_ih[i] = value, b_hh[i] = 0.
* `init_scale`: W_hh multiplied by this after everything else (a "large recurrent
  initialisation" for the exploding-gradient experiments).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .._checks import InputError
from ..cells import RecurrentBase, registry
from ..convert import from_torch

INITS = ("default", "orthogonal", "identity")


def _cell(core: nn.Module) -> tuple[registry.CellSpec, tuple[str, ...], int]:
    """The core's registered cell, its gate blocks (the rows of weight_ih/weight_hh, in order) and H."""
    spec = registry.spec_of(core)
    if spec is None:
        raise InputError(
            f"expected a registered cell (one of {', '.join(registry.names())}) or its torch.nn twin, "
            f"got {type(core).__name__}"
        )
    twin = (
        core if isinstance(core, RecurrentBase) else from_torch(core)
    )  # a torch.nn twin: its bptt module's gates
    return spec, tuple(twin.step.gate_names), twin.hidden_size


def _block(t: torch.Tensor, gates: tuple[str, ...], gate: str, H: int) -> torch.Tensor:
    k = gates.index(gate)
    return t[k * H : (k + 1) * H]


@torch.no_grad()
def initialise(
    core: nn.Module,
    init: str = "default",
    forget_bias: float | None = None,
    input_bias: float | None = None,
    chrono: int | None = None,
    init_scale: float = 1.0,
    generator: torch.Generator | None = None,
) -> None:
    """Apply the initialisation in place; errors name what does not fit the cell.

    Example:
        >>> import bptt
        >>> lstm = bptt.LSTM(2, 4)
        >>> initialise(lstm, "orthogonal", forget_bias=1.0)
        >>> lstm.bias_ih_l0[4:8].tolist(), lstm.bias_hh_l0[4:8].tolist()
        ([1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0])
    """
    if init not in INITS:
        raise InputError(f"unknown init {init!r}; expected one of {', '.join(map(repr, INITS))}")
    spec, gates, H = _cell(core)
    params = dict(core.named_parameters())
    if init not in spec.inits:
        raise InputError(
            f"the {init} initialisation does not apply to the {spec.name}; it takes {', '.join(spec.inits)}"
        )
    for name, p in params.items():
        if name.startswith("weight_hh"):
            if init == "orthogonal":
                for k in range(len(gates)):
                    nn.init.orthogonal_(p[k * H : (k + 1) * H], generator=generator)
            elif init == "identity":
                p.copy_(torch.eye(*p.shape))
        elif name.startswith("weight_ih") and init == "identity":
            p.normal_(0.0, 0.001, generator=generator)
        elif name.startswith("bias") and init == "identity":
            p.zero_()
    role_gate = {
        role: gate for role, gate in spec.roles.items() if gate in gates
    }  # the blocks this variant has
    for what, value, role in (("forget_bias", forget_bias, "forget"), ("input_bias", input_bias, "input")):
        if value is None:
            continue
        gate = role_gate.get(role)
        if gate is None:
            article = "an" if role[0] in "aeiou" else "a"
            raise InputError(
                f"{what} needs a cell with {article} {role} gate; this one has gates {''.join(gates)!r}"
            )
        for name, p in params.items():
            if name.startswith("bias_ih"):
                _block(p, gates, gate, H).fill_(value)
            elif name.startswith("bias_hh"):
                _block(p, gates, gate, H).zero_()
    if chrono is not None:
        if chrono < 3 or "forget" not in role_gate or "input" not in role_gate:
            raise InputError(
                f"chrono needs T_max ≥ 3 and a cell with input and forget gates (gates {''.join(gates)!r}, T_max {chrono})"
            )
        f, i = role_gate["forget"], role_gate["input"]
        for name, p in params.items():
            if name.startswith("bias_ih"):
                bf = torch.log(torch.empty(H).uniform_(1.0, chrono - 1.0, generator=generator))
                _block(p, gates, f, H).copy_(bf)
                _block(p, gates, i, H).copy_(-bf)
            elif name.startswith("bias_hh"):
                _block(p, gates, f, H).zero_()
                _block(p, gates, i, H).zero_()
    if init_scale != 1.0:
        if not math.isfinite(init_scale) or init_scale <= 0:
            raise InputError(f"expected a positive init_scale, got {init_scale}")
        if not any(name.startswith("weight_hh") for name in params):
            raise InputError(f"init_scale scales W_hh, and the {spec.name} has no recurrent weights")
        for name, p in params.items():
            if name.startswith("weight_hh"):
                p.mul_(init_scale)
