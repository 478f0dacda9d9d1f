"""Worst relative errors per cell, float64 and float32: `python tests/measure_errors.py`.

Standard cells are compared with torch.nn after copying weights; variants without a torch.nn twin
with the independent unrolled reference (tests/reference.py) in the same dtype. The error of a
tensor is max |a − b| / max |b|; each cell reports the worst over outputs, final states and every
gradient, over layers 1–3, both directions, batch_first and 10 seeds.
"""

from __future__ import annotations

import itertools

import torch

import bptt

from helpers import rel_err, weighted_loss
from reference import LSTM_VARIANTS, unroll

CONFIGS = [
    dict(num_layers=1),
    dict(num_layers=2, bidirectional=True),
    dict(num_layers=3, batch_first=True),
]


def torch_twin(kind: str, cfg: dict, dtype: torch.dtype):
    kw = dict(input_size=3, hidden_size=16, dtype=dtype, **cfg)
    if kind.startswith("rnn_") and kind[4:] in ("tanh", "relu"):
        return torch.nn.RNN(nonlinearity=kind[4:], **kw)
    return {"lstm_vanilla": torch.nn.LSTM, "gru": torch.nn.GRU}.get(kind, lambda **_: None)(**kw)


def worst(kind: str, dtype: torch.dtype) -> float:
    err = 0.0
    for cfg, seed in itertools.product(CONFIGS, range(10)):
        torch.manual_seed(seed)
        ref = torch_twin(kind, cfg, dtype)
        if ref is not None:
            ours = bptt.from_torch(ref)
        elif kind.startswith("rnn_"):
            ours = bptt.RNN(3, 16, nonlinearity=kind[4:], dtype=dtype, **cfg)
        else:
            ours = bptt.LSTM(3, 16, variant=kind[5:], dtype=dtype, **cfg)
        shape = (8, 50, 3) if cfg.get("batch_first") else (50, 8, 3)
        x = torch.randn(shape, dtype=dtype)
        out, state = ours(x)
        params = list(ours.parameters())
        grads = torch.autograd.grad(weighted_loss(out, state), params)
        if ref is not None:
            out_r, state_r = ref(x)
            grads_r = torch.autograd.grad(weighted_loss(out_r, state_r), list(ref.parameters()))
        else:
            xt = x.transpose(0, 1) if cfg.get("batch_first") else x
            kw = {"nonlinearity": kind[4:]} if kind.startswith("rnn_") else {"variant": kind[5:]}
            r = unroll(
                kind[:4].rstrip("_"),
                dict(ours.named_parameters()),
                xt,
                None,
                ours.num_layers,
                ours.bidirectional,
                **kw,
            )
            out_r = r["output"].transpose(0, 1) if cfg.get("batch_first") else r["output"]
            state_r = (r["h_n"], r["c_n"]) if kind.startswith("lstm") else r["h_n"]
            grads_r = torch.autograd.grad(weighted_loss(out_r, state_r), params)
        pairs = [
            (out, out_r),
            *zip(
                state if isinstance(state, tuple) else (state,),
                state_r if isinstance(state_r, tuple) else (state_r,),
                strict=True,
            ),
            *zip(grads, grads_r, strict=True),
        ]
        err = max(err, *(rel_err(a, b) for a, b in pairs))
    return err


if __name__ == "__main__":
    torch.set_num_threads(1)
    kinds = (
        [f"rnn_{n}" for n in bptt.NONLINEARITIES]
        + ["gru"]
        + [f"lstm_{v}" for v in LSTM_VARIANTS if v != "np"]
    )
    print(f"{'cell':<16}{'reference':<12}{'float64':>12}{'float32':>12}")
    for kind in kinds:
        against = "torch.nn" if torch_twin(kind, {}, torch.float64) is not None else "unrolled"
        print(
            f"{kind:<16}{against:<12}{worst(kind, torch.float64):>12.2e}{worst(kind, torch.float32):>12.2e}"
        )
