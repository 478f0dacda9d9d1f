"""Initialisations that matter for long time lags, on PyTorch-named parameters of any core.

* `default`: PyTorch's U(−1/√H, 1/√H).
* `orthogonal`: every gate block of W_hh orthogonal on its own (not the fused 4H×H matrix).
* `identity`: IRNN (Le et al. 2015): W_hh = I, W_ih ~ N(0, 0.001²), biases 0 (use with ReLU).
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

INITS = ("default", "orthogonal", "identity")


def _gates(core: nn.Module) -> str:
    step = getattr(core, "step", None)
    if step is not None:
        return "".join(step.gate_names)
    return {"LSTM": "ifgo", "GRU": "rzn", "RNN": "h"}[type(core).__name__]


def _block(t: torch.Tensor, gates: str, gate: str, H: int) -> torch.Tensor:
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
    gates, H = _gates(core), core.hidden_size
    params = dict(core.named_parameters())
    kind = "lstm" if "g" in gates else ("gru" if gates == "rzn" else "rnn")  # every LSTM variant keeps g
    if init == "identity" and kind != "rnn":
        raise InputError(f"the identity (IRNN) initialisation is for the Elman RNN, not the {kind}")
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
    for what, value, gate in (("forget_bias", forget_bias, "f"), ("input_bias", input_bias, "i")):
        if value is None:
            continue
        if gate not in gates:
            raise InputError(
                f"{what} needs a cell with an {'forget' if gate == 'f' else 'input'} gate; this one has gates {gates!r}"
            )
        for name, p in params.items():
            if name.startswith("bias_ih"):
                _block(p, gates, gate, H).fill_(value)
            elif name.startswith("bias_hh"):
                _block(p, gates, gate, H).zero_()
    if chrono is not None:
        if chrono < 3 or "f" not in gates or "i" not in gates:
            raise InputError(
                f"chrono needs T_max ≥ 3 and a cell with input and forget gates (gates {gates!r}, T_max {chrono})"
            )
        for name, p in params.items():
            if name.startswith("bias_ih"):
                bf = torch.log(torch.empty(H).uniform_(1.0, chrono - 1.0, generator=generator))
                _block(p, gates, "f", H).copy_(bf)
                _block(p, gates, "i", H).copy_(-bf)
            elif name.startswith("bias_hh"):
                _block(p, gates, "f", H).zero_()
                _block(p, gates, "i", H).zero_()
    if init_scale != 1.0:
        if not math.isfinite(init_scale) or init_scale <= 0:
            raise InputError(f"expected a positive init_scale, got {init_scale}")
        for name, p in params.items():
            if name.startswith("weight_hh"):
                p.mul_(init_scale)
