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
