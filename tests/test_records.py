"""Records cross module boundaries as dataclasses and become JSON in one place (`bptt._records`)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pytest
import torch

import bptt
from bptt import _io
from bptt._records import finite, from_json, to_json
from bptt.diagnostics.summary import BoundRecord, LyapunovRecord, SplitRecord, Summary, summarize


@dataclass(frozen=True)
class Inner:
    value: float | None
    curve: list[float | None]


@dataclass(frozen=True)
class Outer:
    name: str
    count: int
    inner: Inner
    by_gate: dict[str, list[float | None]]
    maybe: Inner | None = None


def test_finite_writes_none_for_every_value_that_is_not_finite() -> None:
    x = torch.tensor([[1.0, math.inf], [-math.inf, math.nan]])
    assert finite(x) == [[1.0, None], [None, None]]
    assert finite(2) == 2.0 and finite(math.nan) is None


def test_a_record_goes_to_json_and_back_unchanged() -> None:
    rec = Outer("a", 3, Inner(math.inf, [0.5, math.nan]), {"f": [1.0]})
    data = to_json(rec)
    assert data == {
        "name": "a",
        "count": 3,
        "inner": {"value": None, "curve": [0.5, None]},
        "by_gate": {"f": [1.0]},
        "maybe": None,
    }
    back = from_json(Outer, json.loads(json.dumps(data, allow_nan=False)))
    assert back == Outer("a", 3, Inner(None, [0.5, None]), {"f": [1.0]})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"count": 3, "inner": {"value": 1, "curve": []}, "by_gate": {}}, "expected a field 'name'"),
        (
            {"name": "a", "count": "3", "inner": {"value": 1, "curve": []}, "by_gate": {}},
            r"Outer.count: expected int",
        ),
        (
            {"name": "a", "count": True, "inner": {"value": 1, "curve": []}, "by_gate": {}},
            r"Outer.count: expected int",
        ),
        (
            {"name": "a", "count": 3, "inner": {"value": "x", "curve": []}, "by_gate": {}},
            r"Outer.inner.value",
        ),
        (
            {"name": "a", "count": 3, "inner": {"value": 1, "curve": {}}, "by_gate": {}},
            r"Outer.inner.curve: expected a list",
        ),
        (
            {"name": "a", "count": 3, "inner": {"value": 1, "curve": []}, "by_gate": {"f": [1, "x"]}},
            r"by_gate.f\[1\]",
        ),
    ],
)
def test_a_record_that_does_not_fit_names_the_field(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        from_json(Outer, data)


def test_a_summary_survives_strict_json(tmp_path) -> None:
    torch.manual_seed(0)
    lstm = bptt.LSTM(2, 5, dtype=torch.float64)
    tr = bptt.trace(lstm, torch.randn(12, 3, 2, dtype=torch.float64), lambda out, s: out[-1].sum())
    rec = summarize(tr, samples=2, full=True)
    assert isinstance(rec.split, SplitRecord) and isinstance(rec.lyapunov, LyapunovRecord)
    assert all(isinstance(b, BoundRecord) for b in rec.bounds)
    _io.write_json(tmp_path / "s.json", to_json(rec))
    text = (tmp_path / "s.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert from_json(Summary, json.loads(text)) == rec
    assert rec.steps == 12 and rec.batch == 3 and len(rec.distance) == 12
    assert rec.jacobian_log_cec is not None and rec.jacobian_log_cec[-1] == pytest.approx(
        0.0
    )  # ∏ over no steps


def test_an_rnn_summary_has_no_cell_state_parts() -> None:
    tr = bptt.trace(bptt.RNN(2, 4), torch.randn(6, 2, 2), lambda out, h: out[-1].sum())
    rec = summarize(tr, full=True)
    assert rec.cell == "rnn (tanh)" and rec.dc_mean is None and rec.split is None
    assert rec.jacobian_log_c is None and rec.forget_histogram is None and rec.lyapunov is not None


def test_new_bound_and_lyapunov_fields_round_trip_and_old_json_still_reads() -> None:
    torch.manual_seed(0)
    gru = bptt.GRU(2, 4, dtype=torch.float64)
    tr = bptt.trace(gru, torch.randn(30, 2, 2, dtype=torch.float64), lambda out, h: out[-1].sum())
    rec = summarize(tr, samples=2, full=True)
    (b,) = rec.bounds
    assert b.gate_lambda1 is not None and set(b.gate_lambda1) == {"r", "z", "n"}
    assert b.step_rate is not None and b.measured_verdict is not None
    ly = rec.lyapunov
    assert ly is not None and ly.burn_in is not None and ly.steps == 30 - ly.burn_in
    assert ly.stderr is not None and ly.max_stderr == ly.stderr[0] and ly.spread is not None
    data = json.loads(json.dumps(to_json(rec), allow_nan=False))
    assert from_json(Summary, data) == rec
    for key in ("gate_lambda1", "step_rate", "measured_verdict"):  # a record written before these fields
        del data["bounds"][0][key]
    for key in ("burn_in", "steps", "stderr", "max_stderr", "spread", "warning"):
        del data["lyapunov"][key]
    old = from_json(Summary, data)
    assert old.bounds[0].gate_lambda1 is None and old.lyapunov is not None and old.lyapunov.warning is None
    assert old.lyapunov.max == ly.max


def test_diagnose_console_lines_say_what_applies_to_the_cell() -> None:
    from bptt.cli.diagnose import summary_lines

    torch.manual_seed(0)
    x = torch.randn(8, 2, 2, dtype=torch.float64)
    gru = summary_lines(
        summarize(bptt.trace(bptt.GRU(2, 3, dtype=torch.float64), x, lambda o, h: o.sum()), full=True)
    )
    assert any("λ1 per gate block W_hr" in line and "Elman bound does not apply" in line for line in gru)
    assert any(line.strip().startswith("along these inputs") for line in gru)
    assert any("λ_max" in line and "±" in line and "burn-in" in line for line in gru)
    assert any("warning" in line and "too short" in line for line in gru)  # 8 steps
    rnn = summary_lines(summarize(bptt.trace(bptt.RNN(2, 3, dtype=torch.float64), x, lambda o, h: o.sum())))
    assert any("λ1 = " in line and "γ = 1" in line and "γ·λ" in line for line in rnn)
