"""One run of a sweep, as a worker executes it: locked, resumed where it was, never twice at once.

The worker takes an exclusive `flock` on `RUN_DIR/.lock` for as long as it trains; the kernel
drops it when the process ends, however it ends (SIGKILL included). A worker that finds the lock
taken reports `busy` and trains nothing: another process (say, a worker orphaned by a killed
driver) has the run. Then, in order:

* `summary.json` there and written for this config: the run finished before anyone could record
  it; its summary is returned and nothing is trained (`found`);
* `checkpoint.pt` there: the run was interrupted; it resumes from the checkpoint (`resume`), and
  the trainer's exact resume gives the numbers of an uninterrupted run;
* otherwise it starts afresh (`start`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .grid import config_dict, config_from_dict

Report = Callable[[int], None]

MARKER = ".sweep-id"  # written by the driver in --out; a node that cannot read it does not share --out


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[bool]:
    """Yields True holding an exclusive lock on the run directory, False if another process holds it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield True
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _finished(run_dir: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    summary, written = run_dir / "summary.json", run_dir / "config.json"
    if not (summary.is_file() and written.is_file()):
        return None
    if json.loads(written.read_text()).get("train") != config:
        return None
    result: dict[str, Any] = json.loads(summary.read_text())
    return result


def run_one(
    config: dict[str, Any],
    run_dir: str,
    sweep_id: str | None = None,
    threads: int = 1,
    report: Report | None = None,
) -> dict[str, Any]:
    """Train (or resume, or find) one run; returns {"mode", "summary"} or {"mode": "busy"} or {"mode": "error"}.

    Never raises for a failed run: the error and its traceback come back as data, so that the
    driver records it and the sweep goes on.
    """
    import torch

    from ..training import NonFiniteGradient, load_summary, train
    from ..training.trainer import RunFinished

    path = Path(run_dir)
    if sweep_id is not None:
        marker = path.parent / MARKER
        seen = marker.read_text().strip() if marker.is_file() else None
        if seen != sweep_id:
            return {
                "mode": "error",
                "error": f"this worker ({os.uname().nodename}) does not see the sweep's output directory "
                f"{path.parent} (expected {MARKER} = {sweep_id}, found {seen}); every node of a cluster "
                "needs --out on a shared file system at the same path",
            }
    torch.set_num_threads(max(1, threads))
    cfg = config_from_dict(config)
    plain = config_dict(cfg)
    with run_lock(path) as mine:
        if not mine:
            return {"mode": "busy"}
        found = _finished(path, plain)
        if found is not None:
            return {"mode": "found", "summary": _figures(found, cfg.batch_size)}
        resume = (path / "checkpoint.pt").is_file() or (path / "checkpoint.prev.pt").is_file()
        t0 = time.time()
        last = [0.0]

        def progress(row: dict[str, Any]) -> None:
            if report is not None and time.time() - last[0] >= 1.0:
                last[0] = time.time()
                report(int(row["step"]) + 1)

        try:
            with warnings.catch_warnings():
                warnings.simplefilter(
                    "ignore"
                )  # "no checkpoint yet": a torn first checkpoint, started afresh
                summary = train(cfg, path, resume=resume, progress=progress)
        except RunFinished as finished:  # ended, but killed before its summary reached the driver
            return {"mode": "found", "summary": _figures(finished.summary, cfg.batch_size)}
        except NonFiniteGradient:
            summary = load_summary(path)  # the guard stopped it: a result, not a failure
        except Exception as err:  # recorded by the driver; the sweep goes on
            return {
                "mode": "error",
                "error": f"{type(err).__name__}: {err}",
                "traceback": traceback.format_exc(),
                "resumed": resume,
            }
        return {
            "mode": "resume" if resume else "start",
            "summary": _figures(summary, cfg.batch_size),
            "seconds": time.time() - t0,
        }


def _figures(summary: dict[str, Any], batch_size: int) -> dict[str, Any]:
    """The summary with the number of training sequences it took (steps × batch size)."""
    out = dict(summary)
    out["sequences"] = int(summary["steps"]) * batch_size
    return out
