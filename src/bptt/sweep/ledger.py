"""The ledger: one SQLite row per run of a sweep, the source of truth about what has been done.

`DIR/ledger.sqlite` (WAL journal) holds

    runs    key (SHA-256 of the resolved config), name, run_dir, config, status (pending, running,
            done, failed), attempts, heartbeat, started, ended, error, and the summary's figures
    events  what happened to each run, in order: start, resume, found, done, failed, interrupted, …
    meta    the sweep's grid and options, so that `bptt sweep resume DIR` needs nothing else

Only the driver writes it, each change in its own transaction; workers report to the driver.
A row left `running` by a driver that died is set back to `pending` when the next driver opens
the ledger (`recover`): what its run had written (checkpoint, summary) is still on disk.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

STATUSES = ("pending", "running", "done", "failed")
FIGURES = (
    "test_loss",
    "baseline_loss",
    "test_error_rate",
    "solved",
    "steps",
    "sequences",
    "wall_s",
    "stopped",
)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    run_dir TEXT NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ({", ".join(repr(s) for s in STATUSES)})),
    attempts INTEGER NOT NULL DEFAULT 0,
    heartbeat REAL,
    started REAL,
    ended REAL,
    error TEXT,
    step INTEGER,
    test_loss REAL,
    baseline_loss REAL,
    test_error_rate REAL,
    solved INTEGER,
    steps INTEGER,
    sequences INTEGER,
    wall_s REAL,
    stopped TEXT,
    summary TEXT
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    time REAL NOT NULL,
    event TEXT NOT NULL,
    detail TEXT
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

LEDGER = "ledger.sqlite"


class Ledger:
    """The SQLite ledger of the sweep in `out`.

    Example:
        >>> import tempfile
        >>> led = Ledger(tempfile.mkdtemp())
        >>> led.add("k1", "lstm", "runs/lstm", {"cell": "lstm"})
        True
        >>> led.start("k1"); led.finish("k1", {"test_loss": 0.001, "solved": True, "steps": 40})
        >>> row = led.row("k1"); row["status"], row["attempts"], row["solved"]
        ('done', 1, 1)
        >>> led.close()
    """

    def __init__(self, out: str | Path) -> None:
        self.path = Path(out) / LEDGER
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # a finished run survives a power cut too
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _event(self, db: sqlite3.Connection, key: str, event: str, detail: Any = None) -> None:
        db.execute(
            "INSERT INTO events (key, time, event, detail) VALUES (?, ?, ?, ?)",
            (key, time.time(), event, None if detail is None else json.dumps(detail, default=str)),
        )

    # -- writes (the driver only) ------------------------------------------------------------------

    def set_meta(self, name: str, value: Any) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, json.dumps(value)))

    def add(self, key: str, name: str, run_dir: str, config: dict[str, Any]) -> bool:
        """Register a run as pending; False (and nothing changed) if the ledger has it already."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO runs (key, name, run_dir, config, status) VALUES (?, ?, ?, ?, 'pending')",
                (key, name, run_dir, json.dumps(config, sort_keys=True)),
            )
            return cur.rowcount == 1

    def recover(self) -> list[str]:
        """Rows left `running` by a driver that died go back to `pending`; returns their keys."""
        with self._tx() as db:
            keys = [r["key"] for r in db.execute("SELECT key FROM runs WHERE status = 'running'")]
            for key in keys:
                db.execute("UPDATE runs SET status = 'pending' WHERE key = ?", (key,))
                self._event(db, key, "interrupted")
            return keys

    def start(self, key: str) -> None:
        now = time.time()
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET status = 'running', attempts = attempts + 1, started = ?, heartbeat = ?, "
                "ended = NULL, error = NULL WHERE key = ?",
                (now, now, key),
            )
            self._event(db, key, "dispatch")

    def beat(self, key: str, step: int | None = None) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET heartbeat = ?, step = COALESCE(?, step) WHERE key = ?",
                (time.time(), step, key),
            )

    def note(self, key: str, event: str, detail: Any = None) -> None:
        with self._tx() as db:
            self._event(db, key, event, detail)

    def finish(self, key: str, summary: dict[str, Any]) -> None:
        figures = {name: summary.get(name) for name in FIGURES}
        if isinstance(figures["solved"], bool):
            figures["solved"] = int(figures["solved"])
        with self._tx() as db:
            db.execute(
                f"UPDATE runs SET status = 'done', ended = ?, heartbeat = ?, error = NULL, summary = ?, "
                f"{', '.join(f'{n} = ?' for n in FIGURES)} WHERE key = ?",
                (time.time(), time.time(), json.dumps(summary, default=str), *figures.values(), key),
            )
            self._event(db, key, "done")

    def fail(self, key: str, error: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET status = 'failed', ended = ?, error = ? WHERE key = ?",
                (time.time(), error, key),
            )
            self._event(db, key, "failed", error)

    def release(self, key: str, event: str, detail: Any = None) -> None:
        """Back to pending without counting an attempt (the run was not this config's fault)."""
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET status = 'pending', attempts = MAX(attempts - 1, 0) WHERE key = ?", (key,)
            )
            self._event(db, key, event, detail)

    # -- reads ----------------------------------------------------------------------------------

    def meta(self, name: str) -> Any:
        r = self.db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if r is None else json.loads(r["value"])

    def row(self, key: str) -> dict[str, Any]:
        r = self.db.execute("SELECT * FROM runs WHERE key = ?", (key,)).fetchone()
        if r is None:
            raise KeyError(key)
        return dict(r)

    def rows(self, keys: Iterable[str] | None = None) -> list[dict[str, Any]]:
        rows = [dict(r) for r in self.db.execute("SELECT * FROM runs ORDER BY rowid")]
        if keys is None:
            return rows
        wanted = set(keys)
        return [r for r in rows if r["key"] in wanted]

    def events(self, key: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM events" + (" WHERE key = ?" if key else "") + " ORDER BY id"
        return [dict(r) for r in self.db.execute(sql, (key,) if key else ())]

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for r in self.db.execute("SELECT status, COUNT(*) AS n FROM runs GROUP BY status"):
            counts[r["status"]] = r["n"]
        return counts


def open_existing(out: str | Path) -> Ledger:
    """The ledger of an existing sweep directory, or a clear error."""
    if not (Path(out) / LEDGER).is_file():
        raise FileNotFoundError(f"no sweep in {out}: expected {Path(out) / LEDGER}")
    return Ledger(out)


def status_rows(out: str | Path) -> list[dict[str, Any]]:
    """Per run: name, config, status, attempts, run_dir, error and the summary's figures."""
    ledger = open_existing(out)
    try:
        rows = ledger.rows()
    finally:
        ledger.close()
    keep = (
        "name",
        "key",
        "status",
        "attempts",
        "run_dir",
        "step",
        *FIGURES,
        "heartbeat",
        "started",
        "ended",
        "error",
    )
    result = []
    for r in rows:
        item = {k: r[k] for k in keep}
        item["solved"] = None if r["solved"] is None else bool(r["solved"])
        item["config"] = json.loads(r["config"])
        summary = json.loads(r["summary"]) if r["summary"] else {}
        item["seq_len"] = summary.get("seq_len", item["config"].get("seq_len"))
        result.append(item)
    return result
