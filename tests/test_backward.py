"""The explicit backward = autograd through an independent unrolled implementation = finite differences."""

from __future__ import annotations

import pytest
import torch

import bptt

from helpers import explicit_backward_passes_gradcheck, rel_err, weighted_loss
from reference import LSTM_VARIANTS, unroll

F64 = torch.float64

CELLS = (
    [("rnn", {"nonlinearity": n}) for n in bptt.NONLINEARITIES]
    + [("gru", {})]
    + [("lstm", {"variant": v}) for v in LSTM_VARIANTS]
    + [("lstm", {"variant": v, "proj_size": 2}) for v in ("vanilla", "peephole", "cifg", "fgr")]
)
IDS = [f"{k}-{'-'.join(str(v) for v in cfg.values())}" for k, cfg in CELLS]
SHAPES = {"one_layer": dict(num_layers=1), "two_layers_bidirectional": dict(num_layers=2, bidirectional=True)}


def make(kind: str, cfg: dict, input_size: int = 3, hidden_size: int = 4, **kw) -> bptt.cells.RecurrentBase:
    cls = {"rnn": bptt.RNN, "gru": bptt.GRU, "lstm": bptt.LSTM}[kind]
    return cls(input_size, hidden_size, dtype=F64, **cfg, **kw)


def random_state(model, B: int):
    LD = model.num_layers * model.num_directions
    h0 = torch.randn(LD, B, model.proj_size or model.hidden_size, dtype=F64)
    return (h0, torch.randn(LD, B, model.hidden_size, dtype=F64)) if model.step.has_cell else h0


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize(("kind", "cfg"), CELLS, ids=IDS)
def test_explicit_backward_equals_autograd_of_reference(kind: str, cfg: dict, shape: str) -> None:
    torch.manual_seed(0)
    model = make(kind, cfg, **SHAPES[shape])
    with torch.no_grad():  # larger weights than the default make every path matter
        for p in model.parameters():
            p.mul_(2.0)
    x = torch.randn(6, 3, 3, dtype=F64)
    hx = random_state(model, 3)
    out, state = model(x, hx)
    params = dict(model.named_parameters())
    ref = unroll(kind, params, x, hx, model.num_layers, model.bidirectional, **cfg)
    ref_state = (ref["h_n"], ref["c_n"]) if kind == "lstm" else ref["h_n"]
    assert rel_err(out, ref["output"]) < 1e-12
    names = list(params)
    g = torch.autograd.grad(weighted_loss(out, state), list(params.values()))
    g_ref = torch.autograd.grad(weighted_loss(ref["output"], ref_state), list(params.values()))
    for name, a, b in zip(names, g, g_ref, strict=True):
        assert rel_err(a, b) < 1e-10, name


@pytest.mark.parametrize(("kind", "cfg"), CELLS, ids=IDS)
def test_explicit_backward_equals_finite_differences(kind: str, cfg: dict) -> None:
    torch.manual_seed(1)
    model = make(kind, cfg, input_size=2, hidden_size=3, num_layers=2, bidirectional=True)
    x = torch.randn(3, 2, 2, dtype=F64)
    # central differences in float64 against the analytic (explicit) gradient of every input
    assert explicit_backward_passes_gradcheck(model, x, random_state(model, 2))


def test_relu_rnn_backward_stops_at_dead_units() -> None:
    model = bptt.RNN(1, 1, nonlinearity="relu", bias=False, dtype=F64)
    with torch.no_grad():
        model.weight_ih_l0.fill_(-1.0)
        model.weight_hh_l0.fill_(1.0)
    x = torch.ones(3, 1, 1, dtype=F64)  # every pre-activation is −1: the unit is dead
    out, _ = model(x)
    out.sum().backward()
    assert model.weight_ih_l0.grad.item() == 0.0
    assert model.weight_hh_l0.grad.item() == 0.0


def test_linear_rnn_gradient_is_the_closed_form() -> None:
    """Seed 000: h_t = w^t x gives dh_T/dw = T w^(T−1) x."""
    w, x0, T = 0.9, 1.5, 12
    model = bptt.RNN(1, 1, nonlinearity="linear", bias=False, dtype=F64)
    with torch.no_grad():
        model.weight_ih_l0.zero_()
        model.weight_hh_l0.fill_(w)
    x = torch.zeros(T, 1, 1, dtype=F64)
    _, h_n = model(x, torch.full((1, 1, 1), x0, dtype=F64))
    h_n.sum().backward()
    assert h_n.item() == pytest.approx(w**T * x0, rel=1e-14)
    assert model.weight_hh_l0.grad.item() == pytest.approx(T * w ** (T - 1) * x0, rel=1e-13)


def test_original_lstm_carousel_passes_cell_gradient_unchanged() -> None:
    """Without a forget gate or peepholes, ∂c_T/∂c_0 = 1 along the Constant Error Carousel."""
    model = bptt.LSTM(2, 3, variant="original", dtype=F64)
    with torch.no_grad():
        model.weight_hh_l0.zero_()  # no path through h: only the carousel links c_0 to c_T
    c0 = torch.randn(1, 2, 3, dtype=F64, requires_grad=True)
    h0 = torch.zeros(1, 2, 3, dtype=F64)
    _, (_, c_n) = model(torch.randn(50, 2, 2, dtype=F64), (h0, c0))
    (g,) = torch.autograd.grad(c_n.sum(), c0)
    assert torch.equal(g, torch.ones_like(g))


@pytest.mark.parametrize("used", ["output", "h_n", "c_n", "output+c_n"])
def test_unused_outputs_get_zero_gradients_from_one_allocation_a_layer(used: str) -> None:
    """Whatever part of (output, (h_n, c_n)) the loss reads, the gradients are torch.nn.LSTM's (weights
    copied, float64); the outputs the loss does not read get zeros, allocated once a layer for all
    of them (autograd would fill one tensor each)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from bptt.engine import native

    torch.manual_seed(0)
    reference = torch.nn.LSTM(3, 5, num_layers=2, proj_size=2, dtype=F64)
    ours = bptt.from_torch(reference)
    x = torch.randn(4, 3, 3, dtype=F64, requires_grad=True)
    h0, c0 = torch.randn(2, 3, 2, dtype=F64), torch.randn(2, 3, 5, dtype=F64, requires_grad=True)
    weights = {name: torch.randn(4, 3, n, dtype=F64) for name, n in (("output", 2), ("h_n", 2), ("c_n", 5))}
    weights["h_n"], weights["c_n"] = weights["h_n"][:2], weights["c_n"][:2]

    def loss(model: torch.nn.Module) -> torch.Tensor:
        out, (h_n, c_n) = model(x, (h0, c0))
        parts = {"output": out, "h_n": h_n, "c_n": c_n}
        return sum((parts[name] * weights[name]).sum() for name in used.split("+"))  # type: ignore[return-value]

    wanted = [x, c0, *reference.parameters()]
    expected = torch.autograd.grad(loss(reference), wanted)

    class Zeros(TorchDispatchMode):
        count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Zeros.count += "zeros" in str(func)
            return func(*args, **(kwargs or {}))

    counts = []
    for engine in ("python", "auto"):  # the PyTorch loop allocates no zeros of its own
        Zeros.count = 0
        with native.use_engine(engine):
            total = loss(ours)
            with Zeros():
                got = torch.autograd.grad(total, [x, c0, *ours.parameters()])
        for a, b in zip(got, expected, strict=True):
            assert rel_err(a, b) < 1e-10
        counts.append(Zeros.count)
    assert counts[0] == 2  # one a layer: the unused ones of its output, h_n and c_n together
