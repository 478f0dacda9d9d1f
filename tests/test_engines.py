"""The native sweeps against the PyTorch loop and the references: every cell, variant and dtype."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import bptt
from bptt.engine import dispatch, matmul, native

from helpers import TOL, rel_err, weighted_loss
from reference import LSTM_VARIANTS

CELLS = (
    [("rnn", {"nonlinearity": n}) for n in bptt.NONLINEARITIES]
    + [("gru", {}), ("gru", {"bias": False})]
    + [("lstm", {"variant": v}) for v in LSTM_VARIANTS]
    + [("lstm", {"variant": v, "proj_size": 3}) for v in ("vanilla", "peephole", "fgr")]
)
IDS = [f"{k}-{'-'.join(str(v) for v in cfg.values())}" for k, cfg in CELLS]


def make(kind: str, cfg: dict, dtype: torch.dtype, **kw):
    cls = {"rnn": bptt.RNN, "gru": bptt.GRU, "lstm": bptt.LSTM}[kind]
    torch.manual_seed(0)
    return cls(3, 5, dtype=dtype, num_layers=2, bidirectional=True, **cfg, **kw)


def run(model, x, engine: str):
    with native.use_engine(engine):
        tr = bptt.trace(model, x, weighted_loss)
    return tr


def test_the_native_library_builds_here() -> None:
    info = native.build()
    assert info.ok, info.error
    assert info.path is not None and info.path.exists()
    assert native.usable(torch.zeros(1, 1, 1))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize(("kind", "cfg"), CELLS, ids=IDS)
def test_native_equals_the_pytorch_loop(kind: str, cfg: dict, dtype: torch.dtype) -> None:
    model = make(kind, cfg, dtype)
    x = torch.randn(6, 4, 3, dtype=dtype)
    assert dispatch.select(model.step, x).name == "native"  # the kernel this test binds to the equations
    fast, slow = run(model, x, "native"), run(model, x, "python")
    tol = TOL[dtype]
    assert rel_err(fast.output, slow.output) < tol
    for name, g in slow.grads.items():
        assert rel_err(fast.grads[name], g) < tol, name
    for field in ("h", "dh", "c", "dc"):
        if getattr(slow, field) is not None:
            assert rel_err(getattr(fast, field), getattr(slow, field)) < tol, field
    for name, gate in slow.gates.items():
        assert rel_err(fast.gates[name], gate) < tol, name
    assert rel_err(fast.contribution_norms(), slow.contribution_norms()) < tol


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_onednn_paths_match_torch_nn(kind: str, monkeypatch) -> None:
    """Every product through oneDNN (thresholds at zero), float32, against torch.nn."""
    monkeypatch.setattr(matmul, "STEP_MIN_MACS", 0)
    monkeypatch.setattr(matmul, "BULK_MIN_MACS", 0)
    torch.manual_seed(0)
    ref = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[kind](
        3, 6, num_layers=2, bidirectional=True
    )
    ours = bptt.from_torch(ref)
    x = torch.randn(5, 4, 3, requires_grad=True)
    results = []
    for model in (ref, ours):
        out, state = model(x)
        results.append((out, torch.autograd.grad(weighted_loss(out, state), [x, *model.parameters()])))
    (out_r, g_r), (out, g) = results
    assert rel_err(out, out_r) < 1e-5
    for a, b in zip(g, g_r, strict=True):
        assert rel_err(a, b) < 1e-5


def test_a_bench_sized_lstm_matches_torch_nn() -> None:
    """B = 32, H = 128: the per-step products go to oneDNN without any threshold changed."""
    torch.manual_seed(0)
    ref = torch.nn.LSTM(2, 128)
    ours = bptt.from_torch(ref)
    B, P, G_H = 32, 128, 512
    assert matmul.onednn(torch.zeros(1), B * P * G_H, matmul.STEP_MIN_MACS) == (
        matmul._linear_pointwise is not None
    )
    x = torch.randn(8, B, 2)
    out_r, _ = ref(x)
    out, _ = ours(x)
    g_r = torch.autograd.grad(out_r.pow(2).sum(), list(ref.parameters()))
    g = torch.autograd.grad(out.pow(2).sum(), list(ours.parameters()))
    assert rel_err(out, out_r) < 1e-5
    for a, b in zip(g, g_r, strict=True):
        assert rel_err(a, b) < 1e-5


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_nan_in_the_input_propagates_and_is_not_hidden(kind: str) -> None:
    model = {"lstm": bptt.LSTM, "gru": bptt.GRU, "rnn": bptt.RNN}[kind](2, 4)
    x = torch.randn(5, 3, 2)
    x[2, 1, 0] = float("nan")
    out, _ = model(x)
    assert torch.isnan(out[2:, 1]).all()  # from the NaN's step on, that sequence is NaN
    assert torch.isfinite(out[:2]).all() and torch.isfinite(out[:, [0, 2]]).all()


def test_relu_keeps_nan() -> None:
    model = bptt.RNN(1, 1, nonlinearity="relu", bias=False)
    with torch.no_grad():
        model.weight_ih_l0.fill_(1.0)
    out, _ = model(torch.tensor([[[float("nan")]]]))
    assert torch.isnan(out).all()


def test_a_failed_build_falls_back_to_the_pytorch_loop(tmp_path) -> None:
    """No compiler: a warning, and the same numbers from the PyTorch loop."""
    code = (
        "import warnings, torch, bptt\n"
        "from bptt.engine import native\n"
        "torch.manual_seed(0)\n"
        "m = bptt.LSTM(2, 3, dtype=torch.float64)\n"
        "x = torch.randn(4, 2, 2, dtype=torch.float64)\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    out = m(x)[0]\n"
        "assert not native.build().ok\n"
        "assert any('native sweeps unavailable' in str(i.message) for i in w), [str(i.message) for i in w]\n"
        "with native.use_engine('python'):\n"
        "    assert torch.equal(out, m(x)[0])\n"
        "print('fallback ok')\n"
    )
    env = {**os.environ, "BPTT_CACHE": str(tmp_path), "CXX": "false", "BPTT_ENGINE": "auto"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "fallback ok" in proc.stdout


def test_engine_names_are_checked() -> None:
    with pytest.raises(
        ValueError, match=r"unknown engine 'fast'; expected one of 'auto', 'native', 'python'"
    ):
        native.set_engine("fast")
