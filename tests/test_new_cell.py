"""A cell declared outside the package — the minimal gated unit — runs through every instrument.

This file is docs/adding-a-cell.md made executable: a `Step` with the equations, a module, one
`CellSpec`; then trace, the diagnostics, training (with its initialisations and the command line),
the report and the bench run on it, and no file under src/ names it.

The minimal gated unit (Zhou et al. 2016), with a GRU-style reset-after candidate so that the
recurrent products stay one matmul per step (gate order f, n):

    f_t = σ(W_if x_t + b_if + W_hf h_{t−1} + b_hf)
    n_t = tanh(W_in x_t + b_in + f_t ⊙ (W_hn h_{t−1} + b_hn))
    h_t = (1 − f_t) ⊙ h_{t−1} + f_t ⊙ n_t
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import Tensor

import bptt
from bptt import bench, cli
from bptt.cells import CellSpec, RecurrentBase, registry
from bptt.diagnostics import gate_stats, summarize
from bptt.engine.sweep import Carry, Params, StepGrads
from bptt.engine.tape import Tape, state_buffer
from bptt.engine.terms import Term, projection_terms
from bptt.reports import write_report
from bptt.training import TrainConfig, build, train

from helpers import rel_err

SRC = Path(bptt.__file__).parent


@dataclass(frozen=True)
class MGUStep:
    gate_names: tuple[str, ...] = ("f", "n")
    fold_bias_hh: bool = False  # b_hn sits inside f_t ⊙ (·)
    separate_dgh: bool = True
    has_cell: bool = False

    def new_tape(self, x: Tensor, h0: Tensor, c0: Tensor | None, reverse: bool, params: Params) -> Tape:
        T, B = x.shape[:2]
        H = h0.shape[-1]
        tape = Tape(
            x=x,
            reverse=reverse,
            hidden_size=H,
            h_buf=state_buffer(h0, T),
            gates_buf=x.new_empty((T + 1, B, 2 * H)),
            extras={"ghn": x.new_empty((T, B, H))},
        )
        tape.h_buf[tape.initial_slot()] = h0
        tape.gates_buf[tape.initial_slot()] = 0
        return tape

    def forward(self, t: int, gx: Tensor, gh: Tensor, tape: Tape, p: Params) -> None:
        gx_f, gx_n = gx.chunk(2, dim=-1)
        gh_f, gh_n = gh.chunk(2, dim=-1)
        f, n = tape.gates[t].chunk(2, dim=-1)
        torch.add(gx_f, gh_f, out=f).sigmoid_()  # f_t = σ(W_if x_t + b_if + W_hf h_{t−1} + b_hf)
        tape.extras["ghn"][t] = gh_n
        torch.addcmul(
            gx_n, f, gh_n, out=n
        ).tanh_()  # n_t = tanh(W_in x_t + b_in + f_t ⊙ (W_hn h_{t−1} + b_hn))
        h = tape.h[t]
        torch.sub(n, tape.h_prev[t], out=h)  # h_t = h_{t−1} + f_t ⊙ (n_t − h_{t−1})
        h.mul_(f).add_(tape.h_prev[t])

    def initial_state(self, h0: Tensor, c0: Tensor | None) -> Carry:
        return (h0,)

    def cell(self, gx: Tensor, gh: Tensor, state: Carry, p: Params) -> Carry:
        gx_f, gx_n = gx.chunk(2, dim=-1)
        gh_f, gh_n = gh.chunk(2, dim=-1)
        f = torch.sigmoid(gx_f + gh_f)  # f_t
        n = torch.tanh(gx_n + f * gh_n)  # n_t
        return (state[0] + f * (n - state[0]),)  # h_t = h_{t−1} + f_t ⊙ (n_t − h_{t−1})

    def initial_carry(self, tape: Tape, dc_n: Tensor | None) -> Carry:
        return ()

    def backward(self, t: int, dh: Tensor, carry: Carry, tape: Tape, p: Params) -> StepGrads:
        f, n = tape.gates[t].chunk(2, dim=-1)
        h_prev, ghn = tape.h_prev[t], tape.extras["ghn"][t]
        dz_n = dh * f * (1 - n * n)  # ∂L/∂z_n = ∂L/∂h_t ⊙ f_t ⊙ tanh'
        df = dh * (n - h_prev) + dz_n * ghn  # f_t enters h_t and n_t
        dz_f = df * f * (1 - f)  # ∂L/∂z_f = ∂L/∂f_t ⊙ σ'
        dgx = torch.cat([dz_f, dz_n], dim=-1)
        dgh = torch.cat([dz_f, dz_n * f], dim=-1)  # ∂L/∂(W_hn h_{t−1} + b_hn) = ∂L/∂z_n ⊙ f_t
        return StepGrads(dgx, dgh, None, dh * (1 - f), carry)  # the direct path (1 − f_t) ⊙ ∂L/∂h_t

    def grad_terms(self, tape: Tape, p: Params) -> dict[str, Term]:
        return projection_terms(tape, p)

    def gates(self, tape: Tape) -> dict[str, Tensor]:
        f, n = tape.gates.chunk(2, dim=-1)
        return {"f": f, "n": n}


class MGU(RecurrentBase):
    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, **kwargs: object) -> None:
        super().__init__(MGUStep(), input_size, hidden_size, num_layers, **kwargs)  # type: ignore[arg-type]


def _ranges(step: MGUStep) -> dict[str, tuple[float, float] | None]:
    return {"f": (0.0, 1.0), "n": (-1.0, 1.0)}


SPEC = CellSpec(
    name="mgu",
    summary="the minimal gated unit (Zhou et al. 2016), reset-after",
    step=MGUStep,
    module=MGU,
    roles={"forget": "f", "candidate": "n"},
    gate_ranges=_ranges,
    bound_note="the Elman bound does not apply (f_t mixes the old and new state)",
)


@pytest.fixture(autouse=True)
def mgu() -> Iterator[CellSpec]:
    registry.register(SPEC)
    yield SPEC
    registry.unregister("mgu")


def _unrolled(P: dict[str, Tensor], x: Tensor) -> list[Tensor]:
    """The equations above with plain autograd, every h_t kept."""
    H = P["weight_hh_l0"].shape[1]
    h = x.new_zeros(x.shape[1], H)
    hs = []
    for t in range(x.shape[0]):
        gi = x[t] @ P["weight_ih_l0"].T + P["bias_ih_l0"]
        gh = h @ P["weight_hh_l0"].T + P["bias_hh_l0"]
        f = torch.sigmoid(gi[:, :H] + gh[:, :H])
        n = torch.tanh(gi[:, H:] + f * gh[:, H:])
        h = (1 - f) * h + f * n
        h.retain_grad()
        hs.append(h)
    return hs


def test_trace_of_the_new_cell_equals_autograd() -> None:
    torch.manual_seed(0)
    model = MGU(3, 5, dtype=torch.float64)
    x = torch.randn(9, 4, 3, dtype=torch.float64)
    loss_fn = lambda out, h: (out * torch.linspace(-1, 1, 5, dtype=torch.float64)).pow(2).sum()  # noqa: E731
    tr = bptt.trace(model, x, loss_fn)
    P = {n: p.detach().clone().requires_grad_(True) for n, p in model.named_parameters()}
    hs = _unrolled(P, x)
    loss = loss_fn(torch.stack(hs), hs[-1])
    loss.backward()
    assert float(tr.loss) == pytest.approx(float(loss.detach()), rel=1e-12)
    for name, p in P.items():
        assert rel_err(tr.grads[name], p.grad) < 1e-10, name
    assert rel_err(tr.dh[0], torch.stack([h.grad for h in hs])) < 1e-10
    total = sum(tr.contribution(k)["weight_hh_l0"] for k in range(9))
    assert rel_err(total, P["weight_hh_l0"].grad) < 1e-10  # the per-step terms sum to the gradient
    assert set(tr.gates) == {"f", "n"}


def test_every_diagnostic_reads_the_new_cell_from_its_spec() -> None:
    torch.manual_seed(0)
    tr = bptt.trace(MGU(2, 6), torch.randn(12, 3, 2), lambda out, h: out[-1].sum())
    rec = summarize(tr, samples=2, full=True)
    assert rec.cell == "mgu"
    assert set(rec.saturation) == {"f", "n"} and all(v is not None for v in rec.saturation.values())
    assert rec.jacobian_log_state is not None and rec.lyapunov is not None
    assert rec.jacobian_log_state[-1] == pytest.approx(0.0)  # ‖∂s_{T−1}/∂s_{T−1}‖ = 1
    assert rec.bounds[0].verdict == SPEC.bound_note and rec.bounds[0].cell == "mgu"
    assert len(rec.lyapunov.exponents) == 6
    stats = gate_stats(tr)
    f = tr.gates["f"]
    assert stats["f"].overall_saturated == pytest.approx(float(((f <= 0.01) | (f >= 0.99)).double().mean()))


def test_training_initialisation_and_the_command_line_take_the_new_cell(tmp_path: Path) -> None:
    cfg = TrainConfig(
        task="adding",
        protocol="le",
        cell="mgu",
        seq_len=10,
        hidden_size=6,
        batch_size=4,
        test_size=16,
        steps=4,
        eval_every=2,
        monitor_every=2,
        forget_bias=2.0,
        init="orthogonal",
    )
    _, model = build(cfg)
    assert torch.equal(model.core.bias_ih_l0[:6], torch.full((6,), 2.0))  # roles: "forget" is block f
    assert torch.equal(model.core.bias_hh_l0[:6], torch.zeros(6))
    summary = train(cfg, tmp_path / "run")
    assert summary["cell"] == "mgu" and summary["steps"] == 4
    final = json.loads((tmp_path / "run" / "final_diagnostics.json").read_text())
    assert final["cell"] == "mgu" and set(final["saturation"]) == {"f", "n"}
    with pytest.raises(ValueError, match="identity initialisation does not apply to the mgu"):
        build(TrainConfig(cell="mgu", init="identity"))
    assert (
        cli.main(["train", "--dry-run", "--task", "copy", "--cell", "mgu", "--out", str(tmp_path / "cli")])
        == 0
    )
    assert json.loads((tmp_path / "cli" / "summary.json").read_text())["cell"] == "mgu"

    page = write_report([tmp_path / "run", tmp_path / "cli"], tmp_path / "report.html")
    text = page.read_text()
    assert "mgu" in text and text.count("<img") >= 3


def test_the_bench_times_and_checks_the_new_cell() -> None:
    assert "mgu" in bench.cells()
    cfg = bench.BenchConfig(
        cells=("mgu",), shapes=((2, 5, 3, 4),), repeats=1, warmup=0, trace=False, watch=False
    )
    result = bench.run(dataclasses.replace(cfg, contributions=False))
    (row,) = result.rows
    assert row.cell == "mgu" and row.reference == "torch.nn.LSTM" and row.check == "pytorch loop float64"
    assert row.max_rel_err < 1e-5 and row.ratio > 0


def test_no_file_of_the_package_names_the_new_cell() -> None:
    sources = [p for p in SRC.rglob("*") if p.suffix in (".py", ".cpp", ".html", ".j2")]
    assert len(sources) > 40
    for path in sources:
        assert re.search(r"\bmgu\b", path.read_text(), re.IGNORECASE) is None, path


def test_second_derivatives_of_the_new_cell() -> None:
    """Its `cell` (the step out of place) gives exact second derivatives: gradgradcheck in float64."""
    torch.manual_seed(0)
    model = MGU(2, 2, dtype=torch.float64)
    names = [n for n, _ in model.named_parameters()]
    x = torch.randn(3, 2, 2, dtype=torch.float64, requires_grad=True)

    def f(x: Tensor, *weights: Tensor) -> Tensor:
        return model.run(x, params=dict(zip(names, weights, strict=True)))[0]

    weights = tuple(p.detach().clone().requires_grad_(True) for p in model.parameters())
    assert torch.autograd.gradgradcheck(f, (x, *weights), fast_mode=True)
