"""The driver: register the grid in the ledger, hand runs to an executor, record what comes back.

The same call on the same `out` continues a sweep: done runs are skipped without being touched,
interrupted ones resume from their checkpoints, failed ones are retried until they have had
`max_attempts` attempts. One driver per directory (an exclusive lock on `out/.driver.lock`), and
one process per run (the run lock, `runner.run_lock`), so a config never runs twice at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._checks import InputError
from .executors import ProcessExecutor, RayExecutor
from .grid import Point, config_dict
from .ledger import Ledger
from .runner import MARKER

EXECUTORS = ("process", "ray")


@dataclass(frozen=True)
class SweepOptions:
    """How a sweep runs (not what it runs)."""

    executor: str = "process"
    workers: int | None = None  # default: the CPU count (process) or the Ray cluster's CPUs
    address: str | None = None  # Ray: "auto", "ray://host:port"; None: a local instance
    max_attempts: int = 3
    threads: int = 1  # torch threads per run
    busy_retry_s: float = 5.0  # wait before asking again for a run another process holds
    deadline_s: float | None = None  # dispatch no new run after this many seconds (in-flight ones finish)

    def validate(self) -> SweepOptions:
        if self.executor not in EXECUTORS:
            raise InputError(f"unknown executor {self.executor!r}; expected one of {', '.join(EXECUTORS)}")
        if self.workers is not None and self.workers < 1:
            raise InputError(f"expected --workers ≥ 1, got {self.workers}")
        if self.max_attempts < 1:
            raise InputError(f"expected --max-attempts ≥ 1, got {self.max_attempts}")
        if self.deadline_s is not None and not self.deadline_s > 0:
            raise InputError(f"expected a positive --deadline, got {self.deadline_s}")
        if self.threads < 1:
            raise InputError(f"expected --threads ≥ 1, got {self.threads}")
        if self.address is not None and self.executor != "ray":
            raise InputError("--address is for --executor ray")
        return self


Progress = Callable[[dict[str, int], str], None]


@contextlib.contextmanager
def driver_lock(out: Path) -> Iterator[None]:
    fd = os.open(out / ".driver.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(f"another sweep driver is running on {out}; wait for it or stop it") from None
        yield
    finally:
        os.close(fd)


def _sweep_id(out: Path) -> str:
    marker = out / MARKER
    if marker.is_file():
        return marker.read_text().strip()
    token = secrets.token_hex(8)
    marker.write_text(token + "\n")
    return token


def register(ledger: Ledger, out: Path, grid: Sequence[Point]) -> None:
    for p in grid:
        ledger.add(p.key, p.name, str(out / p.name), config_dict(p.config))


def run_sweep(
    grid: Sequence[Point],
    out: str | Path,
    options: SweepOptions = SweepOptions(),
    progress: Progress | None = None,
    meta: dict[str, Any] | None = None,
) -> dict[str, int]:
    """Run every point of `grid` not yet done, into `out`; returns the ledger's counts by status.

    Example:
        >>> import tempfile
        >>> from bptt.cli.sweep import parse_train
        >>> from bptt.sweep import points, axes_from_flags
        >>> grid = points(axes_from_flags({"--task": "adding", "--seq-len": "5", "--steps": "2",
        ...     "--hidden-size": "4", "--test-size": "8", "--seed": "0,1"}), parse_train)
        >>> counts = run_sweep(grid, tempfile.mkdtemp(), SweepOptions(workers=1))
        >>> counts["done"]
        2
    """
    options = options.validate()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with driver_lock(out):
        ledger = Ledger(out)
        try:
            if meta is not None:
                ledger.set_meta("sweep", meta)
            register(ledger, out, grid)
            ledger.recover()
            return _drive(ledger, out, [p.key for p in grid], options, progress)
        finally:
            ledger.close()


def _drive(
    ledger: Ledger, out: Path, keys: Sequence[str], options: SweepOptions, progress: Progress | None
) -> dict[str, int]:
    sweep_id = _sweep_id(out)
    rows = {r["key"]: r for r in ledger.rows(keys)}
    todo: deque[str] = deque(
        k
        for k in keys
        if rows[k]["status"] == "pending"
        or (rows[k]["status"] == "failed" and rows[k]["attempts"] < options.max_attempts)
    )

    def counts() -> dict[str, int]:
        c = {s: 0 for s in ("pending", "running", "done", "failed")}
        for r in ledger.rows(keys):
            c[r["status"]] += 1
        return c

    def show(what: str) -> None:
        if progress is not None:
            progress(counts(), what)

    show("starting")
    if not todo:
        return counts()
    executor: ProcessExecutor | RayExecutor
    if options.executor == "ray":
        executor = RayExecutor(options.workers, options.address, options.threads)
    else:
        executor = ProcessExecutor(min(options.workers or os.cpu_count() or 1, len(todo)), options.threads)
    waiting: dict[str, float] = {}  # busy runs: when to ask again
    running: set[str] = set()
    stop_at = None if options.deadline_s is None else time.time() + options.deadline_s
    try:
        while todo or running or waiting:
            now = time.time()
            if stop_at is not None and now >= stop_at and (todo or waiting):
                todo.clear()
                waiting.clear()
                show("deadline: no new runs")
            for key in [k for k, t in waiting.items() if t <= now]:
                waiting.pop(key)
                todo.append(key)
            while todo and len(running) < executor.slots:
                key = todo.popleft()
                row = ledger.row(key)
                ledger.start(key)
                executor.submit(key, _load(row["config"]), row["run_dir"], sweep_id)
                running.add(key)
            for kind, key, payload in executor.poll(timeout=0.5):
                if kind == "beat":
                    ledger.beat(key, payload)
                    continue
                running.discard(key)
                name = ledger.row(key)["name"]
                if kind == "died":
                    ledger.fail(key, payload)
                    _retry(ledger, key, options, todo)
                    show(f"{name}: {payload}")
                    continue
                mode = payload["mode"]
                if mode == "busy":
                    ledger.release(key, "busy")
                    waiting[key] = time.time() + options.busy_retry_s
                elif mode == "error":
                    ledger.fail(
                        key,
                        payload["error"] + ("\n" + payload["traceback"] if "traceback" in payload else ""),
                    )
                    _retry(ledger, key, options, todo)
                    show(f"{name}: failed ({payload['error']})")
                else:
                    ledger.note(key, mode)
                    ledger.finish(key, payload["summary"])
                    show(f"{name}: {'solved' if payload['summary'].get('solved') else 'done'}")
    finally:
        executor.close()
    return counts()


def _retry(ledger: Ledger, key: str, options: SweepOptions, todo: deque[str]) -> None:
    if ledger.row(key)["attempts"] < options.max_attempts:
        todo.append(key)


def _load(text: str) -> dict[str, Any]:
    import json

    value: dict[str, Any] = json.loads(text)
    return value
