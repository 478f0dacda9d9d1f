"""Diagnostics against independent references: autograd Jacobians, closed forms, constructed weights."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd.functional import jacobian

import bptt
from bptt._checks import InputError
from bptt.diagnostics import (
    bounds,
    decay_slope,
    distances,
    forget_split,
    gate_stats,
    gradient_profile,
    horizon,
    jacobian_norms,
    lyapunov,
    probe_confidence,
    step_jacobian,
)

from reference import gru_step, lstm_step, rnn_step

F64 = torch.float64


def layer_params(model, layer: int = 0, reverse: bool = False) -> dict:
    suffix = f"_l{layer}" + ("_reverse" if reverse else "")
    return {n[: -len(suffix)]: p.detach() for n, p in model.named_parameters() if n.endswith(suffix)}


def reference_step(kind: str, cfg: dict):
    """s_t = F(s_{t−1}, x_t) on concatenated state vectors, from the independent reference steps."""

    def F(P, s, x):
        if kind == "rnn":
            return rnn_step(P, x, (s,), cfg.get("nonlinearity", "tanh"))[0][0]
        if kind == "gru":
            return gru_step(P, x, (s,))[0][0]
        Hp = P["weight_hh"].shape[1]
        H = (s.shape[-1] - Hp) if cfg.get("variant") != "fgr" else (s.shape[-1] - Hp) // 4
        h, c = s[..., :Hp], s[..., Hp : Hp + H]
        prev = (
            {
                "i": s[..., Hp + H : Hp + 2 * H],
                "f": s[..., Hp + 2 * H : Hp + 3 * H],
                "o": s[..., Hp + 3 * H :],
            }
            if cfg.get("variant") == "fgr"
            else {g: torch.zeros_like(c) for g in "ifo"}
        )
        (h2, c2, a), _ = lstm_step(P, x, (h, c, prev), cfg.get("variant", "vanilla"))
        parts = [h2, c2] + ([a["i"], a["f"], a["o"]] if cfg.get("variant") == "fgr" else [])
        return torch.cat(parts, -1)

    return F


def reference_norms(
    kind: str, cfg: dict, model, x: torch.Tensor, tr, of: str, reverse: bool = False
) -> torch.Tensor:
    """(B, T) ‖∂s_last/∂s_k‖ by autograd Jacobians of the unrolled reference, one sample and k at a time."""
    step, tape, _ = tr.layer(0, int(reverse))
    P = layer_params(model, 0, reverse)
    F = reference_step(kind, cfg)
    T, B = x.shape[:2]
    order = list(range(T - 1, -1, -1)) if reverse else list(range(T))
    # the state after each step, as the forward pass left it, as one vector per sample
    parts = [tape.h]
    if step.has_cell:
        parts.append(tape.c)
        if cfg.get("variant") == "fgr":
            parts.extend(
                tape.gates[
                    ..., [*range(0, 2 * tape.hidden_size), *range(3 * tape.hidden_size, 4 * tape.hidden_size)]
                ].split(tape.hidden_size, -1)
            )
    states = torch.cat(parts, -1)  # (T, B, S)
    Hp = tape.h.shape[-1]
    span = {"state": slice(None), "h": slice(0, Hp), "c": slice(Hp, Hp + tape.hidden_size)}[of]
    out = torch.empty(B, T, dtype=F64)
    for b in range(B):
        for idx, k in enumerate(order):

            def unrolled(s, b=b, idx=idx):
                for t in order[idx + 1 :]:
                    s = F(P, s, x[t, b])
                return s

            J = jacobian(unrolled, states[k, b].clone())
            out[b, k] = torch.linalg.matrix_norm(J[span, span], ord=2)
    return out


CASES = [
    ("rnn", {"nonlinearity": "tanh"}),
    ("rnn", {"nonlinearity": "relu"}),
    ("gru", {}),
    ("lstm", {"variant": "vanilla"}),
    ("lstm", {"variant": "peephole"}),
    ("lstm", {"variant": "cifg"}),
    ("lstm", {"variant": "fgr"}),
    ("lstm", {"variant": "vanilla", "proj_size": 2}),
]
IDS = [f"{k}-{'-'.join(str(v) for v in c.values())}" for k, c in CASES]


def make(kind: str, cfg: dict, seed: int = 0, **kw):
    torch.manual_seed(seed)
    cls = {"rnn": bptt.RNN, "gru": bptt.GRU, "lstm": bptt.LSTM}[kind]
    model = cls(2, 3, dtype=F64, **cfg, **kw)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)  # away from the trivial regime
    return model


@pytest.mark.parametrize(("kind", "cfg"), CASES, ids=IDS)
def test_jacobian_norms_equal_autograd_jacobians_of_the_unrolled_recurrence(kind, cfg) -> None:
    model = make(kind, cfg)
    x = torch.randn(7, 2, 2, dtype=F64)
    tr = bptt.trace(model, x, lambda out, s: out.sum())
    for of in ("state", "h", "c") if kind == "lstm" else ("state",):
        ours = jacobian_norms(tr, of=of)
        expected = reference_norms(kind, cfg, model, x, tr, of)
        assert torch.allclose(ours, expected, rtol=1e-9, atol=1e-12), of


def test_jacobian_norms_of_the_reverse_direction() -> None:
    model = make("gru", {}, bidirectional=True)
    x = torch.randn(6, 2, 2, dtype=F64)
    tr = bptt.trace(model, x, lambda out, s: out.sum())
    ours = jacobian_norms(tr, direction=1)
    assert torch.allclose(ours, reference_norms("gru", {}, model, x, tr, "state", reverse=True), rtol=1e-9)
    assert torch.equal(ours[:, 0], torch.ones(2, dtype=F64))  # the reverse direction ends at t = 0


def test_step_jacobian_of_an_elman_rnn_is_diag_a_prime_w() -> None:
    model = make("rnn", {"nonlinearity": "tanh"})
    tr = bptt.trace(model, torch.randn(5, 2, 2, dtype=F64), lambda out, s: out.sum())
    J = step_jacobian(tr, 3)
    expected = (1 - tr.h[0, 3] ** 2)[:, :, None] * model.weight_hh_l0.detach()
    assert torch.allclose(J, expected, rtol=1e-12)


def test_long_products_neither_underflow_nor_overflow() -> None:
    model = bptt.RNN(1, 4, nonlinearity="linear", bias=False, dtype=F64)
    with torch.no_grad():
        model.weight_hh_l0.copy_(0.01 * torch.eye(4, dtype=F64))  # ‖P_k‖ = 0.01^(T−1−k), down to 1e−598
    tr = bptt.trace(model, torch.randn(300, 1, 1, dtype=F64), lambda out, s: out.sum())
    logs = jacobian_norms(tr, log=True)
    d = distances(tr.tapes[0])
    assert torch.allclose(logs[0], d * math.log(0.01), rtol=1e-12)
    assert decay_slope(logs, d) == pytest.approx(math.log(0.01), rel=1e-12)
    norms = jacobian_norms(tr)
    assert float(norms[0, 299 - 150]) == pytest.approx(1e-300, rel=1e-10)
    assert float(norms[0, 0]) == 0.0  # 1e−598 underflows as a norm, not as a log


def test_cec_is_the_product_of_forget_gates_and_the_closed_form() -> None:
    b, T = 3.0, 60
    model = bptt.LSTM(1, 2, dtype=F64)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.bias_ih_l0[2:4] = b  # forget-gate bias; every weight zero: f_t = σ(b)
    tr = bptt.trace(model, torch.randn(T, 3, 1, dtype=F64), lambda out, s: out.sum())
    cec = jacobian_norms(tr, of="cec")
    d = distances(tr.tapes[0])
    assert torch.allclose(cec, torch.sigmoid(torch.tensor(b, dtype=F64)) ** d.expand(3, T), rtol=1e-12)
    # with W_hh = 0 and no peepholes the carousel is the whole c→c path
    assert torch.allclose(jacobian_norms(tr, of="c"), cec, rtol=1e-10)


def test_cec_of_the_original_lstm_is_one() -> None:
    tr = bptt.trace(bptt.LSTM(2, 3, variant="original"), torch.randn(20, 2, 2), lambda out, s: out.sum())
    assert torch.equal(jacobian_norms(tr, of="cec"), torch.ones(2, 20, dtype=F64))


def test_probe_estimate_with_every_row_is_exact_and_otherwise_never_above() -> None:
    model = make("lstm", {"variant": "vanilla"})
    tr = bptt.trace(model, torch.randn(12, 3, 2, dtype=F64), lambda out, s: out.sum())
    exact = jacobian_norms(tr)
    assert torch.allclose(jacobian_norms(tr, method="probes", probes=6), exact, rtol=1e-9)  # R = 6
    for seed in range(5):
        est = jacobian_norms(tr, method="probes", probes=2, seed=seed)
        assert bool((est <= exact * (1 + 1e-9)).all())


def test_probe_confidence_matches_haar_sampling() -> None:
    """‖Ωᵀu‖² for Haar-random orthonormal Ω (R×m) against the Beta tail the bound uses."""
    R, m, delta = 40, 6, 0.35
    g = torch.Generator().manual_seed(0)
    u = torch.zeros(R, dtype=F64)
    u[0] = 1
    hits = 0
    n = 4000
    for _ in range(n):
        Q = torch.linalg.qr(torch.randn(R, m, generator=g, dtype=F64))[0]
        hits += int(float((Q.T @ u).norm()) >= delta)
    assert hits / n == pytest.approx(probe_confidence(delta, m, R), abs=0.03)


def test_probe_bound_holds_on_a_real_product() -> None:
    """Over seeds, σ_max(ΩᵀP)/σ_max(P) ≥ δ at least as often as the bound promises."""
    model = bptt.RNN(2, 24, dtype=F64)
    tr = bptt.trace(model, torch.randn(30, 1, 2, dtype=F64), lambda out, s: out.sum())
    exact = jacobian_norms(tr)
    delta, m = 0.3, 4
    ratios = torch.stack(
        [jacobian_norms(tr, method="probes", probes=m, seed=s)[0, 0] / exact[0, 0] for s in range(200)]
    )
    assert bool((ratios <= 1 + 1e-9).all())
    assert float((ratios >= delta).double().mean()) >= probe_confidence(delta, m, 24) - 0.05


def test_linear_rnn_lyapunov_exponents_are_the_log_eigenvalues() -> None:
    torch.manual_seed(0)
    eig = torch.tensor([1.1, 0.8, -0.6, 0.3], dtype=F64)
    Q = torch.linalg.qr(torch.randn(4, 4, dtype=F64))[0]
    model = bptt.RNN(2, 4, nonlinearity="linear", bias=False, dtype=F64)
    with torch.no_grad():
        model.weight_hh_l0.copy_(Q @ torch.diag(eig) @ Q.T)  # symmetric: J_t = W_hh with a known spectrum
    tr = bptt.trace(model, torch.randn(400, 2, 2, dtype=F64), lambda out, s: out.sum())
    spec = lyapunov(tr, burn_in=100)
    expected = eig.abs().log().sort(descending=True).values
    assert torch.allclose(spec.mean, expected, atol=1e-6)
    assert spec.slope == pytest.approx(math.log(1.1), abs=1e-6)  # the decay slope of the norms is λ_max


def test_lambda_max_matches_the_measured_decay_of_a_tanh_rnn() -> None:
    torch.manual_seed(1)
    model = bptt.RNN(2, 16, dtype=F64)
    with torch.no_grad():
        model.weight_hh_l0.mul_(2.0)
    tr = bptt.trace(model, torch.randn(400, 4, 2, dtype=F64), lambda out, s: out.sum())
    spec = lyapunov(tr, burn_in=50, k=4)
    assert spec.max < 0
    assert spec.slope == pytest.approx(spec.max, abs=0.02)


@pytest.mark.parametrize("nonlinearity", ["tanh", "sigmoid", "relu", "linear"])
@pytest.mark.parametrize("factor", [0.99, 1.01])
def test_bound_verdicts_just_below_and_above_one_over_gamma(nonlinearity: str, factor: float) -> None:
    torch.manual_seed(0)
    gamma = {"tanh": 1.0, "sigmoid": 0.25, "relu": 1.0, "linear": 1.0}[nonlinearity]
    model = bptt.RNN(2, 6, nonlinearity=nonlinearity, dtype=F64)
    Q = torch.linalg.qr(torch.randn(6, 6, dtype=F64))[0]
    with torch.no_grad():
        model.weight_hh_l0.copy_(factor / gamma * Q)
    (b,) = bounds(model)
    assert b.gamma == gamma and b.lambda1 == pytest.approx(factor / gamma, rel=1e-12)
    assert b.verdict.startswith("vanishing guaranteed" if factor < 1 else "exploding possible")
    tr = bptt.trace(model, torch.randn(15, 3, 2, dtype=F64), lambda out, s: out.sum())
    (m,) = bounds(model, tr)
    assert bool((m.act_grad <= gamma + 1e-12).all())
    assert bool((m.step_norm <= gamma * m.lambda1 * (1 + 1e-9)).all())


def test_eigenvalue_reading_misjudges_a_non_normal_matrix() -> None:
    model = bptt.RNN(1, 2, nonlinearity="linear", bias=False, dtype=F64)
    with torch.no_grad():
        model.weight_hh_l0.copy_(torch.tensor([[0.5, 3.0], [0.0, 0.5]], dtype=F64))
    (b,) = bounds(model)
    assert b.spectral_radius == pytest.approx(0.5)
    assert b.eigen_verdict.startswith("vanishing guaranteed")
    assert b.verdict.startswith("exploding possible")
    tr = bptt.trace(model, torch.zeros(6, 1, 1, dtype=F64), lambda out, s: out.sum())
    norms = jacobian_norms(tr)
    assert float(norms[0, -3]) > 1  # ‖W²‖ > 1: the gradient grows although ρ < 1


def test_lstm_and_gru_bounds_say_the_elman_bound_does_not_apply() -> None:
    (lstm_b,) = bounds(torch.nn.LSTM(2, 3))
    assert lstm_b.gamma is None and "forget gate" in lstm_b.verdict
    tr = bptt.trace(bptt.LSTM(2, 3), torch.randn(5, 2, 2), lambda out, s: out.sum())
    (measured,) = bounds(tr.model, tr)
    assert measured.max_forget == pytest.approx(float(tr.gates["f"].max()))
    assert bounds(bptt.GRU(2, 3))[0].gamma is None


def reference_cc(model, tr, t: int) -> torch.Tensor:
    """dc_t/dc_{t−1} through all paths of the vanilla LSTM, h_{t−1} = o_{t−1} ⊙ tanh(c_{t−1}), by autograd."""
    P = layer_params(model)
    x = tr.tapes[0].x
    o_prev = tr.gates["o"][0, t - 1]

    def F(c_prev):
        h_prev = o_prev * torch.tanh(c_prev)
        (_, c, _), _ = lstm_step(P, x[t], (h_prev, c_prev, {}), "vanilla")
        return c

    return torch.stack(
        [
            jacobian(lambda c, b=b: F(c[None].expand(x.shape[1], -1))[b], tr.c[0, t - 1, b])
            for b in range(x.shape[1])
        ]
    )


def test_forget_split_against_autograd_of_the_c_chain() -> None:
    model = make("lstm", {"variant": "vanilla"})
    tr = bptt.trace(model, torch.randn(6, 2, 2, dtype=F64), lambda out, s: out.sum())
    split = forget_split(tr)
    assert torch.isnan(split.forget[:, 0]).all()
    for t in range(1, 6):
        J = reference_cc(model, tr, t)
        f = tr.gates["f"][0, t]
        assert torch.allclose(split.total[:, t], torch.linalg.matrix_norm(J, ord=2), rtol=1e-9)
        assert torch.allclose(
            split.remainder[:, t], torch.linalg.matrix_norm(J - torch.diag_embed(f), ord=2), rtol=1e-9
        )
        assert torch.allclose(split.forget[:, t], f.amax(-1))


def test_without_recurrent_weights_the_remainder_vanishes() -> None:
    model = bptt.LSTM(2, 3, dtype=F64)
    with torch.no_grad():
        model.weight_hh_l0.zero_()
    tr = bptt.trace(model, torch.randn(8, 2, 2, dtype=F64), lambda out, s: out.sum())
    split = forget_split(tr)
    assert torch.allclose(split.remainder[:, 1:], torch.zeros(2, 7, dtype=F64), atol=1e-15)
    assert torch.allclose(split.total[:, 1:], split.forget[:, 1:])


def test_gradient_profile_and_horizon() -> None:
    tr = bptt.trace(bptt.LSTM(2, 4, num_layers=2), torch.randn(10, 3, 2), lambda out, s: out[-1].sum())
    prof = gradient_profile(tr)
    assert torch.allclose(prof.dh, tr.dh.double().norm(dim=-1).transpose(1, 2))
    assert prof.dc.shape == (2, 3, 10) and prof.dh_mean.shape == (2, 10)
    c = torch.tensor([1e-6, 2e-3, 1e-2, 1.0])  # positions 0..3, distances 3..0
    assert horizon(c, torch.tensor([3, 2, 1, 0])) == 2
    assert horizon(c, torch.tensor([3, 2, 1, 0]), fraction=1e-7) == 3
    with pytest.raises(ValueError, match=r"expected a fraction in \(0, 1\], got 0"):
        horizon(c, torch.tensor([3, 2, 1, 0]), fraction=0)


def test_gate_saturation_on_constructed_gates() -> None:
    model = bptt.LSTM(1, 3)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.bias_ih_l0[3:6] = 20.0  # f ≈ 1
        model.bias_ih_l0[0:3] = -20.0  # i ≈ 0
    tr = bptt.trace(model, torch.randn(5, 2, 1), lambda out, s: out.sum())
    stats = gate_stats(tr)
    assert torch.equal(stats["f"].high, torch.ones(1, 5, dtype=F64))
    assert torch.equal(stats["i"].low, torch.ones(1, 5, dtype=F64))
    assert stats["o"].overall_saturated == 0.0  # o = σ(0) = 0.5
    relu = bptt.RNN(1, 4, nonlinearity="relu")
    with torch.no_grad():
        relu.bias_ih_l0.fill_(-100.0)  # every unit dead
    dead = gate_stats(bptt.trace(relu, torch.randn(3, 2, 1), lambda out, s: out.sum()))["h"]
    assert torch.equal(dead.low, torch.ones(1, 3, dtype=F64))


def test_bad_diagnostic_requests() -> None:
    tr = bptt.trace(bptt.GRU(2, 3), torch.randn(4, 2, 2), lambda out, s: out.sum())
    with pytest.raises(ValueError, match=r"of='c' needs an LSTM"):
        jacobian_norms(tr, of="c")
    with pytest.raises(ValueError, match=r"unknown of 'gates'; expected one of 'state', 'h', 'c', 'cec'"):
        jacobian_norms(tr, of="gates")
    with pytest.raises(
        ValueError, match=r"expected layer in \[0, 1\) and direction in \[0, 1\), got 1 and 0"
    ):
        jacobian_norms(tr, layer=1)
    with pytest.raises(ValueError, match="needs an LSTM"):
        forget_split(tr)


@pytest.mark.parametrize("direction", [0, 1])
def test_cec_is_the_running_product_of_random_forget_gates_in_either_direction(direction: int) -> None:
    torch.manual_seed(0)
    T = 9
    tr = bptt.trace(
        bptt.LSTM(2, 4, bidirectional=True, dtype=F64),
        torch.randn(T, 3, 2, dtype=F64),
        lambda out, s: out.sum(),
    )
    f = tr.gates["f"][direction]  # (T, B, H), by time position
    visits = list(range(T - 1, -1, -1)) if direction else list(range(T))
    expected = torch.empty(3, T, dtype=F64)
    for idx, k in enumerate(visits):
        prod = torch.ones(3, 4, dtype=F64)
        for i in visits[idx + 1 :]:
            prod = prod * f[i]  # ∏ over the steps this direction visits after k
        expected[:, k] = prod.amax(-1)
    assert torch.allclose(jacobian_norms(tr, of="cec", direction=direction), expected, rtol=1e-12)


# -- numbers that apply to the cell at hand (issue 14) ---------------------------------------------


@pytest.mark.parametrize(("module", "gates"), [(torch.nn.GRU, "rzn"), (torch.nn.LSTM, "ifgo")])
def test_gated_cells_get_lambda1_per_gate_block_not_the_stacked_matrix(module, gates: str) -> None:
    torch.manual_seed(0)
    torch_model = module(3, 5)
    (b,) = bounds(torch_model)
    W = torch_model.weight_hh_l0.detach().double()
    expected = {g: float(torch.linalg.matrix_norm(W[k * 5 : (k + 1) * 5], 2)) for k, g in enumerate(gates)}
    assert b.gate_lambda1 is not None and list(b.gate_lambda1) == list(gates)
    for g in gates:
        assert b.gate_lambda1[g] == pytest.approx(expected[g], rel=1e-12)
    assert b.gamma is None and "γ·λ" not in b.verdict  # the Elman bound is not claimed


def test_elman_bound_is_the_closed_form_and_the_measured_rate_its_autograd_twin() -> None:
    torch.manual_seed(0)
    s = torch.tensor([3.5, 2.0, 1.0, 0.5], dtype=F64)
    U = torch.linalg.qr(torch.randn(4, 4, dtype=F64))[0]
    V = torch.linalg.qr(torch.randn(4, 4, dtype=F64))[0]
    model = bptt.RNN(2, 4, nonlinearity="sigmoid", dtype=F64)
    with torch.no_grad():
        model.weight_hh_l0.copy_(U @ torch.diag(s) @ V.T)  # singular values s
    tr = bptt.trace(model, torch.randn(12, 3, 2, dtype=F64), lambda out, h: out.sum())
    (b,) = bounds(model, tr)
    assert b.lambda1 == pytest.approx(3.5, rel=1e-12) and b.gamma == 0.25 and b.gate_lambda1 is None
    assert b.verdict == "vanishing guaranteed (γ·λ = 0.875 < 1)"
    # J_t = diag(σ'(z_t)) W = diag(h_t (1 − h_t)) W, the rate the geometric mean of ‖J_t‖ over samples and steps
    h = tr.h[0]  # (T, B, H)
    J = (h * (1 - h))[..., None] * model.weight_hh_l0.detach()
    rate = float(torch.linalg.matrix_norm(J, 2).log().mean().exp())
    assert b.step_rate == pytest.approx(rate, rel=1e-10) and b.step_rate <= 0.875
    assert b.measured_verdict is not None and b.measured_verdict.startswith("along these inputs vanishing")


def test_gru_measured_step_rate_equals_autograd_of_torch_grucell() -> None:
    torch.manual_seed(1)
    gru = torch.nn.GRU(2, 4).double()
    cell = torch.nn.GRUCell(2, 4).double()
    cell.load_state_dict({k[:-3]: v for k, v in gru.state_dict().items()})
    x = torch.randn(8, 2, 2, dtype=F64)
    tr = bptt.trace(gru, x, lambda out, h: out.sum())
    (b,) = bounds(tr.model, tr)
    h_prev = torch.cat([torch.zeros(1, 2, 4, dtype=F64), tr.h[0, :-1]])
    logs = [
        torch.linalg.matrix_norm(
            jacobian(lambda h, t=t, i=i: cell(x[t, i : i + 1], h[None])[0], h_prev[t, i]), 2
        ).log()
        for t in range(8)
        for i in range(2)
    ]
    assert b.step_rate == pytest.approx(float(torch.stack(logs).mean().exp()), rel=1e-10)
    assert b.gate_lambda1 is not None and set(b.gate_lambda1) == {"r", "z", "n"}


def linear_rnn(T: int) -> tuple[bptt.Trace, torch.Tensor]:
    """A linear RNN with W = Q diag(e) Qᵀ: its Lyapunov exponents are log |e| in closed form."""
    torch.manual_seed(5)  # not 0: `lyapunov`'s own frames come from seed 0 and would start on Q itself
    e = torch.tensor([1.1, 0.8, -0.6, 0.3], dtype=F64)
    Q = torch.linalg.qr(torch.randn(4, 4, dtype=F64))[0]
    model = bptt.RNN(2, 4, nonlinearity="linear", bias=False, dtype=F64)
    with torch.no_grad():
        model.weight_hh_l0.copy_(Q @ torch.diag(e) @ Q.T)
    tr = bptt.trace(model, torch.randn(T, 3, 2, dtype=F64), lambda out, h: out[-1].sum())
    return tr, e.abs().log().sort(descending=True).values


def test_lyapunov_burn_in_confidence_and_warning_on_short_and_long_sequences() -> None:
    tr, exact = linear_rnn(300)
    long = lyapunov(tr)
    assert long.warning is None and 0 < long.burn_in <= 150 and long.steps == 300 - long.burn_in
    assert long.stderr is not None and float(long.stderr.max()) < 5e-3
    assert bool(
        ((long.mean - exact).abs() <= 3 * long.stderr + 1e-9).all()
    )  # the closed form within 3 errors
    tr, exact = linear_rnn(8)
    short = lyapunov(tr)
    assert short.warning is not None and "too short" in short.warning
    assert short.max_stderr is not None and short.max_stderr > 10 * long.max_stderr
    assert 0 < short.burn_in <= 4  # half the sequence at most


def test_lyapunov_qr_every_few_steps_agrees_with_every_step() -> None:
    torch.manual_seed(3)
    model = bptt.RNN(2, 12, dtype=F64)
    with torch.no_grad():
        model.weight_hh_l0.mul_(2.0)
    tr = bptt.trace(model, torch.randn(120, 2, 2, dtype=F64), lambda out, h: out.sum())
    every = lyapunov(tr, burn_in=20, compare=False)
    sparse = lyapunov(tr, burn_in=20, compare=False, qr_every=4)
    assert every.steps == sparse.steps == 100
    assert torch.allclose(every.exponents, sparse.exponents, atol=1e-10, rtol=0)  # the stated tolerance


def test_diagnostics_are_silent_unless_progress_is_shown(capsys) -> None:
    import io

    from rich.console import Console

    from bptt.diagnostics import progress

    tr, _ = linear_rnn(30)
    lyapunov(tr)
    assert capsys.readouterr() == ("", "")
    buffer = io.StringIO()
    before = torch.get_num_threads()
    fresh, _ = linear_rnn(30)  # the first trace's norms are computed already (lyapunov compares with them)
    with progress.shown(Console(file=buffer, force_terminal=True, width=100)):
        lyapunov(fresh, compare=False)
        jacobian_norms(fresh)
    assert "Lyapunov spectrum" in buffer.getvalue() and "Jacobian norms" in buffer.getvalue()
    assert capsys.readouterr() == ("", "") and torch.get_num_threads() == before


def test_jacobian_norms_are_computed_once_per_request_and_handed_out_as_copies(monkeypatch) -> None:
    from bptt.diagnostics import jacobian as jac

    torch.manual_seed(0)
    tr = bptt.trace(bptt.LSTM(2, 4, dtype=F64), torch.randn(7, 3, 2, dtype=F64), lambda out, s: out[-1].sum())
    calls = []
    compute = jac._jacobian_log_norms
    monkeypatch.setattr(jac, "_jacobian_log_norms", lambda *a: calls.append(a) or compute(*a))
    first = jacobian_norms(tr, of="state")
    first.zero_()  # the caller's copy; the memo keeps its own
    again = jacobian_norms(tr, of="state", log=True)
    assert len(calls) == 1 and torch.equal(again.exp(), jacobian_norms(tr, of="state"))
    assert float(again[0, -1]) == 0.0  # log ‖∂s_{T−1}/∂s_{T−1}‖ = log 1
    jacobian_norms(tr, of="c")
    jacobian_norms(tr, of="state", samples=slice(0, 2))
    assert len(calls) == 3  # another part or other samples are another request


def test_lyapunov_of_sequences_of_different_lengths_is_that_of_the_full_length_ones() -> None:
    torch.manual_seed(2)
    model = bptt.RNN(2, 6, dtype=F64)
    with torch.no_grad():
        model.weight_hh_l0.mul_(1.5)
    x = torch.randn(120, 4, 2, dtype=F64)
    tr = bptt.trace(model, x, lambda out, s: out.sum())
    tr.lengths = torch.tensor([120, 60, 120, 30])  # sequences 1 and 3 are padded after their end
    spec = lyapunov(tr, burn_in=20, k=3)
    alone = lyapunov(bptt.trace(model, x[:, [0, 2]], lambda out, s: out.sum()), burn_in=20, k=3)
    assert torch.allclose(spec.mean, alone.mean, rtol=0, atol=1e-12)
    assert spec.slope == pytest.approx(alone.slope, abs=1e-12)
    assert spec.warning is not None and "2 of 4 sequences end before step T = 120" in spec.warning
    tr.lengths = torch.tensor([100, 60, 110, 30])
    with pytest.raises(InputError, match="runs all T = 120 steps"):
        lyapunov(tr, burn_in=20)
