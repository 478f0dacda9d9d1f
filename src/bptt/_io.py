"""Files written so that nothing is lost: a temporary file in the same folder, then an atomic rename."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def _atomic(path: Path, write: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json(path: Path | str, obj: Any) -> None:
    """Write `obj` as indented JSON, atomically."""
    data = (json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n").encode()
    _atomic(Path(path), lambda f: f.write(data))


def write_text(path: Path | str, text: str) -> None:
    _atomic(Path(path), lambda f: f.write(text.encode()))


def torch_save(path: Path | str, obj: Any) -> None:
    """`torch.save`, atomically: an interrupted write leaves the previous file intact."""
    _atomic(Path(path), lambda f: torch.save(obj, f))


def append_jsonl(path: Path | str, obj: Any) -> None:
    """Append `obj` as one JSON line, in one write; a reader skips a line an interruption cut short."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(obj, default=str, allow_nan=False) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_jsonl(path: Path | str) -> list[Any]:
    """The records of a JSON-lines file; a last line cut short by an interruption is left out."""
    lines = Path(path).read_text().splitlines()
    out = []
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if n == len(lines) - 1:
                break
            raise
    return out
