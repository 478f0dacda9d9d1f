"""sLSTM, minGRU, minLSTM and LRU: explicit backward = autograd = finite differences = the published code."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.nn.utils.rnn import pack_sequence, pad_packed_sequence

import bptt
from bptt import cli
from bptt.cells import parallel_scan
from bptt.diagnostics import jacobian_norms, lyapunov
from bptt.engine import unrolled
from bptt.tasks import TASKS
from bptt.training import load_summary

from helpers import explicit_backward_passes_gradcheck, rel_err, weighted_loss
from reference import unroll_successor

F64 = torch.float64

CELLS = [
    ("slstm", {}),
    ("slstm", {"forget_gate": "exp"}),
    ("mingru", {}),
    ("mingru", {"candidate": "g"}),
    ("minlstm", {}),
    ("minlstm", {"candidate": "g"}),
    ("lru", {}),
]
IDS = [f"{k}-{'-'.join(str(v) for v in cfg.values())}" if cfg else k for k, cfg in CELLS]
MODULES = {"slstm": bptt.sLSTM, "mingru": bptt.MinGRU, "minlstm": bptt.MinLSTM, "lru": bptt.LRU}
SHAPES = {"one_layer": dict(num_layers=1), "two_layers_bidirectional": dict(num_layers=2, bidirectional=True)}


def make(kind: str, cfg: dict, input_size: int = 3, hidden_size: int = 4, **kw) -> bptt.cells.RecurrentBase:
    if kind == "lru":
        kw.setdefault("state_size", 3)
        kw.setdefault("r_min", 0.5)
    return MODULES[kind](input_size, hidden_size, dtype=F64, **cfg, **kw)


def random_state(model, B: int, zero: bool = False):
    """A random initial state (the sLSTM's normaliser positive); or the zero state."""
    LD = model.num_layers * model.num_directions
    H = model.hidden_size
    h0 = torch.randn(LD, B, H, dtype=F64)
    if not model.step.has_cell:
        return h0 * (not zero)
    if zero:
        return torch.zeros(LD, B, H, dtype=F64), torch.zeros(LD, B, model.cell_size, dtype=F64)
    c0 = torch.randn(LD, B, model.cell_size, dtype=F64)
    if isinstance(model, bptt.sLSTM):
        c0[..., H : 2 * H] = 1 + torch.rand(LD, B, H, dtype=F64)  # n_0 > 0
    return h0, c0


def reference(model, kind: str, cfg: dict, x, hx) -> dict:
    cfg = {k: v for k, v in cfg.items() if k in ("forget_gate", "candidate")}
    return unroll_successor(
        kind, dict(model.named_parameters()), x, hx, model.num_layers, model.bidirectional, **cfg
    )


@pytest.mark.parametrize("zero", [False, True], ids=["random_state", "zero_state"])
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize(("kind", "cfg"), CELLS, ids=IDS)
def test_explicit_backward_equals_autograd_of_reference(kind: str, cfg: dict, shape: str, zero: bool) -> None:
    torch.manual_seed(0)
    model = make(kind, cfg, **SHAPES[shape])
    with torch.no_grad():  # larger weights than the default make every path matter
        for name, p in model.named_parameters():
            if name.startswith(("weight", "bias")):
                p.mul_(2.0)
    x = torch.randn(6, 3, 3, dtype=F64, requires_grad=True)
    hx = random_state(model, 3, zero)
    leaves = [h.requires_grad_(True) for h in (hx if isinstance(hx, tuple) else (hx,))]
    out, state = model(x, hx)
    ref = reference(model, kind, cfg, x, hx)
    ref_state = (ref["h_n"], ref["c_n"]) if model.step.has_cell else ref["h_n"]
    assert rel_err(out, ref["output"]) < 1e-12
    wrt = [x, *leaves, *model.parameters()]
    g = torch.autograd.grad(weighted_loss(out, state), wrt, allow_unused=True)
    g_ref = torch.autograd.grad(weighted_loss(ref["output"], ref_state), wrt, allow_unused=True)
    g = [torch.zeros_like(w) if a is None else a for a, w in zip(g, wrt, strict=True)]
    g_ref = [
        torch.zeros_like(w) if b is None else b for b, w in zip(g_ref, wrt, strict=True)
    ]  # LRU: h_0 unread
    names = ["x"] + [f"hx{k}" for k in range(len(leaves))] + [n for n, _ in model.named_parameters()]
    for name, a, b in zip(names, g, g_ref, strict=True):
        assert rel_err(a, b) < 1e-10, name


@pytest.mark.parametrize(("kind", "cfg"), CELLS, ids=IDS)
def test_explicit_backward_equals_finite_differences(kind: str, cfg: dict) -> None:
    torch.manual_seed(1)
    model = make(kind, cfg, input_size=2, hidden_size=3, num_layers=2, bidirectional=True)
    x = torch.randn(3, 2, 2, dtype=F64)
    # central differences in float64 against the analytic (explicit) gradient of every input
    assert explicit_backward_passes_gradcheck(model, x, random_state(model, 2))


@pytest.mark.parametrize(("kind", "cfg"), CELLS, ids=IDS)
def test_trace_totals_and_contributions(kind: str, cfg: dict) -> None:
    """tr.dh, tr.dc = autograd's ∂L/∂h_t, ∂L/∂c_t of the reference; Σ_k contributions = the gradient."""
    torch.manual_seed(2)
    model = make(kind, cfg, num_layers=2, bidirectional=True)
    x = torch.randn(7, 3, 3, dtype=F64)
    hx = random_state(model, 3)
    tr = bptt.trace(model, x, weighted_loss, hx=hx)
    ref = reference(model, kind, cfg, x, hx)
    ref_state = (ref["h_n"], ref["c_n"]) if model.step.has_cell else ref["h_n"]
    loss = weighted_loss(ref["output"], ref_state)
    states = [h for layer in ref["h"] for h in layer]
    if model.step.has_cell:
        states += [c for layer in ref["c"] for c in layer]
    grads = torch.autograd.grad(loss, states, retain_graph=True)
    T, LD = x.shape[0], len(ref["h"])
    dh = torch.stack([torch.stack(grads[k * T : (k + 1) * T]) for k in range(LD)])
    assert rel_err(tr.dh, dh) < 1e-10
    if model.step.has_cell:
        rest = grads[LD * T :]
        dc = torch.stack([torch.stack(rest[k * T : (k + 1) * T]) for k in range(LD)])
        assert rel_err(tr.dc, dc) < 1e-10
    params = dict(model.named_parameters())
    g_ref = dict(zip(params, torch.autograd.grad(loss, list(params.values())), strict=True))
    total = {name: torch.zeros_like(g) for name, g in tr.grads.items()}
    for k in range(tr.steps):
        for name, value in tr.contribution(k).items():
            total[name] += value
    for name, g in tr.grads.items():
        assert rel_err(g, g_ref[name]) < 1e-10, name
        assert rel_err(total[name], g) < 1e-12, name
    direct = torch.stack(
        [torch.cat([v.flatten() for v in tr.contribution(k).values()]).norm() for k in range(tr.steps)]
    )
    assert rel_err(tr.contribution_norms(), direct) < 1e-12
    for name, gate in tr.gates.items():
        ref_gate = torch.stack([torch.stack([g[name] for g in layer]) for layer in ref["gates"]])
        assert rel_err(gate, ref_gate) < 1e-12, name


def test_slstm_stabiliser_leaves_h_unchanged() -> None:
    """h_t equals the unstabilised sLSTM's, i_t = exp(ĩ_t), f_t = σ(f̃_t), c and n without m."""
    torch.manual_seed(3)
    model = make("slstm", {})
    x = torch.randn(20, 2, 3, dtype=F64)
    out, (_, cnm) = model(x)
    P = {n[:-3]: p.detach() for n, p in model.named_parameters()}
    h = c = n = torch.zeros(2, 4, dtype=F64)
    outs = []
    for t in range(20):
        pre = x[t] @ P["weight_ih"].T + P["bias_ih"] + h @ P["weight_hh"].T + P["bias_hh"]
        i, f, z, o = pre.split(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.exp(i) * torch.tanh(z)
        n = torch.sigmoid(f) * n + torch.exp(i)
        h = torch.sigmoid(o) * c / n
        outs.append(h)
    assert rel_err(out, torch.stack(outs)) < 1e-12
    assert bool((cnm[..., 4:8] >= 1 - 1e-12).all())  # the stabilised normaliser never falls below 1


def test_slstm_does_not_overflow_where_the_unstabilised_cell_would() -> None:
    model = make("slstm", {})
    with torch.no_grad():
        model.bias_ih_l0[:4] = 800.0  # exp(800) overflows float64
    x = torch.randn(30, 2, 3, dtype=F64)
    out, _ = model(x)
    out.sum().backward()
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("kind", ["mingru", "minlstm"])
def test_parallel_scan_equals_the_sweep(kind: str) -> None:
    torch.manual_seed(4)
    model = make(kind, {})
    x = torch.randn(50, 3, 3, dtype=F64)
    h0 = torch.randn(1, 3, 4, dtype=F64)
    out, _ = model(x, h0)
    a = x @ model.weight_ih_l0.detach().T + model.bias_ih_l0.detach()
    H = 4
    if kind == "mingru":
        z = torch.sigmoid(a[..., :H])
        log_a, b = torch.log1p(-z), z * a[..., H:]
    else:
        f, i = torch.sigmoid(a[..., :H]), torch.sigmoid(a[..., H : 2 * H])
        log_a, b = torch.log(f / (f + i)), i / (f + i) * a[..., 2 * H :]
    assert rel_err(parallel_scan(log_a, b, h0[0]), out) < 1e-10


# -- second derivatives, packed sequences and autocast -----------------------------------------------


def _states(state) -> tuple:
    return state if isinstance(state, tuple) else (state,)


def _second_order_loss(out, state) -> torch.Tensor:
    """A loss with curvature in the output besides the model's own: weighted sums and a square."""
    return weighted_loss(out, state) + 0.5 * out.pow(2).sum()


def _penalty_grads(loss: torch.Tensor, wrt: list) -> list:
    """∂/∂w ‖∂loss/∂w‖² for every w: a gradient penalty differentiated once more (create_graph=True)."""
    grads = torch.autograd.grad(loss, wrt, create_graph=True, allow_unused=True)
    penalty = sum(g.pow(2).sum() for g in grads if g is not None)
    found = torch.autograd.grad(penalty, wrt, allow_unused=True)
    return [torch.zeros_like(w) if g is None else g for g, w in zip(found, wrt, strict=True)]


@pytest.mark.parametrize(("kind", "cfg"), CELLS, ids=IDS)
def test_cell_unrolled_equals_the_sweep(kind: str, cfg: dict) -> None:
    """engine/unrolled.py over the step's `cell` gives the explicit sweep's outputs and final states."""
    torch.manual_seed(10)
    model = make(kind, cfg, bidirectional=True)
    x = torch.randn(5, 2, 3, dtype=F64)
    hx = random_state(model, 2)
    h0, c0 = hx if isinstance(hx, tuple) else (hx, None)
    out, state = model(x, hx)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for k, plan in enumerate(model.plans):
            p = {s: params[n] for s, n in zip(plan.suffixes, plan.names, strict=True)}
            c0_k = None if c0 is None else c0[k]
            o, h_n, c_n = unrolled.layer(plan.step, x, h0[k], c0_k, p, plan.reverse)
            H = model.hidden_size
            assert rel_err(o, out[..., k * H : (k + 1) * H]) < 1e-12
            assert rel_err(h_n, _states(state)[0][k]) < 1e-12
            assert (c_n is None) == (c0 is None)
            if c_n is not None:
                assert rel_err(c_n, state[1][k]) < 1e-12


@pytest.mark.parametrize(("kind", "cfg"), CELLS, ids=IDS)
def test_gradient_penalty_equals_the_reference(kind: str, cfg: dict) -> None:
    """create_graph=True runs the layer's `cell` out of place: its second derivative is the reference's."""
    torch.manual_seed(11)
    model = make(kind, cfg, input_size=2, hidden_size=3, num_layers=2, bidirectional=True)
    x = torch.randn(4, 2, 2, dtype=F64, requires_grad=True)
    hx = random_state(model, 2)
    leaves = [h.requires_grad_(True) for h in _states(hx)]
    wrt = [x, *leaves, *model.parameters()]
    out, state = model(x, hx)
    ours = _penalty_grads(_second_order_loss(out, state), wrt)
    ref = reference(model, kind, cfg, x, hx)
    ref_state = (ref["h_n"], ref["c_n"]) if model.step.has_cell else ref["h_n"]
    expected = _penalty_grads(_second_order_loss(ref["output"], ref_state), wrt)
    names = ["x"] + [f"hx{k}" for k in range(len(leaves))] + [n for n, _ in model.named_parameters()]
    for name, a, b in zip(names, ours, expected, strict=True):
        assert rel_err(a, b) < 1e-10, name


def test_slstm_gradient_penalty_from_the_zero_state_equals_the_reference() -> None:
    """The empty normaliser (n_0 = 0: f'_1 = 0, m_1 = ĩ_1) on the second-derivative path too."""
    torch.manual_seed(12)
    model = make("slstm", {}, input_size=2, hidden_size=3)
    x = torch.randn(4, 2, 2, dtype=F64, requires_grad=True)
    hx = random_state(model, 2, zero=True)
    wrt = [x, *model.parameters()]
    ours = _penalty_grads(_second_order_loss(*model(x, hx)), wrt)
    ref = reference(model, "slstm", {}, x, hx)
    expected = _penalty_grads(_second_order_loss(ref["output"], (ref["h_n"], ref["c_n"])), wrt)
    for a, b in zip(ours, expected, strict=True):
        assert rel_err(a, b) < 1e-10


def _packed_case(model):
    """Three sequences of 3, 5 and 1 steps, unsorted, and a random initial state for each."""
    seqs = [torch.randn(n, model.input_size, dtype=F64) for n in (3, 5, 1)]
    return seqs, random_state(model, len(seqs))


def _sequence_state(hx, b: int):
    return tuple(h[:, b : b + 1] for h in hx) if isinstance(hx, tuple) else hx[:, b : b + 1]


@pytest.mark.parametrize(("kind", "cfg"), CELLS, ids=IDS)
def test_packed_equals_each_sequence_on_its_own(kind: str, cfg: dict) -> None:
    """Outputs, final states and parameter gradients of a packed batch = those of each sequence alone."""
    torch.manual_seed(13)
    model = make(kind, cfg, input_size=2, hidden_size=3, num_layers=2, bidirectional=True)
    seqs, hx = _packed_case(model)
    out, state = model(pack_sequence(seqs, enforce_sorted=False), hx)
    padded, lengths = pad_packed_sequence(out)
    assert lengths.tolist() == [3, 5, 1]
    params = list(model.parameters())
    loss = padded.sin().sum() + sum(s.pow(2).sum() for s in _states(state))
    grads = torch.autograd.grad(loss, params)
    total = [torch.zeros_like(p) for p in params]
    for b, seq in enumerate(seqs):
        alone, alone_state = model(seq.unsqueeze(1), _sequence_state(hx, b))
        assert rel_err(padded[: len(seq), b], alone[:, 0]) < 1e-12
        for s, s1 in zip(_states(state), _states(alone_state), strict=True):
            assert rel_err(s[:, b], s1[:, 0]) < 1e-12
        loss_b = alone.sin().sum() + sum(s.pow(2).sum() for s in _states(alone_state))
        for acc, g in zip(total, torch.autograd.grad(loss_b, params), strict=True):
            acc += g
    for (name, _), a, b in zip(model.named_parameters(), grads, total, strict=True):
        assert rel_err(a, b) < 1e-10, name


@pytest.mark.parametrize(("kind", "cfg"), CELLS, ids=IDS)
def test_packed_hessian_vector_product_is_the_sum_over_sequences(kind: str, cfg: dict) -> None:
    """The second-derivative path holds ended sequences too: Hv of a packed loss = Σ over sequences alone."""
    torch.manual_seed(14)
    model = make(kind, cfg, input_size=2, hidden_size=3, bidirectional=True)
    seqs, hx = _packed_case(model)
    params = list(model.parameters())
    v = [torch.randn_like(p) for p in params]

    def hvp(out, state) -> list:
        loss = out.sin().sum() + sum(s.pow(2).sum() for s in _states(state))
        grads = torch.autograd.grad(loss, params, create_graph=True)
        dot = sum((g * u).sum() for g, u in zip(grads, v, strict=True))
        return list(torch.autograd.grad(dot, params))

    out, state = model(pack_sequence(seqs, enforce_sorted=False), hx)
    packed = hvp(out.data, state)
    total = [torch.zeros_like(p) for p in params]
    for b, seq in enumerate(seqs):
        for acc, h in zip(total, hvp(*model(seq.unsqueeze(1), _sequence_state(hx, b))), strict=True):
            acc += h
    for (name, _), a, b in zip(model.named_parameters(), packed, total, strict=True):
        assert rel_err(a, b) < 1e-10, name


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kind", list(MODULES))
def test_autocast_runs_in_the_autocast_dtype(kind: str, dtype: torch.dtype) -> None:
    """As bptt.LSTM under autocast (test_dropin.py): the layers run in the autocast dtype, close to
    float32; the parameters stay float32 and get float32 gradients."""
    torch.manual_seed(15)
    model = make(kind, {}).float()
    x = torch.randn(6, 2, 3)
    full = model(x)[0]
    with torch.autocast("cpu", dtype=dtype):
        out, state = model(x)
        low_input, _ = model(x.to(dtype))
    assert out.dtype == dtype and all(s.dtype == dtype for s in _states(state))
    assert torch.equal(out, low_input)
    assert rel_err(out.float(), full) < (0.05 if dtype == torch.bfloat16 else 0.005)
    out.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


# -- the instruments on the new cells ----------------------------------------------------------------


def test_mingru_jacobian_is_the_product_of_one_minus_z() -> None:
    torch.manual_seed(5)
    model = make("mingru", {})
    tr = bptt.trace(model, torch.randn(40, 2, 3, dtype=F64), lambda out, h: out[-1].sum())
    z = tr.gates["z"][0]  # (T, B, H)
    log_keep = torch.log1p(-z).flip(0).cumsum(0).flip(0)  # Σ_{s ≥ k} log(1 − z_s)
    closed = torch.cat([log_keep[1:], torch.zeros_like(log_keep[:1])]).amax(-1).exp().T  # (B, T)
    assert rel_err(jacobian_norms(tr), closed) < 1e-10
    assert (
        rel_err(jacobian_norms(tr, of="state"), jacobian_norms(tr, "state", method="probes", probes=4))
        < 1e-10
    )


def test_lru_state_jacobian_is_the_eigenvalue_power() -> None:
    torch.manual_seed(6)
    model = make("lru", {}, r_min=0.8, r_max=0.99)
    T = 60
    tr = bptt.trace(model, torch.randn(T, 2, 3, dtype=F64), lambda out, s: out[-1].sum())
    modulus = torch.exp(-torch.exp(model.nu_log_l0.detach()))
    distance = torch.arange(T - 1, -1, -1, dtype=F64)
    closed = modulus.max() ** distance
    measured = jacobian_norms(tr, of="c")
    assert rel_err(measured, closed.expand_as(measured)) < 1e-10
    cec = jacobian_norms(tr, of="cec")  # the carry path alone: ∏ |λ|, the same here
    assert rel_err(cec, closed.expand_as(cec)) < 1e-10
    spectrum = lyapunov(tr, k=6, burn_in=10, compare=False)
    # each complex eigenvalue rotates a pair of coordinates: the pair's exponents sum to 2 log|λ_j|
    assert float(spectrum.mean.sum()) == pytest.approx(2 * float(modulus.log().sum()), rel=1e-2)
    assert spectrum.max == pytest.approx(float(modulus.log().max()), abs=5e-3)


def test_slstm_carry_split_and_spectra_run() -> None:
    from bptt.diagnostics import forget_split

    torch.manual_seed(7)
    model = make("slstm", {})
    tr = bptt.trace(model, torch.randn(12, 2, 3, dtype=F64), lambda out, s: out[-1].sum())
    split = forget_split(tr)
    assert torch.isfinite(split.total[:, 1:]).all() and bool((split.remainder[:, 1:] > 0).all())
    with torch.no_grad():
        model.weight_hh_l0.zero_()
    tr = bptt.trace(model, torch.randn(12, 2, 3, dtype=F64), lambda out, s: out[-1].sum())
    split = forget_split(tr)
    assert float(split.remainder[:, 1:].abs().max()) < 1e-12  # no path through h without W_hh
    assert rel_err(split.forget[:, 1:], split.total[:, 1:]) < 1e-12
    spec = lyapunov(tr, compare=True)
    assert spec.exponents.shape == (2, 4 * 4) and math.isfinite(spec.max)


# -- the published reference code, weights copied --------------------------------------------------


def test_slstm_equals_xlstm_vanilla_backend() -> None:
    cell_mod = pytest.importorskip("xlstm.blocks.slstm.cell")
    torch.manual_seed(8)
    H, heads, I, T, B = 8, 2, 3, 12, 4
    cfg = cell_mod.sLSTMCellConfig(
        hidden_size=H,
        num_heads=heads,
        backend="vanilla",
        dtype="float32",
        bias_init="standard",
        recurrent_weight_init="standard",
        input_shape="SBGNH",
        output_shape="SBH",
        enable_automatic_mixed_precision=False,
    )
    ref = cell_mod.sLSTMCell(cfg).double()
    ours = bptt.sLSTM(I, H, dtype=F64)
    with torch.no_grad():
        R = ref.recurrent_kernel  # (heads, head_dim in, gates, head_dim out)
        d = H // heads
        ours.weight_hh_l0.zero_()
        for k in range(heads):
            for g in range(4):
                ours.weight_hh_l0[g * H + k * d : g * H + (k + 1) * d, k * d : (k + 1) * d] = R[k, :, g, :].T
        ours.bias_ih_l0.copy_(ref.bias[:].permute(1, 0, 2).reshape(-1))  # (heads, gates, d) → gate-major
        ours.bias_hh_l0.zero_()
    x = torch.randn(T, B, I, dtype=F64)
    wx = x @ ours.weight_ih_l0.detach().T  # the cell's input: W x_t, gate-major (gates, heads, d)
    out_ref, state_ref = ref(wx)
    out, (_, c_n) = ours(x)
    assert rel_err(out, out_ref) < 1e-12
    assert (
        rel_err(c_n[0, :, :H], state_ref[1]) < 1e-12 and rel_err(c_n[0, :, H : 2 * H], state_ref[2]) < 1e-12
    )


@pytest.mark.parametrize("kind", ["mingru", "minlstm"])
def test_equals_mingru_pytorch_parallel_and_sequential(kind: str) -> None:
    if kind == "mingru":
        ref = pytest.importorskip("minGRU_pytorch.minGRU").minGRU
    else:
        ref = pytest.importorskip("minGRU_pytorch.minLSTM").minLSTM
    torch.manual_seed(9)
    D, T, B = 6, 15, 3
    ref = ref(D).double()
    ours = make(kind, {"candidate": "g"}, input_size=D, hidden_size=D, bias=False)
    W = next(ref.parameters()).detach()
    with (
        torch.no_grad()
    ):  # theirs: rows [hidden; gate] (minGRU) or [hidden; f; i] (minLSTM); ours: [z; n], [f; i; n]
        ours.weight_ih_l0.copy_(torch.cat([W[D:], W[:D]]))
    x = torch.randn(B, T, D, dtype=F64)  # theirs is batch-first
    out, _ = ours(x.transpose(0, 1))
    assert rel_err(out.transpose(0, 1), ref(x)) < 1e-10  # their parallel (log-space) scan
    h = None
    for t in range(T):  # their sequential form, one step at a time
        step, h = ref(x[:, t : t + 1], h, return_next_prev_hidden=True)
        assert rel_err(out[t], step[:, 0]) < 1e-12


def test_lru_equals_lru_pytorch() -> None:
    pkg = pytest.importorskip("LRU_pytorch")
    torch.manual_seed(10)
    I, H, N, T = 3, 4, 5, 9
    ref = pkg.LRU(I, H, N, rmin=0.5, rmax=0.95)
    ours = bptt.LRU(I, H, state_size=N)
    with torch.no_grad():
        ours.weight_ih_l0.copy_(torch.cat([ref.B.real, ref.B.imag, ref.D]))
        ours.weight_hc_l0.copy_(torch.cat([ref.C.real, ref.C.imag], 1))
        for name in ("nu_log", "theta_log", "gamma_log"):
            getattr(ours, f"{name}_l0").copy_(getattr(ref, name))
    u = torch.randn(T, I)
    out, _ = ours(u[:, None])
    assert rel_err(out[:, 0], ref(u)) < 1e-5  # both float32


# -- bench and theory -----------------------------------------------------------------------------


def test_bench_successors_rows_agree_with_their_references(tmp_path) -> None:
    from bptt import bench_successors

    rows = bench_successors.run(shapes=((2, 6, 4),), repeats=1, warmup=0)
    assert {r.cell for r in rows} == {"slstm", "mingru", "minlstm", "lru"}
    assert any("parallel" in r.reference for r in rows if r.cell == "mingru")
    for r in rows:
        assert r.max_rel_err < 1e-4, (r.cell, r.reference)
        assert (
            r.ours_ms > 0
            and r.reference_ms > 0
            and r.ratio == pytest.approx(r.ours_ms / r.reference_ms, rel=0.5)
        )
    path = tmp_path / "b.json"
    assert (
        cli.main(
            [
                "bench",
                "--successors",
                "--no-watch",
                "--shapes",
                "2x5x4x4",
                "--repeats",
                "1",
                "--warmup",
                "0",
                "--json",
                str(path),
            ]
        )
        == 0
    )
    assert path.exists() and '"successors"' in path.read_text()


def test_theory_has_the_successors_closed_forms() -> None:
    from bptt import theory

    claims = {c.name: c for c in theory.claims()}
    for name in ("LRU: the state Jacobian over 200 steps", "minGRU: the carry over 100 steps"):
        assert claims[name].holds, name
    slstm = [c for c in claims.values() if c.name.startswith("sLSTM: the normalised carry")]
    assert len(slstm) == 1 and slstm[0].holds and 0 < slstm[0].closed_form < 1


# -- training on every task -------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["slstm", "mingru", "minlstm", "lru"])
@pytest.mark.parametrize("task", list(TASKS))
def test_dry_run_of_every_task(task: str, cell: str, tmp_path) -> None:
    assert cli.main(["train", "--dry-run", "--task", task, "--cell", cell, "--out", str(tmp_path)]) == 0
    summary = load_summary(tmp_path)
    assert summary["task"] == task and summary["steps"] == 2 and math.isfinite(summary["test_loss"])
    final = json.loads((tmp_path / "final_diagnostics.json").read_text())
    assert final  # the final trace and its diagnostics ran on the new cell


def test_the_torch_bench_has_rows_for_the_successors() -> None:
    from bptt import bench

    cfg = bench.BenchConfig(
        cells=("slstm", "mingru", "lru"),
        shapes=((2, 5, 3, 4),),
        repeats=1,
        warmup=0,
        trace=False,
        contributions=False,
        watch=False,
    )
    rows = bench.run(cfg).rows
    assert [r.cell for r in rows] == ["slstm", "mingru", "lru"]
    assert rows[0].floor_ms is not None and rows[1].floor_ms is None and rows[2].floor_ms is None  # no W_hh
    assert all(r.max_rel_err < 1e-4 and r.check == "pytorch loop float64" for r in rows)
