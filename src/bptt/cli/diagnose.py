"""`bptt diagnose`: the report of a model someone already trained."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

from . import args as a
from .base import Command, console, kwargs_from_args, memory_errors

if TYPE_CHECKING:
    from ..diagnostics.summary import Summary


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..cells import registry
    from ..diagnose import LOSSES
    from ..tasks import TASKS

    S = argparse.SUPPRESS
    p.add_argument(
        "model",
        metavar="MODEL",
        type=a.existing,
        help="a saved torch.nn RNN/LSTM/GRU state dict or module, or a bptt checkpoint or run directory",
    )
    p.add_argument(
        "--task", default=S, choices=list(TASKS), help="draw the inputs from this task's held-out sequences"
    )
    p.add_argument(
        "--protocol", type=a.text, default=S, help="with --task: the task's protocol (default: its first)"
    )
    p.add_argument("--seq-len", type=a.count(1), default=S, help="the task's sequence length T")
    p.add_argument(
        "--inputs",
        metavar="FILE",
        type=a.existing_file,
        default=S,
        help="a torch.save'd tensor (T, B, features), a PackedSequence, or a dict with the tensor under 'x' "
        "and, for sequences of different lengths, their 'lengths' (B,) or a 'mask' (T, B)",
    )
    p.add_argument(
        "--hx",
        metavar="FILE",
        type=a.existing_file,
        default=S,
        help="the initial state: a torch.save'd h_0 (layers·directions, B, H), or (h_0, c_0) for an LSTM (default: zeros)",
    )
    p.add_argument(
        "--batch-first", action="store_true", default=S, help="the --inputs tensor is (B, T, features)"
    )
    p.add_argument("--samples", type=a.count(1), default=S, help="sequences to trace (default: 4)")
    p.add_argument(
        "--loss",
        default=S,
        choices=LOSSES,
        help="the checkpoint's task loss, or a fixed random direction of the last output (default: task where there is one)",
    )
    p.add_argument(
        "--nonlinearity",
        default=S,
        choices=registry.option_choices("nonlinearity"),
        help="an Elman RNN state dict's nonlinearity, which its weights do not tell (default: tanh)",
    )
    p.add_argument(
        "--variant",
        default=S,
        choices=registry.option_choices("variant"),
        help="a bptt LSTM state dict's variant (default: vanilla)",
    )
    p.add_argument(
        "--module",
        type=a.text,
        default=S,
        metavar="NAME",
        help="the recurrent submodule to diagnose, e.g. encoder.rnn, where the file holds several",
    )
    p.add_argument(
        "--trust-pickle",
        action="store_true",
        default=S,
        help="load a whole pickled model (torch.save(model, PATH)); this can run code from the file, so only for files you trust",
    )
    p.add_argument(
        "--seed",
        type=a.count(0, a.SEED_MAX),
        default=S,
        help="seed of the random loss direction (default: 0)",
    )
    p.add_argument(
        "--out",
        type=a.out_dir,
        default=None,
        help="where the diagnostics and report.html go (default: runs/diagnose-MODELNAME)",
    )


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ..diagnose import diagnose
    from ..diagnostics import progress

    out_dir = args.out or Path(f"runs/diagnose-{Path(args.model).stem}")
    err = Console(stderr=True)
    # transient bars on a terminal's stderr only: stdout stays the summary, a pipe or log gets nothing
    with progress.shown(err) if err.is_terminal else contextlib.nullcontext():
        with memory_errors("--samples and --seq-len (or the --inputs file)"):
            result = diagnose(**{**kwargs_from_args(diagnose, args), "out": out_dir})
    rec: Summary = result["record"]
    train = result["config"]["train"]
    out = console()
    out.print(
        f"{train.get('source')}: {rec.cell}, traced on {train['samples']} sequences of {rec.steps} steps ({train['loss']} loss)"
    )
    for line in summary_lines(rec):
        out.print(line)
    out.print(f"report: {result['report']}")
    return 0


def summary_lines(rec: Summary) -> list[str]:
    """The console lines of a diagnosis: the gradient at the farthest distance, the bound that applies to
    this cell for each layer-direction, and the Lyapunov estimate with its confidence and warning."""
    from ..reports.html import far_over_near

    distance, ratio = far_over_near(rec)
    lines = [
        f"• gradient at distance {distance}: {ratio:.3g} of its value at the loss; horizon {rec.horizon} steps"
        if ratio is not None
        else "• the gradient vanished entirely"
    ]
    for b in rec.bounds:
        if b.gamma is not None:  # the Elman RNN: the seeds' γ·λ1 bound applies
            lines.append(f"• {b.layer}: λ1 = {b.lambda1:.3g}, γ = {b.gamma:.3g}; {b.verdict}")
        elif b.gate_lambda1 is not None:
            blocks = ", ".join(f"W_h{g} {v:.3g}" for g, v in b.gate_lambda1.items())
            lines.append(f"• {b.layer}: λ1 per gate block {blocks}; {b.verdict}")
        else:
            lines.append(f"• {b.layer}: {b.verdict}")
        if b.measured_verdict is not None:
            lines.append(f"  {b.measured_verdict}")
    ly = rec.lyapunov
    if ly is not None and ly.max is not None:
        slope = "–" if ly.slope is None else f"{ly.slope:.3f}"
        pm = f" ± {ly.max_stderr:.2g}" if ly.max_stderr is not None else ""
        counted = f" (burn-in {ly.burn_in}, {ly.steps} steps)" if ly.steps is not None else ""
        lines.append(f"• λ_max = {ly.max:.3f}{pm} per step{counted}; measured decay slope {slope}")
        if ly.warning is not None:
            lines.append(f"  [yellow]warning[/yellow]: {ly.warning}")
    return lines


COMMAND = Command(
    "diagnose",
    "the report of a model you trained: a torch.nn state dict or module, or a bptt checkpoint",
    "bptt diagnose my_lstm.pt --task adding --seq-len 100 --out runs/my-lstm",
    add_arguments,
    run,
)
