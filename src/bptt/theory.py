"""The seeds' closed forms as computed numbers, each checked against the library's own measurement.

Every `Claim` carries the value the formula gives and the value bptt measures on a model built
for it (a trace, a Jacobian norm, a contribution sum), so a reader can see the theory hold:

* linear RNN, h_t = w^t x:            dh_t/dw = t·w^(t−1)·x                         (seed 000)
* sigmoid RNN, one unit:               max_w w·σ'(w·h) = 0.2238716/h at w = 1.5434046/h  (seed 002)
* tanh and ReLU analogues:             max_w w·tanh'(w·h) = 0.4477/h at w = 0.7717/h;
                                       w·relu'(w·h) = w has no maximum: the gradient is w^t
* forget-gate decay:                   σ(b)^T, σ(10) = 0.9999546, σ(10)^1000 = 0.9556  (seed 002)
* the Constant Error Carousel:         ∂c_T/∂c_0 = 1 without a forget gate           (seed 002)
* BPTT as a sum over steps:            ∂L/∂θ = Σ_k ∂L/∂θ|_k                           (seed 001)
* γ = sup |a'|:                        tanh 1, sigmoid 1/4, ReLU 1                    (seed 001)

and the LSTM's successors (Orvieto et al. 2023; Feng et al. 2024; Beck et al. 2024):

* LRU:                                 ‖∂x_T/∂x_t‖ = max_j |λ_j|^(T−t), |λ| = exp(−exp(ν))
* minGRU:                              ∂h_T/∂h_t = ∏ (1 − z_s) = σ(−b_z)^(T−t) for a constant gate
* sLSTM, the normalised carry c/n:     ∂ĉ_T/∂ĉ_t = ∏ (1 − i'_s/n_s) = σ^(T−t) (1 − σ^t)/(1 − σ^T),
                                       σ = σ(b_f), for constant gates from the zero state

The optima are found by golden-section search over the *measured* step Jacobian of a one-unit
RNN, independently of the closed form, which comes from its stationarity condition.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ._checks import InputError
from .cells import LRU, LSTM, RNN, MinGRU, sLSTM
from .diagnostics.jacobian import jacobian_norms, step_jacobian
from .trace import trace

F64 = torch.float64


@dataclass(frozen=True)
class Claim:
    """A closed form and its measurement."""

    name: str
    formula: str
    closed_form: float
    measured: float
    how: str
    tolerance: float = 1e-6

    @property
    def rel_err(self) -> float:
        return abs(self.measured - self.closed_form) / max(abs(self.closed_form), 1e-300)

    @property
    def holds(self) -> bool:
        return self.rel_err <= self.tolerance


def _sigmoid(u: float) -> float:
    return 1.0 / (1.0 + math.exp(-u))


def _newton(f: Callable[[float], float], x: float) -> float:
    for _ in range(100):
        h = 1e-7 * max(1.0, abs(x))
        step = f(x) / ((f(x + h) - f(x - h)) / (2 * h))
        x -= step
        if abs(step) < 1e-15 * max(1.0, abs(x)):
            break
    return x


def gain_optimum(nonlinearity: str) -> tuple[float, float]:
    """(u*, g*) maximising u·a'(u); then max_w w·a'(w·h) = g*/h at w = u*/h, for any h > 0.

    Stationarity of u·a'(u): sigmoid 1 + u(1 − 2σ(u)) = 0; tanh 1 = 2u·tanh(u).
    """
    if nonlinearity == "sigmoid":
        u = _newton(lambda u: 1 + u * (1 - 2 * _sigmoid(u)), 1.5)
        return u, u * _sigmoid(u) * (1 - _sigmoid(u))
    if nonlinearity == "tanh":
        u = _newton(lambda u: 1 - 2 * u * math.tanh(u), 0.8)
        return u, u * (1 - math.tanh(u) ** 2)
    raise InputError(f"u·a'(u) has a maximum for sigmoid and tanh, not {nonlinearity!r}")


def _one_unit(nonlinearity: str, w: float) -> RNN:
    rnn = RNN(1, 1, nonlinearity=nonlinearity, bias=False, dtype=F64)
    with torch.no_grad():
        rnn.get_parameter("weight_ih_l0").zero_()
        rnn.get_parameter("weight_hh_l0").fill_(w)
    return rnn


def measured_gain(nonlinearity: str, w: float, h: float) -> float:
    """|∂h_t/∂h_{t−1}| of a one-unit RNN with weight w at h_{t−1} = h, from its step Jacobian."""
    tr = trace(
        _one_unit(nonlinearity, w),
        torch.zeros(1, 1, 1, dtype=F64),
        lambda out, s: out.sum(),
        hx=torch.full((1, 1, 1), h, dtype=F64),
    )
    return float(step_jacobian(tr, 0).abs())


def golden_max(f: Callable[[float], float], lo: float, hi: float, tol: float = 1e-10) -> tuple[float, float]:
    """(argmax, max) of a unimodal f on [lo, hi] by golden-section search."""
    r = (math.sqrt(5) - 1) / 2
    a, b = lo, hi
    c, d = b - r * (b - a), a + r * (b - a)
    fc, fd = f(c), f(d)
    while b - a > tol * max(1.0, abs(a)):
        if fc > fd:
            b, d, fd = d, c, fc
            c = b - r * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + r * (b - a)
            fd = f(d)
    x = (a + b) / 2
    return x, f(x)


def _linear_rnn_claims() -> list[Claim]:
    out = []
    for w, t, x in ((0.9, 50, 1.0), (1.1, 50, 1.0), (0.5, 20, 2.0)):
        rnn = _one_unit("linear", w)
        tr = trace(
            rnn,
            torch.zeros(t, 1, 1, dtype=F64),
            lambda out, s: out[-1].sum(),
            hx=torch.full((1, 1, 1), x, dtype=F64),
        )
        out.append(
            Claim(
                f"linear RNN, w = {w}, t = {t}, x = {x}",
                "dh_t/dw = t·w^(t−1)·x",
                t * w ** (t - 1) * x,
                float(tr.grads["weight_hh_l0"]),
                "∂h_t/∂W_hh of a one-unit linear bptt.RNN from h_0 = x, by trace",
                1e-12,
            )
        )
    return out


def _gain_at(nonlinearity: str, h: float, w: float) -> float:
    return measured_gain(nonlinearity, w, h)


def _gain_claims() -> list[Claim]:
    out = []
    for nl in ("sigmoid", "tanh"):
        u, g = gain_optimum(nl)
        for h in (1.0, 0.5, 2.0):
            w_best, g_best = golden_max(functools.partial(_gain_at, nl, h), 0.01 / h, 6.0 / h)
            how = f"golden-section search over w of the measured step Jacobian of a one-unit {nl} RNN at h = {h}"
            out.append(Claim(f"{nl}: argmax_w w·{nl}'(w·{h})", f"w* = {u:.7f}/h", u / h, w_best, how, 1e-5))
            out.append(Claim(f"{nl}: max_w w·{nl}'(w·{h})", f"{g:.7f}/h", g / h, g_best, how, 1e-9))
    for w in (0.95, 1.05):
        rnn = _one_unit("relu", w)
        T = 101
        tr = trace(
            rnn,
            torch.zeros(T, 1, 1, dtype=F64),
            lambda out, s: out[-1].sum(),
            hx=torch.ones(1, 1, 1, dtype=F64),
        )
        out.append(
            Claim(
                f"ReLU: w = {w}, distance 100",
                "‖∂h_t/∂h_{t−100}‖ = w^100 (no maximum of w·relu'(w·h))",
                w**100,
                float(jacobian_norms(tr)[0, 0]),
                "Jacobian norm of a one-unit ReLU bptt.RNN",
                1e-10,
            )
        )
    return out


def _forget_claims() -> list[Claim]:
    b, T = 10.0, 1000
    lstm = LSTM(1, 1, dtype=F64)
    with torch.no_grad():
        for p in lstm.parameters():
            p.zero_()
        lstm.get_parameter("bias_ih_l0")[1] = (
            b  # the forget-gate bias (gate order i, f, g, o); every weight zero: f_t = σ(b)
        )
    tr = trace(lstm, torch.zeros(T + 1, 1, 1, dtype=F64), lambda out, s: out[-1].sum())
    cec = jacobian_norms(tr, of="cec")
    return [
        Claim(
            "σ(10)",
            "σ(b) = 1/(1 + e^(−b))",
            _sigmoid(b),
            float(tr.gates["f"][0, 0, 0, 0]),
            "forget gate of an LSTM whose only parameter is b_f = 10",
            1e-12,
        ),
        Claim(
            "forget-gate decay over 1000 steps",
            "σ(10)^1000 = 0.9556 (not 0.99995^1000 = 0.9512)",
            _sigmoid(b) ** T,
            float(cec[0, 0]),
            "CEC path ∏ diag(f) of that LSTM at distance 1000",
            1e-9,
        ),
    ]


def _cec_claims() -> list[Claim]:
    torch.manual_seed(0)
    lstm = LSTM(2, 4, variant="original", dtype=F64)
    with torch.no_grad():
        lstm.get_parameter("weight_hh_l0").zero_()  # no path through h: only the carousel links c_0 to c_T
    tr = trace(lstm, torch.randn(200, 1, 2, dtype=F64), lambda out, s: s[1].sum())
    return [
        Claim(
            "the Constant Error Carousel (HS97 LSTM)",
            "∂c_T/∂c_0 = I without a forget gate",
            1.0,
            float(jacobian_norms(tr, of="c")[0, 0]),
            "c→c Jacobian norm over 199 steps of bptt.LSTM(variant='original') without W_hh",
            1e-12,
        )
    ]


def _sum_claim() -> list[Claim]:
    torch.manual_seed(0)
    tr = trace(LSTM(3, 8, dtype=F64), torch.randn(40, 4, 3, dtype=F64), lambda out, s: out[-1].pow(2).sum())
    total = torch.stack([tr.contribution(k)["weight_hh_l0"] for k in range(tr.steps)]).sum(0)
    g = tr.grads["weight_hh_l0"]
    return [
        Claim(
            "BPTT as a sum of temporal contributions",
            "‖∂L/∂W_hh‖ = ‖Σ_k ∂L/∂W_hh|_k‖",
            float(g.norm()),
            float(total.norm()),
            "Σ of trace.contribution(k) against the autograd-equal gradient, LSTM T = 40",
            1e-12,
        )
    ]


def _gamma_claims() -> list[Claim]:
    from .cells.rnn import activation_grad

    z = torch.linspace(-10, 10, 200001, dtype=F64)
    out = []
    for nl, gamma in (("tanh", 1.0), ("sigmoid", 0.25), ("relu", 1.0)):
        h = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu}[nl](z)
        out.append(
            Claim(
                f"γ of {nl}",
                "γ = sup |a'(z)|",
                gamma,
                float(activation_grad(nl, h).max()),
                "max of a'(z) on a grid of 200001 points in [−10, 10]",
                1e-9,
            )
        )
    return out


def _lru_claims() -> list[Claim]:
    torch.manual_seed(0)
    lru = LRU(2, 4, state_size=6, r_min=0.9, r_max=0.999, dtype=F64)
    T = 201
    tr = trace(lru, torch.randn(T, 1, 2, dtype=F64), lambda out, s: out[-1].sum())
    modulus = torch.exp(-torch.exp(lru.get_parameter("nu_log_l0").detach()))
    return [
        Claim(
            "LRU: the state Jacobian over 200 steps",
            "‖∂x_T/∂x_{T−200}‖ = max_j |λ_j|^200",
            float(modulus.max()) ** (T - 1),
            float(jacobian_norms(tr, of="c")[0, 0]),
            "x→x Jacobian norm of a bptt.LRU (6 complex eigenvalues on the ring [0.9, 0.999]), by trace",
            1e-10,
        )
    ]


def _mingru_claims() -> list[Claim]:
    b, T = 2.0, 101
    cell = MinGRU(1, 1, dtype=F64)
    with torch.no_grad():
        cell.get_parameter("weight_ih_l0").zero_()
        cell.get_parameter("bias_ih_l0").copy_(torch.tensor([b, 0.5]))  # z_t = σ(b) at every step; h̃ = 0.5
    tr = trace(cell, torch.randn(T, 1, 1, dtype=F64), lambda out, s: out[-1].sum())
    return [
        Claim(
            "minGRU: the carry over 100 steps",
            "∂h_T/∂h_{T−100} = ∏ (1 − z_s) = σ(−2)^100",
            _sigmoid(-b) ** (T - 1),
            float(jacobian_norms(tr)[0, 0]),
            "Jacobian norm of a one-unit bptt.MinGRU whose only parameters are b_z = 2, b_n = 0.5",
            1e-10,
        )
    ]


def _slstm_claims() -> list[Claim]:
    b_f, T, k = 3.0, 60, 10
    cell = sLSTM(1, 1, dtype=F64)
    with torch.no_grad():
        for p in cell.parameters():
            p.zero_()
        # ĩ, f̃, g̃, õ constant; no W_hh
        cell.get_parameter("bias_ih_l0").copy_(torch.tensor([0.5, b_f, 1.0, 0.0]))
    tr = trace(cell, torch.randn(T, 1, 1, dtype=F64), lambda out, s: out[-1].sum())
    # h_T = o_T ĉ_T and n_k is held, so ∂ĉ_T/∂ĉ_k = ∂L/∂c_k · n_k / o_T
    assert tr.c is not None and tr.dc is not None
    n_k = float(tr.c[0, k, 0, 1])
    measured = float(tr.dc[0, k, 0, 0]) * n_k / float(tr.gates["o"][0, -1, 0, 0])
    sig = _sigmoid(b_f)
    d = T - 1 - k
    return [
        Claim(
            f"sLSTM: the normalised carry over {d} steps",
            "∂ĉ_T/∂ĉ_t = ∏ (1 − i'_s/n_s) = σ(b_f)^(T−t) (1 − σ(b_f)^t)/(1 − σ(b_f)^T)",
            sig**d * (1 - sig ** (k + 1)) / (1 - sig**T),
            measured,
            "∂L/∂c_k · n_k / o_T of a one-unit bptt.sLSTM with constant gates (b_f = 3) from the zero state",
            1e-10,
        )
    ]


def claims() -> list[Claim]:
    """Every claim, computed and measured now."""
    return (
        _linear_rnn_claims()
        + _gain_claims()
        + _forget_claims()
        + _cec_claims()
        + _sum_claim()
        + _gamma_claims()
        + _lru_claims()
        + _mingru_claims()
        + _slstm_claims()
    )
