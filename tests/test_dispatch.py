"""Kernels are chosen by the step's exact type and settings: a subclass with other equations, or a
variant no kernel was compiled for, runs the Python loop over its own equations and equals autograd."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import Tensor

import bptt
from bptt.cells import GRUStep, LSTMStep, LSTMVariant, RecurrentBase, registry
from bptt.cells.lstm import VARIANTS
from bptt.cells.rnn import ElmanStep
from bptt.diagnostics import summarize
from bptt.engine import dispatch, native
from bptt.engine.sweep import Carry, Params, StepGrads
from bptt.engine.tape import Tape

from helpers import rel_err
from reference import gru_step, lstm_step

S = 0.5  # the scale the subclasses put on h_t


@dataclass(frozen=True)
class HalfTanhStep(ElmanStep):
    """h_t = 2 tanh(z_t / 2): another activation on an Elman step."""

    def forward(self, t: int, gx: Tensor, gh: Tensor, tape: Tape, p: Params) -> None:
        h = tape.h[t]
        torch.add(gx, gh, out=h)
        h.mul_(0.5).tanh_().mul_(2.0)  # h_t = 2 tanh(z_t / 2)

    def backward(self, t: int, dh: Tensor, carry: Carry, tape: Tape, p: Params) -> StepGrads:
        h = tape.h[t]
        dz = dh * (1 - (h / 2) ** 2)  # (2 tanh(z/2))' = 1 − tanh²(z/2)
        return StepGrads(dz, dz, None, None, carry)


@dataclass(frozen=True)
class ScaledGRUStep(GRUStep):
    """h_t = S · GRU(x_t, h_{t−1})."""

    def forward(self, t: int, gx: Tensor, gh: Tensor, tape: Tape, p: Params) -> None:
        super().forward(t, gx, gh, tape, p)
        tape.h[t].mul_(S)

    def backward(self, t: int, dh: Tensor, carry: Carry, tape: Tape, p: Params) -> StepGrads:
        return super().backward(t, S * dh, carry, tape, p)  # the GRU's backward reads h_{t−1}, not h_t


@dataclass(frozen=True)
class ScaledLSTMStep(LSTMStep):
    """h_t = S · o_t ⊙ tanh(c_t)."""

    def forward(self, t: int, gx: Tensor, gh: Tensor, tape: Tape, p: Params) -> None:
        super().forward(t, gx, gh, tape, p)
        tape.h[t].mul_(S)

    def backward(self, t: int, dh: Tensor, carry: Carry, tape: Tape, p: Params) -> StepGrads:
        return super().backward(t, S * dh, carry, tape, p)  # the LSTM's backward reads c_t and gates


def _half_tanh(P: dict, x: Tensor, h: Tensor) -> Tensor:
    z = x @ P["weight_ih"].T + P["bias_ih"] + h @ P["weight_hh"].T + P["bias_hh"]
    return 2 * torch.tanh(z / 2)


def _reference(kind: str, P: dict, x: Tensor, variant: str = "vanilla") -> Tensor:
    """The changed equations unrolled with plain autograd (tests/reference.py's steps, h scaled)."""
    B, H = x.shape[1], P["weight_hh"].shape[1]
    h, c = x.new_zeros(B, H), x.new_zeros(B, H)
    prev = {"i": c, "f": c, "o": c}
    outs = []
    for t in range(x.shape[0]):
        if kind == "rnn":
            h = _half_tanh(P, x[t], h)
        elif kind == "gru":
            (h,), _ = gru_step(P, x[t], (h,))
            h = S * h
        else:
            (h, c, prev), _ = lstm_step(P, x[t], (h, c, prev), variant)
            h = S * h
        outs.append(h)
    return torch.stack(outs)


CASES = [
    ("rnn", lambda: HalfTanhStep("tanh"), {}),
    ("gru", ScaledGRUStep, {}),
    ("lstm", lambda: ScaledLSTMStep(VARIANTS["vanilla"]), {}),
    ("lstm", lambda: ScaledLSTMStep(VARIANTS["cifg"]), {"variant": "cifg"}),
    ("lstm", lambda: ScaledLSTMStep(VARIANTS["fgr"]), {"variant": "fgr"}),
]


@pytest.mark.parametrize(("kind", "make", "cfg"), CASES, ids=["rnn", "gru", "lstm", "cifg", "fgr"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_subclass_with_other_equations_runs_them_and_equals_autograd(kind, make, cfg, dtype) -> None:
    torch.manual_seed(0)
    step = make()
    extra = step.extra_params(5) if isinstance(step, LSTMStep) else None
    model = RecurrentBase(step, 3, 5, extra_params=extra, dtype=dtype)
    x = torch.randn(7, 2, 3, dtype=dtype)
    assert dispatch.select(step, x) is dispatch.PYTHON  # no kernel was written for this type
    assert registry.spec_of(step) is None  # nor does it borrow its parent's label, roles or bounds
    grad = torch.randn(7, 2, 5, dtype=dtype)
    out = model(x)[0]
    grads = torch.autograd.grad(out, list(model.parameters()), grad)

    P = {n.removesuffix("_l0"): p.detach().double().requires_grad_(True) for n, p in model.named_parameters()}
    ref = _reference(kind, P, x.double(), **cfg)
    ref_grads = torch.autograd.grad(ref, list(P.values()), grad.double())
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    assert rel_err(out.double(), ref) < tol
    for g, r in zip(grads, ref_grads, strict=True):
        assert rel_err(g.double(), r) < tol


def test_the_registered_steps_still_get_their_kernel() -> None:
    x = torch.zeros(1, 1, 2)
    if not native.usable(x):
        pytest.skip("the native sweeps are not built here")
    for step in (ElmanStep("tanh"), ElmanStep("sigmoid"), GRUStep(), LSTMStep(VARIANTS["cifg"])):
        assert dispatch.select(step, x).name == "native"
    with native.use_engine("python"):
        assert dispatch.select(GRUStep(), x) is dispatch.PYTHON


def test_a_new_lstm_variant_of_existing_flags_runs_the_python_loop() -> None:
    """NIAF without peepholes and without a forget gate: flags no kernel was compiled for."""
    torch.manual_seed(0)
    v = LSTMVariant(
        "niaf-nfg-np", "g = z_g, no forget gate, no peepholes", gates="igo", input_activation=False
    )
    step = LSTMStep(v)
    model = RecurrentBase(step, 2, 4, extra_params=step.extra_params(4), dtype=torch.float64)
    x = torch.randn(6, 3, 2, dtype=torch.float64)
    assert dispatch.select(step, x) is dispatch.PYTHON
    out = model(x)[0]
    # the same equations spelled by the reference: gates i, g, o, g = z_g, f = 1
    P = {n.removesuffix("_l0"): p.detach().requires_grad_(True) for n, p in model.named_parameters()}
    H, h, c = 4, x.new_zeros(3, 4), x.new_zeros(3, 4)
    outs = []
    for t in range(6):
        z = x[t] @ P["weight_ih"].T + P["bias_ih"] + h @ P["weight_hh"].T + P["bias_hh"]
        i, g, o = torch.sigmoid(z[:, :H]), z[:, H : 2 * H], torch.sigmoid(z[:, 2 * H :])
        c = c + i * g
        h = o * torch.tanh(c)
        outs.append(h)
    ref = torch.stack(outs)
    assert rel_err(out, ref) < 1e-12
    g1 = torch.autograd.grad(out.sum(), list(model.parameters()))
    g2 = torch.autograd.grad(ref.sum(), list(P.values()))
    assert max(rel_err(a, b) for a, b in zip(g1, g2, strict=True)) < 1e-10


def test_a_kernel_registers_for_an_exact_type_and_device() -> None:
    calls = []

    def fwd(step, tape, gx, p):
        calls.append("forward")
        dispatch.PYTHON.forward_sweep(step, tape, gx, p)

    kernel = dispatch.Kernel("spy", HalfTanhStep, "cpu", fwd, dispatch.PYTHON.backward_sweep)
    dispatch.register(kernel)
    try:
        x = torch.randn(4, 2, 3)
        assert dispatch.select(HalfTanhStep(), x) is kernel
        assert dispatch.select(ElmanStep(), x) is not kernel
        assert dispatch.select(HalfTanhStep(), x.to("meta")) is dispatch.PYTHON  # another device
        RecurrentBase(HalfTanhStep(), 3, 5)(x)
        assert calls == ["forward"]
    finally:
        dispatch.unregister(kernel)
    assert dispatch.select(HalfTanhStep(), x) is dispatch.PYTHON


def test_the_compiled_lstm_flags_are_the_registered_variants() -> None:
    if not native.usable(torch.zeros(1, 1, 1)):
        pytest.skip("the native sweeps are not built here")
    assert {native.lstm_flags(v) for v in VARIANTS.values()} == native.lstm_compiled_flags()
    assert bptt.LSTM(2, 3).step.variant is VARIANTS["vanilla"]


def test_the_diagnostics_of_an_unregistered_subclass_claim_nothing_of_its_parent() -> None:
    torch.manual_seed(0)
    step = ScaledLSTMStep(VARIANTS["vanilla"])
    tr = bptt.trace(RecurrentBase(step, 2, 4), torch.randn(8, 3, 2), lambda out, s: out[-1].sum())
    rec = summarize(tr, samples=2, full=True)
    assert rec.cell == "ScaledLSTMStep"  # not "lstm (vanilla)"
    assert set(rec.saturation) == set("ifgo") and all(v is None for v in rec.saturation.values())
    assert rec.jacobian_log_cec is None and rec.split is None and rec.forget_unit_mean is None
    assert rec.bounds[0].verdict == "no bound declared for this cell"
    assert rec.bounds[0].max_forget is None
    assert rec.jacobian_log_state is not None
    assert rec.jacobian_log_state[-1] == pytest.approx(0.0)  # what needs no declaration still runs
