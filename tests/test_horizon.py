"""The lag profile and horizon: how far back each loss term's gradient reaches, against autograd."""

from __future__ import annotations

import math

import pytest
import torch

import bptt
from bptt.diagnostics import gradient_profile, lag_profile

from reference import gru_step, lstm_step

F64 = torch.float64


def reference_lag_norms(model, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """r(τ) by autograd: for every loss term ℓ_t = Σ_b w_t,b · h_t,b and every k ≤ t, ‖∂ℓ_t/∂s_k‖ with the
    state s_k = (h_k, c_k) as the independent input of the steps k+1..t (one graph per (t, k))."""
    P = {n[: -len("_l0")]: p for n, p in model.named_parameters()}
    lstm = isinstance(model, bptt.LSTM)
    T, B = x.shape[:2]
    with torch.no_grad():
        out, _ = model(x)
        c = bptt.trace(model, x, lambda o, s: o.sum()).c[0] if lstm else None
    sums, counts = torch.zeros(T, dtype=F64), torch.zeros(T)
    for t in range(T):
        if not bool(w[t].ne(0).any()):
            continue
        for k in range(t + 1):
            h = out[k].detach().clone().requires_grad_(True)
            leaves = [h]
            if lstm:
                ck = c[k].detach().clone().requires_grad_(True)
                leaves.append(ck)
                zero = torch.zeros_like(ck)
                state = (h, ck, {"i": zero, "f": zero, "o": zero})
            else:
                state = (h,)
            for j in range(k + 1, t + 1):
                state, _ = lstm_step(P, x[j], state, "vanilla") if lstm else gru_step(P, x[j], state)
            loss = (w[t] * state[0]).sum()
            grads = torch.autograd.grad(loss, leaves, allow_unused=True)
            sq = sum((g if g is not None else torch.zeros_like(h)).pow(2).sum(-1) for g in grads)
            sums[t - k] += sq.sqrt().sum()
            counts[t - k] += B
    return sums / counts


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("loss", ["every-step", "last-step"])
def test_the_lag_profile_equals_autograd_per_loss_term(cell: str, loss: str) -> None:
    torch.manual_seed(0)
    model = (bptt.LSTM if cell == "lstm" else bptt.GRU)(2, 3, dtype=F64)
    T, B = 6, 2
    x = torch.randn(T, B, 2, dtype=F64)
    w = torch.randn(T, B, 3, dtype=F64)
    if loss == "last-step":
        w[:-1] = 0
    tr = bptt.trace(model, x, lambda out, s: (w * out).sum())
    prof = lag_profile(tr, fraction=1e-2)
    expected = reference_lag_norms(model, x, w)
    assert prof.sources == (T if loss == "every-step" else 1)
    assert torch.allclose(prof.log_norm.exp(), expected, rtol=1e-10, atol=0)
    keep = expected >= 1e-2 * expected.max()
    assert prof.horizon == int(torch.nonzero(keep).max())
    if loss == "every-step":
        assert prof.count.tolist() == [B * (T - lag) for lag in range(T)]


def test_for_a_loss_at_every_step_the_end_horizon_says_nothing_and_the_lag_horizon_does() -> None:
    torch.manual_seed(0)
    rnn = bptt.RNN(2, 8, dtype=F64)
    with torch.no_grad():
        rnn.weight_hh_l0.mul_(0.2)  # a fast-forgetting recurrence
    T = 40
    tr = bptt.trace(rnn, torch.randn(T, 3, 2, dtype=F64), lambda out, h: out.pow(2).sum())
    assert gradient_profile(tr).horizon == T - 1  # step 0 carries its own loss term: distance T − 1
    prof = lag_profile(tr)
    assert 0 < prof.horizon < 15
    assert bool((prof.log_norm[1:] < prof.log_norm[:-1]).all())  # it decays with the lag


def test_a_vanishing_float32_gradient_is_kept_in_logs() -> None:
    torch.manual_seed(0)
    rnn = bptt.RNN(2, 8)  # float32
    with torch.no_grad():
        rnn.weight_hh_l0.mul_(0.05)
    T = 60
    tr = bptt.trace(rnn, torch.randn(T, 2, 2), lambda out, h: out[-1].sum())
    prof = lag_profile(tr, fraction=1e-300)
    assert bool(torch.isfinite(prof.log_norm).all())
    assert float(prof.log_norm[-1]) < math.log(1e-45)  # below float32's smallest number, still measured
    assert prof.horizon == T - 1
    # the squares of float32 gradients around 1e−25 underflow; the float64 norms keep them
    tiny = bptt.trace(rnn, torch.randn(5, 2, 2), lambda out, h: out[-1].sum() * 1e-25)
    assert float(tiny.dh[0, -1].norm()) == 0.0
    assert bool((gradient_profile(tiny).dh[0, :, -1] > 0).all())
    assert bool((tiny.contribution_norms()[-1] > 0).all())


def test_lag_profile_requests() -> None:
    tr = bptt.trace(bptt.GRU(2, 3, num_layers=2), torch.randn(9, 2, 2), lambda out, h: out.sum())
    assert lag_profile(tr, max_lag=3).log_norm.shape == (4,)
    assert lag_profile(tr, layer=0).sources == 9  # the layer above feeds every step
    with pytest.raises(ValueError, match=r"expected a fraction in \(0, 1\], got 2"):
        lag_profile(tr, fraction=2)
