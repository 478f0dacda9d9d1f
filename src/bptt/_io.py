"""Files written so that nothing is lost: a temporary file in the same folder, then an atomic rename.

JSON goes through one serialiser, `dumps`: strict JSON (no bare NaN or Infinity, which strict
parsers, `jq` and browsers reject). A non-finite number is written as `null`, and the nearest
enclosing object gets a `"non_finite"` field saying what it was:

    >>> print(dumps({"test_loss": float("inf"), "curve": [1.0, float("nan")]}, indent=None))
    {"test_loss": null, "curve": [1.0, null], "non_finite": {"test_loss": "inf", "curve/1": "nan"}}
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

import torch

#: the name every temporary file of an atomic write starts with: `.NAME.` … `.tmp`
TMP_SUFFIX = ".tmp"

NON_FINITE = "non_finite"


def _atomic(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
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


def leftovers(folder: Path | str, names: Iterable[str]) -> list[Path]:
    """Temporary files that an interrupted atomic write of one of `names` in `folder` left behind."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for name in names for p in folder.glob(f".{name}.*{TMP_SUFFIX}") if p.is_file())


def _plain(value: Any) -> Any:
    """Tensors and numpy scalars as Python numbers or lists; anything else as it is."""
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", None) == 0:
        return value.item()
    return value


def _strict(obj: Any, path: str, found: dict[str, str]) -> Any:
    """`obj` with every non-finite float replaced by None; `found` maps their paths to what they were."""
    obj = _plain(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        found[path] = "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
        return None
    if isinstance(obj, dict):
        inner: dict[str, str] = {}
        out = {str(k): _strict(v, str(k), inner) for k, v in obj.items()}
        if inner:
            out[NON_FINITE] = {**out.get(NON_FINITE, {}), **inner}
        return out
    if isinstance(obj, (list, tuple)):
        return [_strict(v, f"{path}/{i}" if path else str(i), found) for i, v in enumerate(obj)]
    return obj


def strict(obj: Any) -> Any:
    """`obj` as strict-JSON-ready data: non-finite numbers → null plus a `non_finite` note beside them."""
    found: dict[str, str] = {}
    out = _strict(obj, "", found)
    if found:
        raise ValueError(f"non-finite numbers outside any object, at {', '.join(found)}: wrap them in a dict")
    return out


def dumps(obj: Any, indent: int | None = 2) -> str:
    """`obj` as strict JSON (see the module's docstring)."""
    return json.dumps(strict(obj), indent=indent, sort_keys=False, default=str, allow_nan=False)


def write_json(path: Path | str, obj: Any) -> None:
    """Write `obj` as indented strict JSON, atomically."""
    data = (dumps(obj) + "\n").encode()
    _atomic(Path(path), lambda f: f.write(data))


def write_text(path: Path | str, text: str) -> None:
    """Write `text`, atomically."""
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
