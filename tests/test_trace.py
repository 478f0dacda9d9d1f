"""bptt.trace: totals per step, per-step contributions, states and gates, against independent references."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import bptt
from bptt.diagnostics import jacobian_norms
from bptt.engine.terms import Outer

from helpers import rel_err, weighted_loss
from reference import unroll

F64 = torch.float64

CELLS = [
    ("rnn", {"nonlinearity": "tanh"}),
    ("rnn", {"nonlinearity": "sigmoid"}),
    ("gru", {}),
    ("lstm", {"variant": "vanilla"}),
    ("lstm", {"variant": "peephole", "proj_size": 2}),
    ("lstm", {"variant": "cifg"}),
    ("lstm", {"variant": "fgr"}),
    ("lstm", {"variant": "original"}),
]
IDS = [f"{k}-{'-'.join(str(v) for v in cfg.values())}" for k, cfg in CELLS]


def make(kind: str, cfg: dict, **kw):
    cls = {"rnn": bptt.RNN, "gru": bptt.GRU, "lstm": bptt.LSTM}[kind]
    torch.manual_seed(0)
    return cls(3, 4, dtype=F64, **cfg, **kw)


@pytest.fixture(params=list(zip(CELLS, IDS, strict=True)), ids=IDS)
def traced(request):
    (kind, cfg), _ = request.param
    model = make(kind, cfg, num_layers=2, bidirectional=True)
    x = torch.randn(7, 3, 3, dtype=F64)
    tr = bptt.trace(model, x, weighted_loss)
    return kind, cfg, model, x, tr


def test_contributions_sum_to_grads(traced) -> None:
    _, _, _, _, tr = traced
    total = {name: torch.zeros_like(g) for name, g in tr.grads.items()}
    for k in range(tr.steps):
        contribution = tr.contribution(k)
        assert list(contribution) == list(tr.grads)
        for name, value in contribution.items():
            total[name] += value
    for name, g in tr.grads.items():
        assert rel_err(total[name], g) < 1e-12, name


def test_contribution_norms_are_the_norms_of_the_contributions(traced) -> None:
    _, _, _, _, tr = traced
    direct = torch.stack(
        [torch.cat([v.flatten() for v in tr.contribution(k).values()]).norm() for k in range(tr.steps)]
    )
    norms = tr.contribution_norms()
    assert norms.shape == (tr.steps,)
    assert rel_err(norms, direct) < 1e-12


def test_grads_equal_autograd(traced) -> None:
    _kind, _cfg, model, x, tr = traced
    params = list(model.parameters())
    out, state = model(x)
    g = torch.autograd.grad(weighted_loss(out, state), params)
    for (name, p_grad), expected in zip(tr.grads.items(), g, strict=True):
        assert rel_err(p_grad, expected) < 1e-12, name
    assert all(p.grad is None for p in params)  # trace leaves the model's .grad alone


def test_states_gates_and_step_totals_equal_the_unrolled_reference(traced) -> None:
    kind, cfg, model, x, tr = traced
    ref = unroll(kind, dict(model.named_parameters()), x, None, model.num_layers, model.bidirectional, **cfg)
    ref_state = (ref["h_n"], ref["c_n"]) if kind == "lstm" else ref["h_n"]
    loss = weighted_loss(ref["output"], ref_state)
    assert rel_err(tr.loss, loss) < 1e-12
    LD, T = len(ref["h"]), x.shape[0]
    hs = [h for layer in ref["h"] for h in layer]
    cs = [c for layer in ref["c"] for c in layer] if kind == "lstm" else []
    grads = torch.autograd.grad(loss, hs + cs)
    dh_ref = torch.stack(grads[: LD * T]).view(LD, T, *hs[0].shape)
    h_ref = torch.stack(hs).view(LD, T, *hs[0].shape)
    assert tr.h.shape == tr.dh.shape == dh_ref.shape
    assert rel_err(tr.h, h_ref) < 1e-12
    assert rel_err(tr.dh, dh_ref) < 1e-11
    if kind == "lstm":
        dc_ref = torch.stack(grads[LD * T :]).view(LD, T, *cs[0].shape)
        assert rel_err(tr.c, torch.stack(cs).view_as(dc_ref)) < 1e-12
        assert rel_err(tr.dc, dc_ref) < 1e-11
    else:
        assert tr.c is None and tr.dc is None
    for name, value in tr.gates.items():
        ref_gate = torch.stack([g[name] for layer in ref["gates"] for g in layer]).view_as(value)
        assert rel_err(value, ref_gate) < 1e-12, name
    lstm_gates = {"original": set("igo")}  # no forget gate; CIFG's f = 1 − i is included
    expected_gates = {
        "rnn": set(),
        "gru": {"r", "z", "n"},
        "lstm": lstm_gates.get(cfg.get("variant"), set("ifgo")),
    }
    assert set(tr.gates) == expected_gates[kind]


def test_trace_of_a_torch_module_matches_its_autograd() -> None:
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 5, num_layers=2, batch_first=True, dtype=F64)
    x = torch.randn(4, 9, 3, dtype=F64)  # batch_first: (B, T, I)
    tr = bptt.trace(lstm, x, lambda out, state: out[:, -1].pow(2).sum() + state[1].sum())
    out, (_h, c) = lstm(x)
    g = torch.autograd.grad(out[:, -1].pow(2).sum() + c.sum(), list(lstm.parameters()))
    assert list(tr.grads) == [n for n, _ in lstm.named_parameters()]
    for (name, value), expected in zip(tr.grads.items(), g, strict=True):
        assert rel_err(value, expected) < 1e-10, name
    assert tr.output.shape == (4, 9, 5)  # the model's own layout
    assert tr.h.shape == tr.dh.shape == tr.dc.shape == (2, 9, 4, 5)  # time-major per-step tensors
    assert rel_err(tr.h[-1].transpose(0, 1), out) < 1e-12
    assert set(tr.gates) == set("ifgo") and tr.gates["f"].shape == (2, 9, 4, 5)


@pytest.mark.parametrize("module", [torch.nn.RNN(2, 3), torch.nn.GRU(2, 3)], ids=["rnn", "gru"])
def test_trace_accepts_each_torch_module(module) -> None:
    tr = bptt.trace(module, torch.randn(5, 2), lambda out, h: out.sum())  # unbatched
    assert tr.h.shape == (1, 5, 1, 3)
    assert tr.output.shape == (5, 3)
    assert set(tr.grads) == {n for n, _ in module.named_parameters()}


def test_dh_at_the_last_step_is_the_loss_gradient_there() -> None:
    model = make("lstm", {"variant": "vanilla"})
    x = torch.randn(6, 2, 3, dtype=F64)
    tr = bptt.trace(model, x, lambda out, state: (out[-1] * 3.0).sum())
    assert torch.allclose(tr.dh[0, -1], torch.full((2, 4), 3.0, dtype=F64))
    assert torch.all(tr.contribution_norms() > 0)


def test_a_loss_on_the_bottom_layer_state_leaves_the_top_layer_at_zero() -> None:
    model = make("gru", {}, num_layers=2)
    tr = bptt.trace(model, torch.randn(5, 2, 3, dtype=F64), lambda out, h: h[0].sum())
    assert torch.count_nonzero(tr.dh[1]) == 0
    assert torch.count_nonzero(tr.grads["weight_hh_l1"]) == 0
    assert torch.count_nonzero(tr.grads["weight_hh_l0"]) > 0
    assert tr.contribution_norms()[-1] > 0


@pytest.mark.parametrize("B", [2, 64], ids=["gram", "direct"])
def test_outer_term_norms_in_both_forms(B: int) -> None:
    torch.manual_seed(0)
    u, v = torch.randn(5, B, 3, dtype=F64), torch.randn(5, B, 4, dtype=F64)
    term = Outer(u, v)
    expected = torch.stack([(u[k].T @ v[k]).pow(2).sum() for k in range(5)])
    assert rel_err(term.sq_norms(), expected) < 1e-12
    assert rel_err(term.total(), sum(term.at(k) for k in range(5))) < 1e-12


@pytest.mark.parametrize("B", [2, 64], ids=["gram", "direct"])
def test_outer_term_norms_in_chunks_are_the_norms_in_one(B: int, monkeypatch) -> None:
    """Where (chunk, B, B) products would be too large, the steps go in chunks (here of 2 of 5 steps):
    the same norms as in one chunk, float32 factors squared in float64."""
    from bptt.engine import terms

    torch.manual_seed(0)
    u, v = 1e-25 * torch.randn(5, B, 3), torch.randn(5, B, 4)  # squares below float32's range
    expected = torch.stack([(u[k].double().T @ v[k].double()).pow(2).sum() for k in range(5)])
    whole = Outer(u, v).sq_norms()
    monkeypatch.setattr(terms, "_CHUNK_ELEMENTS", 2 * min(B * B, 12))
    chunked = Outer(u, v).sq_norms()
    assert whole.dtype == chunked.dtype == F64
    assert rel_err(whole, expected) < 1e-12 and rel_err(chunked, expected) < 1e-12


def test_a_group_of_terms_in_chunks_keeps_its_concatenation_in_the_models_dtype(monkeypatch) -> None:
    """W_ih, W_hh and both biases of one u: their [x, h, 1, 1] in float64 where it is small, else in
    float32 (no float64 copy of the whole concatenation; each chunk cast), the same norms either way."""
    from bptt.engine import terms

    torch.manual_seed(0)
    u, x, h = torch.randn(6, 3, 8), torch.randn(6, 3, 2), torch.randn(6, 3, 4)
    parts = [Outer(u, x), Outer(u, h), terms.Sum(u), terms.Sum(u)]
    ud, xd, hd = u.double(), x.double(), h.double()
    expected = torch.stack(
        [
            (ud[k].T @ xd[k]).pow(2).sum() + (ud[k].T @ hd[k]).pow(2).sum() + 2 * ud[k].sum(0).pow(2).sum()
            for k in range(6)
        ]
    )
    assert terms._joined(u, [x, h], 2).dtype == F64
    whole = terms.sq_norms(parts)
    monkeypatch.setattr(terms, "_CHUNK_ELEMENTS", 20)  # 6 · 3 · 8 = 144 elements: two steps a chunk
    assert terms._joined(u, [x, h], 2).dtype == torch.float32
    chunked = terms.sq_norms(parts)
    assert whole.dtype == chunked.dtype == F64
    assert rel_err(whole, expected) < 1e-12 and rel_err(chunked, expected) < 1e-12


def _with_ops(call):
    """call()'s result and the names of the operators it ran (views too), in order."""
    from torch.utils._python_dispatch import TorchDispatchMode

    seen: list[str] = []

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen.append(func.overloadpacket.__name__)
            return func(*args, **(kwargs or {}))

    with Count():
        result = call()
    return result, seen


def test_an_lstm_layers_contribution_norms_take_one_gram_product_a_side() -> None:
    """W_ih, W_hh, b_ih and b_hh share u = ∂L/∂gx_t: their norms come from u uᵀ and the Gram matrix of
    [x_t, h_{t−1}, 1, 1] (one float64 concatenation), contracted in one batched product; no buffer
    to gather chunks in, no separate casts or sums. Against the contributions themselves."""
    torch.manual_seed(0)
    tr = bptt.trace(bptt.LSTM(3, 4), torch.randn(6, 2, 3), lambda out, state: out.pow(2).sum())
    norms, seen = _with_ops(tr.contribution_norms)
    views = {"view", "select", "slice", "transpose", "unsqueeze", "reshape", "_unsafe_view", "alias"}
    expected = ["new_ones", "cat", "_to_copy", "bmm", "bmm", "bmm", "sqrt"]
    assert [op for op in seen if op not in views] == expected
    direct = torch.stack(
        [torch.cat([c.double().flatten() for c in tr.contribution(k).values()]).norm() for k in range(6)]
    )
    assert rel_err(norms, direct) < 1e-6


def _shares(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


@pytest.mark.parametrize("change", ["h", "gate", "dh", "input"])
def test_a_one_layer_trace_is_views_of_its_tape_and_a_change_in_place_raises(change: str) -> None:
    """One layer-direction: h, c, gates, dh and dc are views of the tape (no copies, no stack); a
    clone changes nothing, a change in place of them (or of the input the tape holds) makes every
    reader of the tapes raise instead of reading the changed values."""
    from bptt._checks import InputError

    torch.manual_seed(0)
    model, x = bptt.LSTM(3, 4, dtype=F64), torch.randn(6, 2, 3, dtype=F64)
    tr, seen = _with_ops(lambda: bptt.trace(model, x, weighted_loss))
    assert "stack" not in seen
    tape = tr.tapes[0]
    assert _shares(tr.h, tape.h_buf) and _shares(tr.c, tape.h_buf) and _shares(tr.gates["f"], tape.h_buf)
    assert _shares(tr.dh, tape.dh) and _shares(tr.dc, tape.dh)
    norms = tr.contribution_norms()
    tr.h.clone().mul_(2)  # a clone: nothing changes
    assert torch.equal(tr.contribution_norms(), norms)
    target = {"h": tr.h, "gate": tr.gates["f"], "dh": tr.dh, "input": x}[change]
    target.mul_(2)
    for reader in (
        tr.contribution_norms,
        lambda: tr.contribution(0),
        lambda: tr.layer(0),
        lambda: tr.dx,
        lambda: jacobian_norms(tr),
    ):
        with pytest.raises(InputError, match=r"changed in place.*clone"):
            reader()


def test_a_trace_of_two_layers_copies_its_tensors_and_still_guards_its_input() -> None:
    """Two layers: (L, T, B, ·) copies, which a user may change; the input the first tape holds
    is still guarded."""
    from bptt._checks import InputError

    torch.manual_seed(0)
    model, x = bptt.GRU(3, 4, num_layers=2, dtype=F64), torch.randn(5, 2, 3, dtype=F64)
    tr = bptt.trace(model, x, weighted_loss)
    assert not any(_shares(tr.h, t.h_buf) or _shares(tr.dh, t.dh) for t in tr.tapes)
    norms = tr.contribution_norms()
    tr.h.mul_(2)
    tr.gates["r"].zero_()
    assert torch.equal(tr.contribution_norms(), norms)
    x.add_(1)
    with pytest.raises(InputError, match="changed in place"):
        tr.contribution_norms()


def test_negative_step_index_counts_from_the_end() -> None:
    tr = bptt.trace(make("rnn", {}), torch.randn(4, 2, 3, dtype=F64), lambda out, h: out.sum())
    last, also_last = tr.contribution(3), tr.contribution(-1)
    assert all(torch.equal(last[n], also_last[n]) for n in last)


def _packed_batch() -> tuple[bptt.LSTM, torch.Tensor, torch.Tensor, PackedSequence]:
    torch.manual_seed(0)
    model = bptt.LSTM(2, 5, dtype=torch.float64)
    x, lengths = torch.randn(7, 3, 2, dtype=torch.float64), torch.tensor([7, 4, 6])
    return model, x, lengths, pack_padded_sequence(x, lengths, enforce_sorted=False)


def test_trace_of_a_packed_batch_keeps_each_sequence_length() -> None:
    model, x, lengths, packed = _packed_batch()
    tr = bptt.trace(model, packed, lambda out, state: state[0].sum())
    assert torch.equal(tr.lengths, lengths) and tr.output.shape == (7, 3, 5)  # padded, in the given order
    _, (h_n, _) = model(packed)
    h_n.sum().backward()
    for n, p in model.named_parameters():
        assert rel_err(tr.grads[n], p.grad) < 1e-12, n
    norms = jacobian_norms(tr)  # each sequence's products from its own last step
    for b, L in enumerate(lengths.tolist()):
        alone = bptt.trace(model, x[:L, b : b + 1], lambda out, state: state[0].sum())
        assert torch.allclose(norms[b, :L], jacobian_norms(alone)[0], rtol=1e-12, atol=0)
        assert bool(norms[b, L:].isnan().all())


def test_watch_of_a_packed_batch_keeps_each_sequence_length() -> None:
    model, _, lengths, packed = _packed_batch()
    with bptt.watch(model) as w:
        _, (h_n, _) = model(packed)
        h_n.sum().backward()
    tr = bptt.trace(model, packed, lambda out, state: state[0].sum())
    assert torch.equal(w.trace.lengths, lengths)
    assert torch.equal(w.trace.output, tr.output) and torch.equal(w.trace.dh, tr.dh)
