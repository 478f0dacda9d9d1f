"""bptt reproduce at CI sizes, and the command line's defaults that solve the adding problem (slow)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bptt.cli import main
from bptt.cli.sweep import parse_train
from bptt.reproduce import copy_chance, vanishing


def test_vanishing_quick_runs_its_grid_and_prints_the_table(tmp_path: Path) -> None:
    assert main(["reproduce", "vanishing", "--quick", "--workers", "2", "--out", str(tmp_path)]) == 0
    table = json.loads((tmp_path / "vanishing.json").read_text())
    assert table["T"] == [5, 10]
    assert sorted(table["success"]) == ["adding · lstm", "adding · rnn"]
    for cells in table["success"].values():
        assert set(cells) == {"5", "10"}
        assert all(v.endswith("/2") for v in cells.values())  # two seeds, every run done
    assert (tmp_path / "report.html").exists() and (tmp_path / "curves.csv").exists()


def test_the_vanishing_grid_is_the_issues_and_goes_shortest_first() -> None:
    plan = vanishing(parse_train)
    assert len(plan.grid) == 2 * 3 * 6 * 5 * 2
    Ts = [p.config.seq_len for p in plan.grid]
    assert Ts == sorted(Ts) and set(Ts) == {10, 20, 50, 100, 200, 500}
    lstm = [p.config for p in plan.grid if p.config.cell == "lstm"]
    rnn = [p.config for p in plan.grid if p.config.cell == "rnn"]
    assert all(c.forget_bias == 1.0 for c in lstm) and all(c.forget_bias is None for c in rnn)
    assert {(c.hidden_size, c.lr, c.steps, c.batch_size) for c in lstm + rnn} == {(64, 0.01, 1000, 32)}
    assert {c.clip for c in rnn} == {"none", "norm"}


def test_copy_baseline_quick_prints_the_memoryless_baseline(tmp_path: Path) -> None:
    assert main(["reproduce", "copy-baseline", "--quick", "--workers", "2", "--out", str(tmp_path)]) == 0
    lines = json.loads((tmp_path / "copy-baseline.json").read_text())
    assert len(lines) == 2 and {x["T"] for x in lines} == {5}
    for x in lines:
        assert x["baseline"] == pytest.approx(10 * math.log(8) / 25)
        assert x["test_loss"] > 0
    assert copy_chance(100) == pytest.approx(0.1733, abs=1e-4)  # Arjovsky et al.'s T = 100 figure


def test_hs97_quick_writes_our_figure_and_the_papers(tmp_path: Path) -> None:
    assert main(["reproduce", "hs97-adding", "--quick", "--out", str(tmp_path)]) == 0
    s = json.loads((tmp_path / "hs97-adding.json").read_text())
    assert s["seq_len"] == 10 and s["trials"] == 2 and s["test_size"] == 64
    assert s["settings"]["input_gate_bias"] == [-3.0, -6.0] and s["settings"]["lr"] == 0.5


@pytest.mark.slow
def test_the_default_lstm_solves_adding_at_t100_and_the_rnn_stays_near_chance(tmp_path: Path) -> None:
    from bptt.training import train

    lstm = train(parse_train(["--task", "adding", "--cell", "lstm", "--seq-len", "100"]), tmp_path / "lstm")
    assert lstm["solved"] and lstm["steps"] <= 3000
    rnn = train(parse_train(["--task", "adding", "--cell", "rnn", "--seq-len", "100"]), tmp_path / "rnn")
    assert not rnn["solved"] and rnn["test_loss"] > 0.5 * rnn["baseline_loss"]
