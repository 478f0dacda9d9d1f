"""Nothing silent: strict JSON, skipped steps counted everywhere, the guard's exact findings, rollback."""

from __future__ import annotations

import json
import math

import pytest
import torch

from bptt import _io, cli
from bptt.reports import write_report
from bptt.training import TrainConfig, build, train
from bptt.training.guard import describe, locate
from bptt.training.update import Guard

TINY = {"task": "adding", "seq_len": 6, "hidden_size": 4, "batch_size": 4, "test_size": 16}


def strict_load(text: str) -> object:
    def refuse(constant: str) -> None:
        raise AssertionError(f"bare {constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_become_null_with_a_note() -> None:
    text = _io.dumps(
        {"a": float("inf"), "runs": [{"loss": float("nan")}, {"loss": 1.0}], "t": torch.tensor(2.0)}
    )
    assert strict_load(text) == {
        "a": None,
        "runs": [{"loss": None, "non_finite": {"loss": "nan"}}, {"loss": 1.0}],
        "t": 2.0,
        "non_finite": {"a": "inf"},
    }
    with pytest.raises(ValueError, match="outside any object"):
        _io.dumps([float("-inf")])


def explosive(**kw) -> TrainConfig:
    """A linear RNN whose W_hh is 1e10·Q: its state overflows float32 within a few steps."""
    return TrainConfig(
        **{**TINY, "cell": "rnn", "nonlinearity": "linear", "init": "orthogonal", "init_scale": 1e10, **kw}
    )


EXPLOSIVE_FLAGS = [
    "train",
    "--task", "adding", "--seq-len", "6", "--hidden-size", "4", "--batch-size", "4", "--test-size", "16",
    "--cell", "rnn", "--nonlinearity", "linear", "--init", "orthogonal", "--init-scale", "1e10",
    "--nonfinite", "skip", "--steps", "5", "--eval-every", "5",
]  # fmt: skip


def test_too_many_skipped_steps_fail_the_run_and_every_output_says_so(tmp_path, capsys) -> None:
    assert cli.main([*EXPLOSIVE_FLAGS, "--out", str(tmp_path / "run")]) == 1
    out = capsys.readouterr().out
    assert (
        "5 steps skipped" in out and "failed: 5 of 5 steps were skipped" in out and "more than the 10%" in out
    )
    summary = strict_load((tmp_path / "run" / "summary.json").read_text())
    assert summary["skipped_steps"] == 5 and summary["too_many_skipped"] is True
    strict_load((tmp_path / "run" / "nonfinite.json").read_text())
    page = write_report([tmp_path / "run"], tmp_path / "r.html").read_text()
    assert "5 (too many: failed)" in page and "the non-finite guard skipped a step" in page
    # allowed to skip them all: exit 0, and the line still counts them
    assert cli.main([*EXPLOSIVE_FLAGS, "--max-skipped", "1", "--out", str(tmp_path / "ok")]) == 0
    assert "5 steps skipped" in capsys.readouterr().out


def test_the_guard_names_the_readout_time_step_and_value() -> None:
    torch.manual_seed(0)
    core = torch.nn.RNN(2, 3)
    x = 0.01 * torch.randn(5, 2, 2)
    x[3] = 10.0  # h_3 = tanh(W_ih x_3) ≈ 1 in each unit; before it |h| < 0.1 (no biases, no recurrence)
    readout = torch.nn.Linear(3, 1)
    with torch.no_grad():
        core.weight_ih_l0.fill_(1.0)
        core.weight_hh_l0.zero_()
        core.bias_ih_l0.zero_()
        core.bias_hh_l0.zero_()
        readout.weight.fill_(3e38)  # finite, but h·w overflows float32 where Σ h > 1.14: at step 3 first

    def head(o: torch.Tensor) -> torch.Tensor:
        return readout(o)

    out, _ = core(x)
    y = head(out)
    first = int((~torch.isfinite(y)).flatten(1).any(1).nonzero()[0, 0])
    assert first == 3
    report = locate(core, x, lambda o, s: head(o).sum(), head)
    assert report["where"] == "readout" and report["time_step"] == first
    assert math.isinf(float(report["value"]))
    text = describe({"step": 7, "loss": float("inf"), **report})
    assert f"the readout is first non-finite at time step {first} ({report['value']})" in text


def test_the_guard_names_the_hidden_state_and_its_value(tmp_path) -> None:
    from bptt.training import NonFiniteGradient

    with pytest.raises(NonFiniteGradient) as info:
        train(explosive(steps=2), tmp_path)
    report = info.value.report
    assert (
        report["where"] == "forward"
        and report["quantity"] == "h"
        and report["value"] in ("inf", "-inf", "nan")
    )
    assert f"hidden state h_t of layer 0 first non-finite at time step {report['time_step']}" in str(
        info.value
    )
    assert "first in core.weight_ih_l0" in str(info.value)


def test_an_update_that_overflows_a_weight_is_rolled_back() -> None:
    cfg = TrainConfig(**TINY, cell="gru", optimizer="sgd", lr=1e38, momentum=0.0)
    task, model = build(cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=1e38)
    guard = Guard(model, opt, "none", 1.0)
    batch = next(task.batches(4, torch.Generator().manual_seed(0)))
    loss = 1e6 * task.loss(model(batch.x)[0], batch)  # finite, with gradients that lr·g overflows
    outcome = guard.step(0, [loss], lambda: {})
    assert outcome.skipped and outcome.rolled_back == 0 and outcome.report is not None
    assert outcome.report["cause"] == "update" and outcome.report["value"] in ("inf", "-inf")
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert "made" in describe(outcome.report) and "rolled back" in describe(outcome.report)


def test_an_update_that_overflows_the_next_forward_pass_is_rolled_back() -> None:
    cfg = TrainConfig(**TINY, cell="rnn", optimizer="sgd", lr=1e25, momentum=0.0)
    task, model = build(cfg)
    opt = torch.optim.SGD(model.parameters(), lr=1e25)
    guard = Guard(model, opt, "none", 1.0)
    batches = task.batches(4, torch.Generator().manual_seed(0))
    b0 = next(batches)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    first = guard.step(0, [task.loss(model(b0.x)[0], b0)], lambda: {})
    assert first.report is None  # a finite update, applied: the weights are now ~1e24
    assert all(torch.isfinite(p).all() for p in model.parameters())
    b1 = next(batches)
    pred = model(b1.x)[0]
    loss = task.loss(pred, b1)
    assert not math.isfinite(loss.item())  # the readout's square overflows float32
    second = guard.step(1, [loss], lambda: {"where": "loss"})
    assert second.rolled_back == 0 and second.report is not None
    assert second.report["rolled_back"]["step"] == 0
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # back before step 0
    assert "the update of step 0" in describe(second.report)


def test_rolled_back_updates_are_counted_in_the_run(tmp_path) -> None:
    big = {"cell": "rnn", "nonlinearity": "relu", "init": "orthogonal", "init_scale": 3.0}  # gradients ≫ 1
    cfg = TrainConfig(**TINY, **big, optimizer="sgd", lr=1e38, momentum=0.0, nonfinite="skip", steps=3)
    summary = train(cfg, tmp_path, progress=None)
    assert summary["skipped_steps"] == 3 and summary["rolled_back_updates"] == 3
    assert summary["too_many_skipped"]
    _, fresh = build(cfg)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(saved[k], v) for k, v in fresh.state_dict().items())  # nothing kept
