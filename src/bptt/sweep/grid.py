"""The grid of a sweep: `bptt train` flags, where a comma-separated value is an axis.

    bptt sweep --cell rnn,lstm,gru --seq-len 10,20,50 --seed 0,1,2 --steps 500 --out runs/s

is the product cell × seq_len × seed (27 runs) with `--steps 500` in every one. A TOML file says
the same (`--spec FILE.toml`): a list is an axis, anything else a fixed flag, `true` a switch:

    task = "adding"
    steps = 500
    cell = ["rnn", "lstm", "gru"]
    seq_len = [10, 20, 50]
    seed = [0, 1, 2]

Every grid point is parsed by `bptt train`'s own parser, so a bad value is refused before anything
runs, with the message `bptt train` would give. A point's identity is the SHA-256 of its resolved
`TrainConfig` (`config_key`): two spellings of the same settings are one run.

Note: `--tbptt K1,K2` has a comma of its own; give several with `;` (`--tbptt "10,20;20,40"`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from .._checks import InputError
from ..training.trainer import TrainConfig

SEPARATORS = {"--tbptt": ";"}  # flags whose single value contains commas


@dataclass(frozen=True)
class Axis:
    """One flag of `bptt train` and its values (one value: a fixed setting; none: a switch)."""

    flag: str  # "--seq-len"
    values: tuple[str, ...]
    switch: bool = False


@dataclass(frozen=True)
class Point:
    """One run of a sweep: its settings, its readable name and its key."""

    name: str
    argv: tuple[str, ...]
    config: TrainConfig
    key: str


def flag_name(key: str) -> str:
    """`seq_len` or `seq-len` or `--seq-len` → `--seq-len`."""
    return "--" + key.lstrip("-").replace("_", "-")


def config_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The config as plain JSON values (tuples as lists)."""
    plain: dict[str, Any] = json.loads(json.dumps(asdict(cfg)))
    return plain


def config_from_dict(d: Mapping[str, Any]) -> TrainConfig:
    """The inverse of `config_dict`; unknown keys are an error.

    Example:
        >>> cfg = TrainConfig(cell="gru", tbptt=(10, 20))
        >>> config_from_dict(config_dict(cfg)) == cfg
        True
    """
    names = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise InputError(
            f"unknown training settings {', '.join(unknown)}; expected some of {', '.join(sorted(names))}"
        )
    values = dict(d)
    if values.get("tbptt") is not None:
        values["tbptt"] = tuple(values["tbptt"])
    return TrainConfig(**values)


def config_key(cfg: TrainConfig) -> str:
    """SHA-256 of the resolved settings: the run's identity in the ledger.

    Example:
        >>> config_key(TrainConfig(seed=1)) == config_key(TrainConfig(seed=1)), config_key(TrainConfig(seed=2)) == config_key(TrainConfig(seed=1))
        (True, False)
    """
    text = json.dumps(config_dict(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def axes_from_flags(flags: Mapping[str, str | bool | None]) -> list[Axis]:
    """Axes from raw flag values (`{"--cell": "rnn,lstm", "--no-early-stop": True}`); None is unset."""
    axes = []
    for flag, value in flags.items():
        if value is None or value is False:
            continue
        if value is True:
            axes.append(Axis(flag, (), switch=True))
            continue
        sep = SEPARATORS.get(flag, ",")
        values = tuple(v.strip() for v in str(value).split(sep) if v.strip())
        if not values:
            raise InputError(f"expected a value or a {sep!r}-separated list for {flag}, got {value!r}")
        axes.append(Axis(flag, values))
    return axes


def axes_from_toml(path: str | Path) -> tuple[list[Axis], dict[str, Any]]:
    """Axes from a TOML spec, and its `[sweep]` table (out, executor, workers, max_attempts)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10: the backport
        import tomli as tomllib

    path = Path(path)
    if not path.is_file():
        raise InputError(f"expected a TOML sweep spec at {path}, found no such file")
    try:
        spec = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"{path} is not valid TOML: {err}") from None
    options = spec.pop("sweep", {})
    if not isinstance(options, dict):
        raise InputError(f"expected [sweep] in {path} to be a table, got {type(options).__name__}")
    axes = []
    for key, value in spec.items():
        flag = flag_name(key)
        if isinstance(value, dict):
            raise InputError(f"expected {key} in {path} to be a value or a list, got a table")
        if isinstance(value, bool):
            if value:
                axes.append(Axis(flag, (), switch=True))
            continue
        values = value if isinstance(value, list) else [value]
        if not values:
            raise InputError(f"expected at least one value for {key} in {path}, got an empty list")
        axes.append(Axis(flag, tuple(_toml_value(flag, v) for v in values)))
    return axes, options


def _toml_value(flag: str, v: Any) -> str:
    if isinstance(v, list):  # --tbptt = [[10, 20], [20, 40]]
        return ",".join(str(x) for x in v)
    if isinstance(v, (str, int, float)) and not isinstance(v, bool):
        return str(v)
    raise InputError(f"expected a string or a number for {flag}, got {v!r}")


def merge(base: Sequence[Axis], override: Sequence[Axis]) -> list[Axis]:
    """The axes of `base` with those of `override` replacing the same flags (command line over file)."""
    flags = {a.flag for a in override}
    return [a for a in base if a.flag not in flags] + list(override)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_") or "x"


def points(axes: Sequence[Axis], parse: Any) -> list[Point]:
    """Every grid point, in the order of the axes (the last varies fastest), duplicates removed.

    `parse(argv) -> TrainConfig` is `bptt train`'s parser: each point's flags are checked exactly
    as `bptt train` checks them.
    """
    varying = [a for a in axes if len(a.values) > 1]
    out: dict[str, Point] = {}
    for combo in itertools.product(*[a.values or ("",) for a in axes]):
        argv: list[str] = []
        for axis, value in zip(axes, combo, strict=True):
            argv += [axis.flag] if axis.switch else [axis.flag, value]
        cfg = parse(argv)
        chosen = dict(zip([a.flag for a in axes], combo, strict=True))
        name = "_".join(f"{a.flag.lstrip('-')}-{_slug(chosen[a.flag])}" for a in varying) or "run"
        key = config_key(cfg)
        if key not in out:
            out[key] = Point(name, tuple(argv), cfg, key)
    names = [p.name for p in out.values()]
    if len(set(names)) != len(names):  # two spellings of one value that resolve differently
        return [Point(f"{p.name}_{p.key[:8]}", p.argv, p.config, p.key) for p in out.values()]
    return list(out.values())
