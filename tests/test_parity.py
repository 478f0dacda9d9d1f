"""bptt modules against torch.nn after copying weights: outputs, final states and every gradient."""

from __future__ import annotations

import pytest
import torch

import bptt

from helpers import TOL, rel_err, weighted_loss

KINDS = {
    "rnn_tanh": lambda **kw: torch.nn.RNN(nonlinearity="tanh", **kw),
    "rnn_relu": lambda **kw: torch.nn.RNN(nonlinearity="relu", **kw),
    "lstm": lambda **kw: torch.nn.LSTM(**kw),
    "lstm_proj": lambda **kw: torch.nn.LSTM(proj_size=3, **kw),
    "gru": lambda **kw: torch.nn.GRU(**kw),
}

CONFIGS = {
    "one_layer": dict(num_layers=1),
    "two_layers": dict(num_layers=2),
    "three_layers_bidirectional": dict(num_layers=3, bidirectional=True),
    "batch_first": dict(num_layers=2, batch_first=True),
    "bidirectional_batch_first": dict(num_layers=1, bidirectional=True, batch_first=True),
    "no_bias": dict(num_layers=2, bias=False),
    "unbatched": dict(num_layers=2, bidirectional=True, unbatched=True),
    "length_one": dict(num_layers=2, T=1),
    "with_hx": dict(num_layers=2, bidirectional=True, hx=True),
}


def _run_pair(kind: str, cfg: dict, dtype: torch.dtype):
    cfg = dict(cfg)
    T, B, I, H = cfg.pop("T", 5), 3, 4, 6
    unbatched, use_hx = cfg.pop("unbatched", False), cfg.pop("hx", False)
    torch.manual_seed(0)
    ref = KINDS[kind](input_size=I, hidden_size=H, dtype=dtype, **cfg)
    ours = bptt.from_torch(ref)
    shape = (T, I) if unbatched else ((B, T, I) if cfg.get("batch_first") else (T, B, I))
    x = torch.randn(shape, dtype=dtype)
    hx = None
    if use_hx:
        LD = cfg["num_layers"] * (2 if cfg.get("bidirectional") else 1)
        P = ref.proj_size if getattr(ref, "proj_size", 0) else H
        h0 = torch.randn(LD, B, P, dtype=dtype)
        hx = (h0, torch.randn(LD, B, H, dtype=dtype)) if isinstance(ref, torch.nn.LSTM) else h0
    results = []
    for model in (ref, ours):
        xi = x.clone().requires_grad_(True)
        hxi = (
            None
            if hx is None
            else (
                tuple(h.clone().requires_grad_(True) for h in hx)
                if isinstance(hx, tuple)
                else hx.clone().requires_grad_(True)
            )
        )
        out, state = model(xi, hxi)
        leaves = [
            xi,
            *((hxi if isinstance(hxi, tuple) else (hxi,)) if hxi is not None else ()),
            *model.parameters(),
        ]
        grads = torch.autograd.grad(weighted_loss(out, state), leaves)
        state = state if isinstance(state, tuple) else (state,)
        results.append((out, state, grads))
    return results


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("kind", list(KINDS))
def test_matches_torch_nn(kind: str, config: str, dtype: torch.dtype) -> None:
    (out_r, state_r, grads_r), (out, state, grads) = _run_pair(kind, CONFIGS[config], dtype)
    tol = TOL[dtype]
    assert out.shape == out_r.shape
    assert rel_err(out, out_r) < tol
    for s, s_r in zip(state, state_r, strict=True):
        assert s.shape == s_r.shape
        assert rel_err(s, s_r) < tol
    assert len(grads) == len(grads_r)
    for g, g_r in zip(grads, grads_r, strict=True):
        assert rel_err(g, g_r) < tol


@pytest.mark.parametrize("kind", list(KINDS))
def test_same_seed_gives_same_initial_weights(kind: str) -> None:
    torch.manual_seed(3)
    ref = KINDS[kind](input_size=2, hidden_size=5, num_layers=2, bidirectional=True)
    cls = {"rnn": bptt.RNN, "lst": bptt.LSTM, "gru": bptt.GRU}[kind[:3]]
    extra = {"nonlinearity": ref.nonlinearity} if cls is bptt.RNN else {}
    if kind == "lstm_proj":
        extra = {"proj_size": 3}
    torch.manual_seed(3)
    ours = cls(2, 5, num_layers=2, bidirectional=True, **extra)
    ref_params = dict(ref.named_parameters())
    assert list(ref_params) == [n for n, _ in ours.named_parameters()]
    for name, p in ours.named_parameters():
        assert torch.equal(p, ref_params[name]), name


def test_torch_state_dict_loads_into_matching_cell() -> None:
    ref = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2)
    ours = bptt.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(6, 2, 3)
    assert torch.allclose(ours(x)[0], ref(x)[0], atol=1e-6)


def test_state_dict_of_another_variant_is_refused() -> None:
    ref = torch.nn.LSTM(3, 4)
    with pytest.raises(RuntimeError, match="weight_ci_l0"):
        bptt.LSTM(3, 4, variant="peephole").load_state_dict(ref.state_dict())


def test_from_torch_keeps_configuration_and_mode() -> None:
    ref = torch.nn.GRU(3, 4, num_layers=2, batch_first=True, dropout=0.25, dtype=torch.float64).eval()
    ours = bptt.from_torch(ref)
    assert isinstance(ours, bptt.GRU)
    assert (ours.num_layers, ours.batch_first, ours.dropout, ours.training) == (2, True, 0.25, False)
    assert next(ours.parameters()).dtype == torch.float64


def test_backward_fills_grad_like_any_module() -> None:
    torch.manual_seed(0)
    ref = torch.nn.LSTM(2, 5, dtype=torch.float64)
    ours = bptt.from_torch(ref)
    x = torch.randn(7, 3, 2, dtype=torch.float64)
    for model in (ref, ours):
        out, _ = model(x)
        out.pow(2).mean().backward()
    for (name, p), p_r in zip(ours.named_parameters(), ref.parameters(), strict=True):
        assert rel_err(p.grad, p_r.grad) < 1e-10, name


def test_dropout_between_layers_only_in_training() -> None:
    torch.manual_seed(0)
    model = bptt.LSTM(2, 8, num_layers=2, dropout=0.5)
    x = torch.randn(5, 3, 2)
    a, b = model(x)[0], model(x)[0]
    assert not torch.allclose(a, b)
    model.eval()
    assert torch.equal(model(x)[0], model(x)[0])


def test_changing_outputs_in_place_keeps_gradients_right() -> None:
    torch.manual_seed(0)
    ref = torch.nn.LSTM(2, 3, dtype=torch.float64)
    ours = bptt.from_torch(ref)
    x = torch.randn(4, 2, 2, dtype=torch.float64)
    out, (h, _c) = ours(x)
    out_r, _ = ref(x)
    out.mul_(2.0)  # the tape keeps its own copy
    h.detach_()  # the old truncated-BPTT idiom
    g_r = torch.autograd.grad((2.0 * out_r).pow(2).sum(), ref.weight_hh_l0)[0]
    g = torch.autograd.grad(out.pow(2).sum(), ours.weight_hh_l0)[0]
    assert rel_err(g, g_r) < 1e-10


def test_changing_the_input_in_place_before_backward_is_caught() -> None:
    x = torch.randn(4, 1, 2)
    w = bptt.RNN(2, 3)
    out, _ = w(x)
    x.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()
