"""Executors: where a sweep's runs execute. The driver gives them runs and reads back messages.

* `ProcessExecutor` — N long-lived worker processes on this machine, each with its own pipe, so
  that the driver knows which run a dead worker had: a worker killed by a signal fails that run
  only (it is retried up to --max-attempts) and is replaced. Workers send heartbeats over their
  pipe; on Linux they are killed with the driver (PR_SET_PDEATHSIG), and the run lock stops any
  survivor from being run twice.
* `RayExecutor` — each run a Ray task (`num_cpus=1`, no Ray-side retries: the ledger decides),
  on a local Ray instance or on the cluster at `address`.

Messages (`poll`): ("beat", key, step), ("result", key, result dict of `run_one`),
("died", key, why).

Multi-node clusters: runs write to `--out` directly, so every node needs `--out` on a shared file
system (NFS, a cluster file system) mounted at the same path, and bptt installed. A worker that
cannot read the sweep's marker file there fails its run with an error that says so.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import signal
import sys
import time
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from .runner import run_one

Message = tuple[str, str, Any]


def _die_with_parent() -> None:
    """Linux: deliver SIGKILL to this worker when the driver dies (best effort elsewhere)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _worker(conn: Connection, threads: int) -> None:
    """A worker process: run what the driver sends until the pipe closes."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        key = task["key"]

        def beat(step: int, key: str = key) -> None:
            conn.send(("beat", key, step))

        result = run_one(task["config"], task["run_dir"], task.get("sweep_id"), threads, beat)
        conn.send(("result", key, result))


class ProcessExecutor:
    """`workers` processes on this machine, `threads` torch threads each."""

    def __init__(self, workers: int, threads: int = 1) -> None:
        self.slots = workers
        self.threads = threads
        # workers fork from a server that has imported torch and the trainer once (spawning each
        # worker would pay that import per worker; forking the driver would copy its threads)
        self.ctx = mp.get_context("forkserver")
        self.ctx.set_forkserver_preload(["torch", "bptt.training", "bptt.sweep.runner"])
        self.idle: list[tuple[BaseProcess, Connection]] = []
        self.busy: dict[str, tuple[BaseProcess, Connection]] = {}
        for _ in range(workers):
            self.idle.append(self._spawn())

    def _spawn(self) -> tuple[BaseProcess, Connection]:
        ours, theirs = self.ctx.Pipe()
        p = self.ctx.Process(target=_worker, args=(theirs, self.threads), daemon=True)
        p.start()
        theirs.close()
        return p, ours

    def submit(self, key: str, config: dict[str, Any], run_dir: str, sweep_id: str) -> None:
        if not self.idle:
            self.idle.append(self._spawn())
        p, conn = self.idle.pop()
        conn.send({"key": key, "config": config, "run_dir": run_dir, "sweep_id": sweep_id})
        self.busy[key] = (p, conn)

    def pids(self) -> list[int]:
        return [p.pid for p, _ in [*self.idle, *self.busy.values()] if p.pid is not None]

    def poll(self, timeout: float) -> list[Message]:
        if not self.busy:
            time.sleep(timeout)
            return []
        by_handle: dict[Any, str] = {}
        for key, (p, conn) in self.busy.items():
            by_handle[conn] = key
            by_handle[p.sentinel] = key
        out: list[Message] = []
        for ready in wait(list(by_handle), timeout):
            key = by_handle[ready]
            if key not in self.busy:
                continue
            p, conn = self.busy[key]
            try:
                while conn.poll():
                    kind, k, payload = conn.recv()
                    out.append((kind, k, payload))
                    if kind == "result":
                        self.idle.append(self.busy.pop(key))
                        break
            except (EOFError, OSError):
                pass
            if key in self.busy and not p.is_alive():
                p.join()
                code = p.exitcode
                why = (
                    f"worker killed by signal {-code}"
                    if code is not None and code < 0
                    else f"worker exited ({code})"
                )
                self.busy.pop(key)
                conn.close()
                out.append(("died", key, why))
        return out

    def close(self) -> None:
        for _, conn in [*self.idle, *self.busy.values()]:
            conn.close()
        for p, _ in [*self.idle, *self.busy.values()]:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()
        self.idle, self.busy = [], {}


class RayExecutor:
    """Each run a Ray task; a local instance with `num_cpus` CPUs unless `address` names a cluster."""

    def __init__(self, num_cpus: int | None = None, address: str | None = None, threads: int = 1) -> None:
        try:
            import ray
        except ImportError:
            raise RuntimeError("--executor ray needs Ray: pip install 'bptt[ray]'") from None
        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
        self.slots = int(ray.cluster_resources().get("CPU", 1))  # type: ignore[no-untyped-call]
        self.threads = threads
        self.remote = ray.remote(num_cpus=1, max_retries=0)(run_one)
        self.refs: dict[Any, str] = {}

    def submit(self, key: str, config: dict[str, Any], run_dir: str, sweep_id: str) -> None:
        self.refs[self.remote.remote(config, run_dir, sweep_id, self.threads)] = key

    def poll(self, timeout: float) -> list[Message]:
        if not self.refs:
            time.sleep(timeout)
            return []
        done, _ = self.ray.wait(list(self.refs), num_returns=1, timeout=timeout)
        out: list[Message] = [("beat", key, None) for ref, key in self.refs.items() if ref not in done]
        for ref in done:
            key = self.refs.pop(ref)
            try:
                out.append(("result", key, self.ray.get(ref)))
            except self.ray.exceptions.RayError as err:  # the worker or its node died
                out.append(("died", key, f"{type(err).__name__}: {str(err).splitlines()[0]}"))
        return out

    def close(self) -> None:
        for ref in self.refs:
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=True)
        self.refs = {}
        if self.started:
            self.ray.shutdown()
