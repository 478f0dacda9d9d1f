"""The cell registry: every cell family declared once, in one `CellSpec`, and read by everything else.

A spec says what a family is: its name (the `--cell` of `bptt train`, the rows of `bptt bench`),
its module, its options (`variant`, `nonlinearity`) and their choices, the role of each block of
gate rows in `weight_ih`/`weight_hh` (which block is the forget gate the initialisations set),
which recorded gate is the carry path (∂c_t/∂c_{t−1} ⊃ diag(f_t)), the ranges its gates saturate
in, its label, the Elman bound where it applies, and its `torch.nn` twin if it has one.

The command line, training, the initialisations, `bptt diagnose`, the bounds, the gate statistics,
the summaries, the reports and the bench all read the registry; none of them names a family. A new
cell is a `Step` (its equations, cells/rnn.py is the smallest), a module, and one `register(CellSpec(…))`
call, in any file (docs/adding-a-cell.md walks through one).

Lookups by step go by the step's exact type: a subclass that changes the equations is not the
family it derives from, and gets no label, roles or bounds it has not declared.

Example:
    >>> from bptt.cells import registry
    >>> {"rnn", "lstm", "gru"} <= set(registry.names())
    True
    >>> spec = registry.get("lstm")
    >>> spec.roles["forget"], spec.carry_gate
    ('f', 'f')
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .._checks import InputError
from ..engine.sweep import Step
from .base import Option, RecurrentBase

Range = tuple[float, float]  # the interval a gate's activation lives in; saturated within ε of an end


def _no_ranges(step: Any) -> Mapping[str, Range | None]:
    return {}


def _no_gamma(step: Any) -> float | None:
    return None


@dataclass(frozen=True)
class CellSpec:
    """One cell family, declared once.

    Arguments:
        name: the cell's name everywhere (`--cell NAME`, training's `cell`, bench rows).
        summary: one line on what the cell is.
        step: the exact `Step` type of the family's modules.
        module: builds the bptt module: `module(input_size, hidden_size, num_layers=…, **options, **kwargs)`,
            kwargs being `torch.nn`'s (`bias`, `batch_first`, `dropout`, `bidirectional`, `dtype`, …).
        options: option name → its choices, the default first (`{"variant": ("vanilla", …)}`); by
            default the module's `OPTION`. Training passes the `TrainConfig` fields of these names.
        aliases: further names for settings of the options (`"cifg"` → `{"variant": "cifg"}`), rows of
            `bptt bench`.
        roles: role → the gate block (in `step.gate_names`) that plays it: `"forget"`, `"input"`, …;
            the initialisations `forget_bias`, `input_bias` and `chrono` set these blocks' biases.
        carry_gate: the recorded gate on the carry path, c_t = f_t ⊙ c_{t−1} + …; None if there is none.
        gate_ranges: the range of every recorded gate of a step (trace.gates), None where unbounded.
        label: the step as people name it (`"lstm (cifg)"`); default: `name`.
        gamma: sup |a'(z)| of the Elman recurrence h_t = a(W_hh h_{t−1} + …), None where that bound
            does not apply.
        activation_grad: a'(z) from h = a(z), for the bound measured along a trace (with `gamma`).
        bound_note: the verdict shown where `gamma` is None.
        inits: the initialisations of `training.init` that apply (`identity` only for the Elman RNN).
        torch_twin: the `torch.nn` module with the same equations and parameters, if any.
        twin_options: the bptt module's arguments beyond torch.nn's common ones for the twin of a given
            torch module (`{"nonlinearity": module.nonlinearity}`).
        twin_arguments: the torch twin's arguments beyond (input_size, hidden_size, num_layers) for these
            options, or None where torch.nn has no module with these equations (`core="torch"` in training).
        twin_gates: gate blocks in the twin's weights (1, 4, 3): how a state dict is recognised.
    """

    name: str
    summary: str
    step: type
    module: Callable[..., RecurrentBase]
    options: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    aliases: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    roles: Mapping[str, str] = field(default_factory=dict)
    carry_gate: str | None = None
    gate_ranges: Callable[[Any], Mapping[str, Range | None]] = _no_ranges
    label: Callable[[Any], str] | None = None
    gamma: Callable[[Any], float | None] = _no_gamma
    activation_grad: Callable[[Any, Tensor], Tensor] | None = None
    bound_note: str = "the Elman bound does not apply"
    inits: tuple[str, ...] = ("default", "orthogonal")
    torch_twin: type[nn.Module] | None = None
    twin_options: Callable[[nn.Module], dict[str, Any]] | None = None
    twin_arguments: Callable[[Mapping[str, str]], dict[str, Any] | None] | None = None
    twin_gates: int = 0

    def __post_init__(self) -> None:
        option = getattr(self.module, "OPTION", None)
        if not self.options and isinstance(option, Option):
            object.__setattr__(self, "options", {option.name: option.choices})

    def defaults(self) -> dict[str, str]:
        """Every option at its default."""
        return {name: choices[0] for name, choices in self.options.items()}

    def check_options(self, options: Mapping[str, str]) -> dict[str, str]:
        """The options this cell takes, checked against their choices; others are ignored."""
        out = self.defaults()
        for name, choices in self.options.items():
            value = options.get(name, out[name])
            if value not in choices:
                raise InputError(
                    f"unknown {name} {value!r} for the {self.name} cell; expected one of {', '.join(map(repr, choices))}"
                )
            out[name] = value
        return out

    def build(
        self, input_size: int, hidden_size: int, num_layers: int = 1, options: Mapping[str, str] | None = None
    ) -> RecurrentBase:
        """The bptt module with these options (unknown names ignored, bad values refused)."""
        return self.module(
            input_size, hidden_size, num_layers=num_layers, **self.check_options(options or {})
        )

    def build_twin(
        self, input_size: int, hidden_size: int, num_layers: int = 1, options: Mapping[str, str] | None = None
    ) -> nn.Module | None:
        """The `torch.nn` module with these options' equations, or None where torch.nn has none."""
        if self.torch_twin is None or self.twin_arguments is None:
            return None
        kwargs = self.twin_arguments(self.check_options(options or {}))
        return None if kwargs is None else self.torch_twin(input_size, hidden_size, num_layers, **kwargs)

    def describe(self, step: Step) -> str:
        return self.label(step) if self.label is not None else self.name


_SPECS: dict[str, CellSpec] = {}


def register(spec: CellSpec) -> CellSpec:
    """Add a cell family; its name and its step type must be new (registering the same spec again is a no-op)."""
    old = _SPECS.get(spec.name)
    if old is spec:
        return spec
    if old is not None:
        raise InputError(f"a cell named {spec.name!r} is already registered ({old.summary})")
    if any(s.step is spec.step for s in _SPECS.values()):
        raise InputError(f"the step type {spec.step.__name__} already belongs to a registered cell")
    taken = set(configurations())
    clash = ({spec.name} | set(spec.aliases)) & taken
    if clash:
        raise InputError(f"cell names already taken: {', '.join(sorted(clash))}")
    _SPECS[spec.name] = spec
    # a module saved whole (torch.save(module)) loads back under torch.load's default weights_only=True
    torch.serialization.add_safe_globals([t for t in (spec.module, spec.step) if isinstance(t, type)])
    return spec


def unregister(name: str) -> None:
    """Remove a registered cell (for tests and notebooks that declare cells of their own)."""
    _SPECS.pop(name, None)


def names() -> tuple[str, ...]:
    """The registered cells, in registration order."""
    return tuple(_SPECS)


def specs() -> tuple[CellSpec, ...]:
    return tuple(_SPECS.values())


def get(name: str) -> CellSpec:
    """The spec of a cell name, or a clear error listing the registered ones."""
    spec = _SPECS.get(name)
    if spec is None:
        raise InputError(f"unknown cell {name!r}; expected one of {', '.join(map(repr, _SPECS))}")
    return spec


def configurations() -> dict[str, tuple[CellSpec, dict[str, str]]]:
    """Every cell name and alias with its spec and options: what `bptt bench --cells` accepts."""
    out: dict[str, tuple[CellSpec, dict[str, str]]] = {}
    for spec in _SPECS.values():
        out[spec.name] = (spec, spec.defaults())
        for alias, options in spec.aliases.items():
            out[alias] = (spec, spec.check_options(options))
    return out


def spec_of(obj: object) -> CellSpec | None:
    """The spec of a step (by exact type), of a bptt module (by its step), or of a `torch.nn` twin."""
    step = getattr(obj, "step", obj)
    for spec in _SPECS.values():
        if type(step) is spec.step:
            return spec
    if isinstance(obj, nn.Module):
        for spec in _SPECS.values():
            if spec.torch_twin is not None and isinstance(obj, spec.torch_twin):
                return spec
    return None


def label(step: Step) -> str:
    """How people name this step's cell: the spec's label, or the step's type name when unregistered."""
    spec = spec_of(step)
    return spec.describe(step) if spec is not None else type(step).__name__


def gate_ranges(step: Step) -> Mapping[str, Range | None]:
    """The ranges of the step's recorded gates; empty for an unregistered step (its saturation is unknown)."""
    spec = spec_of(step)
    return spec.gate_ranges(step) if spec is not None else {}


def option_help(option: str) -> str:
    """The choices of an option per cell that takes it, for help texts: "lstm: vanilla, np, …"."""
    parts = [f"{s.name}: {', '.join(s.options[option])}" for s in _SPECS.values() if option in s.options]
    return "; ".join(parts) or "no registered cell takes it"


def option_choices(option: str) -> tuple[str, ...]:
    """Every value of an option some registered cell takes (`--variant`'s choices)."""
    out: dict[str, None] = {}
    for spec in _SPECS.values():
        out.update(dict.fromkeys(spec.options.get(option, ())))
    return tuple(out)
