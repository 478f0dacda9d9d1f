"""The trainer: clipping, the non-finite guard, initialisations, truncated BPTT, runs and resume."""

from __future__ import annotations

import csv
import dataclasses
import json

import pytest
import torch

import bptt
from bptt import _io, cli
from bptt.diagnostics import monitor
from bptt.tasks import TASKS
from bptt.training import (
    NonFiniteGradient,
    TrainConfig,
    build,
    clip_norm_,
    clip_value_,
    initialise,
    load_metrics,
    load_summary,
    locate,
    train,
)
from bptt.training import trainer as trainer_module
from bptt.training.guard import _first_bad_step

TINY = dict(
    task="adding",
    protocol="le",
    seq_len=12,
    hidden_size=8,
    batch_size=4,
    test_size=32,
    eval_every=10,
    log_every=1,
)


def params_with_grads(seed: int, scale: float = 1.0) -> list[torch.nn.Parameter]:
    torch.manual_seed(seed)
    ps = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(7))]
    for p in ps:
        p.grad = torch.randn_like(p) * scale
    return ps


@pytest.mark.parametrize("scale", [0.01, 10.0])
def test_norm_clipping_equals_torch_clip_grad_norm(scale: float) -> None:
    ours, ref = params_with_grads(0, scale), params_with_grads(0, scale)
    norm, fired = clip_norm_(ours, 1.0)
    ref_norm = torch.nn.utils.clip_grad_norm_(ref, 1.0)
    assert norm == pytest.approx(float(ref_norm), rel=1e-6)
    assert fired == (norm >= 1.0)
    for a, b in zip(ours, ref, strict=True):
        assert torch.allclose(a.grad, b.grad, rtol=1e-5)  # torch divides by ‖g‖ + 1e−6
    total = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in ours]))
    assert float(total) == pytest.approx(min(1.0, norm), rel=1e-6)


def test_norm_clipping_keeps_the_direction_across_parameters() -> None:
    ps = params_with_grads(1, 100.0)
    before = torch.cat([p.grad.flatten() for p in ps])
    clip_norm_(ps, 2.0)
    after = torch.cat([p.grad.flatten() for p in ps])
    assert torch.allclose(after / after.norm(), before / before.norm(), atol=1e-6)


def test_value_clipping_equals_torch_clip_grad_value() -> None:
    ours, ref = params_with_grads(2, 3.0), params_with_grads(2, 3.0)
    _, fired = clip_value_(ours, 1.5)
    torch.nn.utils.clip_grad_value_(ref, 1.5)
    assert fired and all(torch.equal(a.grad, b.grad) for a, b in zip(ours, ref, strict=True))


def explosive(nonfinite: str, steps: int = 3, **kw) -> TrainConfig:
    """A linear RNN whose W_hh is 1e10·Q: the state overflows float32 within a few steps."""
    return TrainConfig(
        **{
            **TINY,
            "cell": "rnn",
            "nonlinearity": "linear",
            "init": "orthogonal",
            "init_scale": 1e10,
            "steps": steps,
            "nonfinite": nonfinite,
            **kw,
        }
    )


def test_the_guard_names_parameter_and_step_and_never_applies_the_bad_step(tmp_path) -> None:
    cfg = explosive("stop")
    task, model = build(cfg)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with pytest.raises(NonFiniteGradient) as info:
        train(cfg, tmp_path)
    report = info.value.report
    assert (
        report["step"] == 0
        and report["where"] == "forward"
        and report["quantity"] == "h"
        and report["layer"] == 0
    )
    # independently: the first time step at which this model's state overflows
    x = next(task.batches(cfg.batch_size, torch.Generator().manual_seed(cfg.seed + 1))).x
    out, _ = model.core(x)
    first_bad = int((~torch.isfinite(out)).flatten(1).any(1).nonzero()[0, 0])
    assert report["time_step"] == first_bad
    assert report["parameter"] == next(n for n, _ in model.named_parameters())  # core.weight_ih_l0 is first
    assert "born in the forward pass" in str(info.value) and f"time step {first_bad}" in str(info.value)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert saved["finished"] and saved["step"] == 0  # the run ended at step 0, nothing applied
    # the weights the run ends with are the initial ones: rebuild and run it skipping instead
    assert json.loads((tmp_path / "nonfinite.json").read_text())["time_step"] == first_bad
    assert load_summary(tmp_path)["stopped"] == "nonfinite"
    _, again = build(cfg)
    assert all(torch.equal(p, before[n]) for n, p in again.named_parameters())
    assert all(torch.equal(saved["model"][n], before[n]) for n in before)


def test_the_skip_policy_skips_and_counts(tmp_path) -> None:
    cfg = explosive("skip", steps=4)
    summary = train(cfg, tmp_path)
    assert summary["skipped_steps"] == 4 and summary["steps"] == 4
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    _, fresh = build(cfg)
    assert all(torch.equal(ck["model"][n], p) for n, p in fresh.state_dict().items())  # never updated
    assert all(r["skipped"] == 1.0 for r in load_metrics(tmp_path))


def test_first_bad_step_follows_the_visiting_order() -> None:
    v = torch.ones(2, 5, 1, 1)
    v[1, 1] = float("nan")
    v[0, 3] = float("inf")
    assert _first_bad_step(v, list(range(5))) == (1, 1)  # forward: earliest step first
    assert _first_bad_step(v, list(range(4, -1, -1))) == (0, 3)  # backward: last step first


def test_locate_reports_a_non_finite_input() -> None:
    x = torch.randn(6, 2, 3)
    x[4, 1, 2] = float("nan")
    report = locate(bptt.RNN(3, 4), x, lambda out, h: out.sum())
    assert report == {"where": "input", "time_step": 4, "batch_index": 1, "feature": 2}


def test_a_run_directory_holds_everything(tmp_path) -> None:
    summary = train(TrainConfig(**TINY, steps=20, monitor_every=10, checkpoint_every=10), tmp_path)
    for name in ("config.json", "metrics.csv", "checkpoint.pt", "summary.json"):
        assert (tmp_path / name).exists(), name
    config = json.loads((tmp_path / "config.json").read_text())
    assert (
        config["train"]["hidden_size"] == 8
        and config["task"]["protocol"] == "le"
        and config["task"]["baseline_loss"] == pytest.approx(1 / 6)
    )
    for key in (
        "task",
        "protocol",
        "cell",
        "seq_len",
        "steps",
        "test_loss",
        "baseline_loss",
        "solved",
        "wall_s",
    ):
        assert key in summary
    assert summary["steps"] == 20 and summary == load_summary(tmp_path)
    rows = list(csv.DictReader((tmp_path / "metrics.csv").read_text().splitlines()))
    assert [int(r["step"]) for r in rows] == list(range(20))
    assert rows[9]["test_loss"] != "" and rows[8]["test_loss"] == ""
    assert [r["step"] for r in monitor.load(tmp_path)] == [0, 10]


def run_until(cfg: TrainConfig, out, stop_at: int) -> None:
    def interrupt(row):
        if row["step"] == stop_at:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, out, progress=interrupt)


@pytest.mark.parametrize("stop_at", [9, 13])
def test_resume_gives_the_numbers_of_an_uninterrupted_run(tmp_path, stop_at: int) -> None:
    cfg = TrainConfig(
        **{**TINY, "task": "copy", "protocol": None, "seq_len": 6},
        steps=25,
        checkpoint_every=5,
        monitor_every=5,
    )
    full = train(cfg, tmp_path / "full")
    run_until(cfg, tmp_path / "cut", stop_at)  # after the checkpoint at 5 or 10 steps
    resumed = train(cfg, tmp_path / "cut", resume=True)
    a, b = load_metrics(tmp_path / "full"), load_metrics(tmp_path / "cut")
    assert [r["step"] for r in b] == list(range(25))
    for ra, rb in zip(a, b, strict=True):
        assert (ra["loss"], ra["grad_norm"], ra["test_loss"]) == (
            rb["loss"],
            rb["grad_norm"],
            rb["test_loss"],
        )
    assert resumed["test_loss"] == full["test_loss"]
    wa = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["model"]
    wb = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[n], wb[n]) for n in wa)
    snaps = monitor.load(tmp_path / "cut")  # a step recorded again after the resume counts once
    assert [r["step"] for r in snaps] == [0, 5, 10, 15, 20]
    assert snaps == monitor.load(tmp_path / "full")


def test_resume_refuses_changed_settings(tmp_path) -> None:
    cfg = TrainConfig(**TINY, steps=4, checkpoint_every=2)
    train(cfg, tmp_path)
    with pytest.raises(ValueError, match="these differ: lr"):
        train(dataclasses.replace(cfg, lr=0.5), tmp_path, resume=True)
    with pytest.warns(UserWarning, match="no checkpoint in .* yet: starting from step 0"):
        summary = train(cfg, tmp_path / "empty", resume=True)
    first = load_summary(tmp_path)
    assert summary["steps"] == 4 and summary["test_loss"] == first["test_loss"]


def test_an_interrupted_checkpoint_write_leaves_the_previous_one_intact(tmp_path, monkeypatch) -> None:
    cfg = TrainConfig(**TINY, steps=4, checkpoint_every=2)
    train(cfg, tmp_path)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    real_save = torch.save

    def half_then_die(obj, f, *args, **kwargs):
        f.write(b"\x80\x02partial checkpoint")  # a write cut off midway
        raise OSError("disk full")

    monkeypatch.setattr(_io.torch, "save", half_then_die)
    with pytest.raises(OSError, match="disk full"):
        _io.torch_save(tmp_path / "checkpoint.pt", {"step": 99})
    monkeypatch.setattr(_io.torch, "save", real_save)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 4
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_early_stop_when_the_criterion_is_met(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(trainer_module.Task, "solved", lambda self, metrics: True)
    monkeypatch.setattr(bptt.tasks.adding.Adding, "solved", lambda self, metrics: True)
    summary = train(TrainConfig(**{**TINY, "eval_every": 5}, steps=50), tmp_path)
    assert summary["steps"] == 5 and summary["stopped_early"] and summary["solved"]


def test_full_window_tbptt_equals_bptt() -> None:
    cfg = TrainConfig(**{**TINY, "task": "copy", "protocol": None, "seq_len": 6})
    task, model = build(cfg)
    batch = next(task.batches(4, torch.Generator().manual_seed(0)))
    (full,) = list(trainer_module._losses(cfg, task, model, batch))
    T = batch.x.shape[0]
    (window,) = list(trainer_module._losses(dataclasses.replace(cfg, tbptt=(T, T)), task, model, batch))
    assert torch.allclose(full, window)
    chunks = list(trainer_module._losses(dataclasses.replace(cfg, tbptt=(4, 8)), task, model, batch))
    assert len(chunks) == -(-T // 4)


def test_truncation_cuts_the_gradient_to_early_inputs() -> None:
    cfg = TrainConfig(**TINY, tbptt=(3, 3))
    task, model = build(cfg)
    batch = next(task.batches(4, torch.Generator().manual_seed(0)))
    x = batch.x.clone().requires_grad_(True)
    (loss,) = list(trainer_module._losses(cfg, task, model, dataclasses.replace(batch, x=x)))
    (g,) = torch.autograd.grad(loss, x)
    T = x.shape[0]
    assert torch.count_nonzero(g[: T - 3]) == 0 and torch.count_nonzero(g[T - 3 :]) > 0


def test_orthogonal_per_gate_block_and_one_forget_bias() -> None:
    lstm = bptt.LSTM(3, 5)
    initialise(lstm, "orthogonal", forget_bias=1.0, generator=torch.Generator().manual_seed(0))
    for k in range(4):
        block = lstm.weight_hh_l0[5 * k : 5 * (k + 1)].detach()
        assert torch.allclose(block @ block.T, torch.eye(5), atol=1e-6)
    assert torch.equal(lstm.bias_ih_l0[5:10], torch.ones(5)) and torch.equal(
        lstm.bias_hh_l0[5:10], torch.zeros(5)
    )


def test_chrono_identity_and_input_bias() -> None:
    lstm = torch.nn.LSTM(2, 6)
    initialise(lstm, chrono=50, input_bias=-1.0, generator=torch.Generator().manual_seed(0))
    bf = lstm.bias_ih_l0[6:12].detach()
    assert bool(((bf >= 0) & (bf <= torch.log(torch.tensor(49.0)))).all())
    assert torch.equal(lstm.bias_ih_l0[0:6], -bf)  # chrono sets b_i = −b_f, after the input bias
    rnn = bptt.RNN(2, 4, nonlinearity="relu")
    initialise(rnn, "identity")
    assert torch.equal(rnn.weight_hh_l0, torch.eye(4)) and float(rnn.weight_ih_l0.detach().std()) < 0.01
    assert torch.count_nonzero(rnn.bias_ih_l0) == 0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: initialise(bptt.GRU(2, 3), forget_bias=1.0), "forget_bias needs a cell with a forget gate"),
        (
            lambda: initialise(bptt.LSTM(2, 3), "identity"),
            "identity initialisation does not apply to the lstm",
        ),
        (lambda: initialise(bptt.LSTM(2, 3, variant="cifg"), forget_bias=1.0), "this one has gates 'igo'"),
        (lambda: TrainConfig(tbptt=(5, 7)).validate(), "k2 a multiple of k1"),
        (lambda: TrainConfig(cell="tree").validate(), "unknown cell 'tree'"),
        (lambda: TrainConfig(lr=-1.0).validate(), "positive learning rate"),
    ],
)
def test_bad_training_settings(call, message) -> None:
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("task", list(TASKS))
def test_dry_run_of_every_task_and_cell(task: str, cell: str, tmp_path) -> None:
    assert cli.main(["train", "--dry-run", "--task", task, "--cell", cell, "--out", str(tmp_path)]) == 0
    summary = load_summary(tmp_path)
    assert summary["task"] == task and summary["steps"] == 2
    assert [r["step"] for r in monitor.load(tmp_path)] == [0, 1]
