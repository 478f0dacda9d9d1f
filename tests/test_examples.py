"""The worked examples run (at tiny sizes) and write what they promise."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import bptt
from bptt.diagnostics import monitor

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_the_word_language_model_is_watched_and_reported(tmp_path, capsys) -> None:
    spec = importlib.util.spec_from_file_location("word_lm", EXAMPLES / "word_lm.py")
    assert spec is not None and spec.loader is not None
    word_lm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(word_lm)
    summary = word_lm.main(["--dry-run", "--out", str(tmp_path)])
    records = monitor.load(tmp_path)
    assert [r["step"] for r in records] == list(range(0, summary["steps"], 5))
    assert {r["module"] for r in records} == {"rnn"}
    assert all(len(r["dh_mean"]) == 2 and len(r["dh_mean"][0]) == 12 for r in records)  # 2 layers, T = 12
    assert all(r["lag_sources"] == 12 and 0 <= r["horizon"] <= 11 for r in records)  # a loss at every step
    assert all(math.isfinite(r["loss"]) for r in records)
    assert 1 < summary["valid_perplexity"] < summary["vocab"]
    assert (tmp_path / "report.html").stat().st_size > 10_000
    assert "validation perplexity" in capsys.readouterr().out
    assert bptt.reports.load_run(tmp_path).snapshots == records
