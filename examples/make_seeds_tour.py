"""Writes examples/seeds_tour.ipynb (outputs stripped): python examples/make_seeds_tour.py

The tour checks each claim bptt is built on against bptt's own measurement, with a figure per
claim. `BPTT_TOUR_SMALL=1` runs it at small sizes (the test suite executes it that way).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS: list[tuple[str, str]] = [
    (
        "md",
        """# A guided tour: backpropagation through time, claim by claim

Each section states one claim about gradients in recurrent networks, computes what the claim
predicts in closed form, and measures it with bptt. Set `BPTT_TOUR_SMALL=1` to run everything at
small sizes (a few seconds).""",
    ),
    (
        "code",
        """import math
import os

import matplotlib.pyplot as plt
import torch

import bptt
from bptt.diagnostics import bounds, jacobian_norms, lyapunov

SMALL = os.environ.get("BPTT_TOUR_SMALL") == "1"
T = 30 if SMALL else 200  # sequence length
H = 8 if SMALL else 32  # hidden units
F64 = torch.float64
torch.manual_seed(0)
%matplotlib inline""",
    ),
    (
        "md",
        """## 1. One unit, linear: the gradient is t·w^(t−1)·x

With h_0 = x and h_t = w·h_{t−1}, h_t = w^t·x, so dh_t/dw = t·w^(t−1)·x: for long sequences it
vanishes when w is a little below 1 and explodes when w is a little above. bptt's gradient of
h_t with respect to `weight_hh_l0` is measured for every t and drawn over the closed form.""",
    ),
    (
        "code",
        """def one_unit(w):
    rnn = bptt.RNN(1, 1, nonlinearity="linear", bias=False, dtype=F64)
    with torch.no_grad():
        rnn.weight_ih_l0.zero_()
        rnn.weight_hh_l0.fill_(w)
    return rnn


x0 = 1.0
steps = range(1, T + 1)
fig, ax = plt.subplots(layout="constrained")
for w in (0.9, 1.0, 1.1):
    rnn = one_unit(w)
    h0 = torch.full((1, 1, 1), x0, dtype=F64)
    measured = []
    for t in steps:
        tr = bptt.trace(rnn, torch.zeros(t, 1, 1, dtype=F64), lambda out, h: out[-1].sum(), h0)
        measured.append(float(tr.grads["weight_hh_l0"]))
    closed = [t * w ** (t - 1) * x0 for t in steps]
    worst = max(abs(m - c) / abs(c) for m, c in zip(measured, closed, strict=True))
    print(f"w = {w}: largest relative difference from t·w^(t−1)·x: {worst:.1e}")
    ax.semilogy(steps, closed, label=f"w = {w}: t·w$^{{t-1}}$·x")
    ax.semilogy(steps[::5], measured[::5], "o", ms=3, color=ax.lines[-1].get_color())
ax.set(xlabel="t", ylabel="|dh$_t$/dw|", title="One linear unit: closed form (lines), bptt (dots)")
ax.legend()
plt.show()""",
    ),
    (
        "md",
        """## 2. One sigmoid unit cannot keep its gradient: w·σ′(w·h) ≤ 0.224

For h_t = σ(w·h_{t−1}), ∂h_t/∂h_{t−1} = w·σ′(w·h_{t−1}). At h = 1 the factor is largest at
w ≈ 1.5434, where it is ≈ 0.224, so the gradient decays at least like 0.224^k whatever w is
learned. `bptt.theory` finds the optimum; the measured step Jacobians of a one-unit RNN follow the
curve.""",
    ),
    (
        "code",
        """from bptt import theory

u_star, g_star = theory.gain_optimum("sigmoid")
print(f"max over w of w·σ'(w·1) = {g_star:.4f} at w = {u_star:.4f}")
ws = torch.linspace(0.05, 6, 25 if SMALL else 120).tolist()
closed = [w * torch.sigmoid(torch.tensor(w)).item() * (1 - torch.sigmoid(torch.tensor(w)).item()) for w in ws]
measured = [theory.measured_gain("sigmoid", w, 1.0) for w in ws]
fig, ax = plt.subplots(layout="constrained")
ax.plot(ws, closed, label="w·σ′(w·1)")
ax.plot(ws, measured, "o", ms=3, label="bptt: |∂h$_t$/∂h$_{t-1}$|")
ax.axhline(g_star, ls="--", color="grey", label=f"max {g_star:.3f}")
ax.set(xlabel="w", ylabel="gain per step", title="A sigmoid unit's gain per step never reaches 1")
ax.legend()
plt.show()""",
    ),
    (
        "md",
        """## 3. The vanishing curve: a tanh RNN against an LSTM

Both get the same inputs; ‖∂s_{T−1}/∂s_k‖ is drawn against the distance T−1−k. The RNN's falls
off exponentially; the LSTM's falls too, more slowly: gradients in LSTMs do vanish, just slower.
The Lyapunov exponent λ_max estimates the slope, with its standard error and a warning when the
sequence is too short for it.""",
    ),
    (
        "code",
        """x = torch.randn(T, 4, 2, dtype=F64)
rnn = bptt.RNN(2, H, dtype=F64)
lstm = bptt.LSTM(2, H, dtype=F64)
with torch.no_grad():
    lstm.bias_hh_l0[H : 2 * H] += 1.0  # forget-gate bias 1, as in training
fig, ax = plt.subplots(layout="constrained")
distance = torch.arange(T - 1, -1, -1)
for name, model in (("tanh RNN", rnn), ("LSTM", lstm)):
    tr = bptt.trace(model, x, lambda out, s: out[-1].sum())
    norms = jacobian_norms(tr).mean(0)
    spec = lyapunov(tr, k=4)
    err = f" ± {spec.max_stderr:.2g}" if spec.max_stderr is not None else ""
    print(
        f"{name}: λ_max = {spec.max:.3f}{err} per step, decay slope {spec.slope:.3f}; warning: {spec.warning}"
    )
    ax.semilogy(distance, norms, label=f"{name} (λ$_{{max}}$ = {spec.max:.2f})")
ax.set(xlabel="distance to the last step", ylabel="‖∂s$_{T-1}$/∂s$_k$‖", title="Vanishing: RNN against LSTM")
ax.legend()
plt.show()""",
    ),
    (
        "md",
        """## 4. The Constant Error Carousel: ∂c_t′/∂c_t along the forget gates is ∏ f

On the cell state alone the LSTM's derivative is a product of forget gates, with no weight
multiplied in. With the forget gate's input at 10, σ(10) ≈ 0.99995, and the carousel keeps
(0.99995)^k of the gradient over k steps. bptt's carousel norm (`of="cec"`) is drawn over the
closed form, for a one-unit LSTM whose forget gate reads 10.""",
    ),
    (
        "code",
        """cec = bptt.LSTM(1, 1, dtype=F64)
with torch.no_grad():
    for p in cec.parameters():
        p.zero_()
    cec.bias_ih_l0[1] = 10.0  # the forget gate's input: f = σ(10) at every step
tr = bptt.trace(cec, torch.randn(T, 1, 1, dtype=F64), lambda out, s: out[-1].sum())
measured = jacobian_norms(tr, of="cec")[0]
f = torch.sigmoid(torch.tensor(10.0, dtype=F64))
closed = f ** torch.arange(T - 1, -1, -1, dtype=F64)
print(
    f"σ(10) = {float(f):.5f}; largest relative difference: {float(((measured - closed) / closed).abs().max()):.1e}"
)
fig, ax = plt.subplots(layout="constrained")
ax.plot(distance, closed, label="σ(10)$^k$")
ax.plot(distance[::3], measured[::3], "o", ms=3, label="bptt: carousel ∏ f")
ax.set(xlabel="distance k", ylabel="‖∏ diag(f)‖", title="The carousel keeps its gradient")
ax.legend()
plt.show()""",
    ),
    (
        "md",
        """## 5. The LSTM does not prevent exploding gradients; clipping contains them

The carousel bounds only one path. Through h_{t−1} and the gates the recurrent weights are
multiplied in at every step, so with large weights and forget gates near 1 the gradient of an
LSTM can grow with distance. Norm clipping rescales such a gradient to a set norm, keeping its
direction. The per-gate λ1 of W_hh and the measured step Jacobians say which bound applies.""",
    ),
    (
        "code",
        """big = bptt.LSTM(2, H, dtype=F64)
with torch.no_grad():
    big.weight_hh_l0.mul_(16.0)
    big.bias_hh_l0[H : 2 * H] += 3.0  # forget gates near 1
tr = bptt.trace(big, 0.1 * torch.randn(T, 2, 2, dtype=F64), lambda out, s: out[-1].sum())
norms = jacobian_norms(tr).mean(0)
(b,) = bounds(big, tr)
print("λ1 per gate block:", {g: round(v, 2) for g, v in b.gate_lambda1.items()})
print(b.measured_verdict)
print(f"gradient at distance {T - 1}: {float(norms[0]):.3g} times its value at the loss")

loss = big(0.1 * torch.randn(T, 2, 2, dtype=F64))[0][-1].sum()
loss.backward()
before = float(torch.nn.utils.clip_grad_norm_(big.parameters(), max_norm=1.0))
after = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in big.parameters()))
print(f"gradient norm {before:.3g}; after norm clipping at 1: {after:.3g}")

fig, (left, right) = plt.subplots(1, 2, layout="constrained", figsize=(9, 3.5))
left.semilogy(distance, norms)
left.set(xlabel="distance to the last step", ylabel="‖∂s$_{T-1}$/∂s$_k$‖", title="Exploding LSTM")
right.bar(["raw", "clipped"], [before, after])
right.set_yscale("log")
right.set(ylabel="‖∇θ‖", title="Norm clipping at 1")
plt.show()""",
    ),
]


def build() -> nbformat.NotebookNode:
    """The tour as a notebook, without outputs."""
    cells = [new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in CELLS]
    for i, cell in enumerate(cells):
        cell.id = f"tour-{i:02d}"  # fixed ids: the file only changes when the tour does
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


if __name__ == "__main__":
    out = Path(__file__).resolve().parent / "seeds_tour.ipynb"
    nbformat.write(build(), out)
    print(f"wrote {out}")
