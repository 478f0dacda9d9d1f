"""Nothing lost, nothing duplicated: real processes killed with SIGKILL, then resumed.

A run killed at a random point — also in the middle of writing a checkpoint, or between its two
renames — and resumed must equal an uninterrupted run with the same settings: every metrics row
(but the wall clock), every diagnostics snapshot, the final weights and the summary. No temporary
file survives.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bptt import cli
from bptt.training import TrainConfig, load_summary, train
from bptt.training import checkpoint as ckpt
from bptt.training.checkpoint import CheckpointError

FLAGS = [
    "train",
    "--task",
    "copy",
    "--seq-len",
    "6",
    "--hidden-size",
    "8",
    "--batch-size",
    "4",
    "--test-size",
    "16",
    "--log-every",
    "1",
    "--eval-every",
    "5",
    "--monitor-every",
    "10",
    "--no-early-stop",
]

STEPS, EVERY = 30, 4  # a checkpoint every 4 steps of 30
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def flags(steps: int, every: int) -> list[str]:
    return [*FLAGS, "--steps", str(steps), "--checkpoint-every", str(every)]


def rows(run: Path) -> list[dict[str, str]]:
    """metrics.csv without the wall clock, which no two runs share."""
    return [
        {k: v for k, v in r.items() if k != "wall_s"}
        for r in csv.DictReader((run / "metrics.csv").read_text().splitlines())
    ]


def snapshots(run: Path) -> list[dict]:
    """The Monitor's diagnostics snapshots (diagnostics.jsonl), one per line."""
    path = run / "diagnostics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def assert_same_run(a: Path, b: Path) -> None:
    """Two run directories hold the same results (wall-clock times aside) and no temporary file."""
    assert rows(a) == rows(b)
    assert snapshots(a) == snapshots(b)
    wa = torch.load(a / "checkpoint.pt", weights_only=True)["model"]
    wb = torch.load(b / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[n], wb[n]) for n in wa)
    sa, sb = load_summary(a), load_summary(b)
    assert {k: v for k, v in sa.items() if k != "wall_s"} == {k: v for k, v in sb.items() if k != "wall_s"}
    assert [p.name for p in b.rglob("*.tmp")] == []


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run every killed one is compared with."""
    out = tmp_path_factory.mktemp("reference")
    assert cli.main([*flags(STEPS, EVERY), "--out", str(out)]) == 0
    return out


def start(argv: list[str], prelude: str = "") -> subprocess.Popen[bytes]:
    code = f"import sys\n{prelude}\nfrom bptt.cli import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.Popen(
        [sys.executable, "-c", code, *argv], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def kill_after_rows(argv: list[str], out: Path, k: int) -> None:
    """Start `bptt train` and SIGKILL it once metrics.csv holds k rows (the run is mid-step by then)."""
    proc = start(argv)
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        path = out / "metrics.csv"
        if path.exists() and path.read_text().count("\n") > k:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"


KILLS = 3  # random kill points in the default suite; the slow one tries many more


@pytest.mark.parametrize("seed", range(KILLS))
def test_killed_at_a_random_point_and_resumed_equals_an_uninterrupted_run(seed, reference, tmp_path) -> None:
    k = random.Random(seed).randrange(2, STEPS - 4)
    out = tmp_path / "run"
    kill_after_rows([*flags(STEPS, EVERY), "--out", str(out)], out, k)
    assert cli.main([*flags(STEPS, EVERY), "--out", str(out), "--resume"]) == 0
    assert_same_run(reference, out)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(KILLS, 30))
def test_many_random_kills(seed, reference, tmp_path) -> None:
    test_killed_at_a_random_point_and_resumed_equals_an_uninterrupted_run(seed, reference, tmp_path)


TORN_WRITE = """
import io, os, signal, torch
real, calls = torch.save, [0]
def save(obj, f, *args, **kwargs):
    calls[0] += 1
    if calls[0] == {n}:  # write half of this checkpoint, then die
        buf = io.BytesIO(); real(obj, buf, *args, **kwargs)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2]); f.flush(); os.fsync(f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)
    return real(obj, f, *args, **kwargs)
torch.save = save
"""

BETWEEN_RENAMES = """
import os, signal
real, calls = os.replace, [0]
def replace(src, dst):
    real(src, dst)
    if str(dst).endswith("checkpoint.prev.pt"):
        calls[0] += 1
        if calls[0] == {n}:  # the latest became the previous; the new one is not in place yet
            os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
"""


@pytest.mark.parametrize(("prelude", "warned"), [(TORN_WRITE, False), (BETWEEN_RENAMES, True)])
@pytest.mark.parametrize("n", [1, 3])
def test_killed_while_writing_a_checkpoint(prelude, warned, n, reference, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    proc = start([*flags(STEPS, EVERY), "--out", str(out)], prelude.format(n=n))
    proc.wait(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    assert list(out.glob(".checkpoint.pt.*.tmp"))  # the new checkpoint, torn or not yet in place
    if warned:  # killed between the renames: the latest checkpoint is gone, the previous one holds
        assert not (out / ckpt.LATEST).exists() and (out / ckpt.PREVIOUS).exists()
    assert cli.main([*flags(STEPS, EVERY), "--out", str(out), "--resume"]) == 0
    err = capsys.readouterr().err
    if warned:
        assert err.count("\n") == 1 and "warning: " in err and "resuming from the one before" in err
    assert_same_run(reference, out)


def test_a_torn_latest_checkpoint_falls_back_to_the_previous_with_a_warning(
    reference, tmp_path, capsys
) -> None:
    out = tmp_path / "run"
    kill_after_rows([*flags(STEPS, EVERY), "--out", str(out)], out, 17)
    latest = out / ckpt.LATEST
    latest.write_bytes(latest.read_bytes()[:100])
    step = torch.load(out / ckpt.PREVIOUS, weights_only=True)["step"]
    with pytest.warns(UserWarning, match=f"damaged or truncated.*resuming from the one before.*step {step}"):
        assert ckpt.load(out)["step"] == step
    assert cli.main([*flags(STEPS, EVERY), "--out", str(out), "--resume"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"resuming from the one before, checkpoint.prev.pt (step {step})" in err
    assert_same_run(reference, out)


def test_two_bad_checkpoints_are_one_clear_error(tmp_path, capsys) -> None:
    tmp_path.joinpath(ckpt.LATEST).write_bytes(b"")
    tmp_path.joinpath(ckpt.PREVIOUS).write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(CheckpointError, match="damaged or truncated"):
        ckpt.load(tmp_path)
    assert cli.main([*flags(20, 5), "--out", str(tmp_path), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "empty or cut short" in err and "the one before is bad too" in err


def test_resume_before_the_first_checkpoint_starts_from_step_0(tmp_path, capsys) -> None:
    out, ref = tmp_path / "run", tmp_path / "ref"
    kill_after_rows([*flags(12, 1000), "--out", str(out)], out, 4)
    assert not (out / ckpt.LATEST).exists()
    assert cli.main([*flags(12, 1000), "--out", str(out), "--resume"]) == 0
    assert "warning: no checkpoint in" in capsys.readouterr().err
    assert cli.main([*flags(12, 1000), "--out", str(ref)]) == 0
    assert_same_run(ref, out)


def test_resume_of_a_finished_run_says_so_and_changes_nothing(tmp_path, capsys) -> None:
    assert cli.main([*flags(12, 5), "--out", str(tmp_path)]) == 0
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert cli.main([*flags(12, 5), "--out", str(tmp_path), "--resume"]) == 0
    assert "already ended at step 12 (steps); --resume changes nothing" in capsys.readouterr().out
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before


def test_leftovers_of_a_killed_run_are_cleaned_at_the_next_start(tmp_path) -> None:
    names = [".checkpoint.pt.abc123.tmp", ".metrics.csv.x.tmp", ".summary.json.y.tmp"]
    for name in names:
        (tmp_path / name).write_bytes(b"half")
    (tmp_path / ".diagnostics.jsonl.z.tmp").write_bytes(b"half")
    (tmp_path / "mine.tmp").write_text("not bptt's: left alone")
    train(TrainConfig(task="adding", seq_len=5, hidden_size=4, batch_size=2, steps=3, test_size=8), tmp_path)
    assert sorted(p.name for p in tmp_path.rglob("*.tmp")) == ["mine.tmp"]


def test_a_fresh_run_in_an_old_directory_forgets_the_old_run(tmp_path) -> None:
    cfg = TrainConfig(
        task="adding",
        seq_len=5,
        hidden_size=4,
        batch_size=2,
        steps=6,
        checkpoint_every=2,
        test_size=8,
        log_every=1,
    )
    train(TrainConfig(**{**cfg.__dict__, "steps": 8, "monitor_every": 1}), tmp_path)
    train(cfg, tmp_path)
    assert (
        torch.load(tmp_path / ckpt.PREVIOUS, weights_only=True)["step"] == 6
    )  # this run's, not the old one's
    steps = [r["step"] for r in snapshots(tmp_path)]
    assert all(step < 6 for step in steps) and len(steps) == len(set(steps))  # none of the old run's 8
    assert [int(r["step"]) for r in rows(tmp_path)] == list(range(6))
