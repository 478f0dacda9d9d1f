"""The `bptt` command line: every command with a help string on every flag and an example.

User mistakes (a missing file, an unknown task, a bad size) end in one line on stderr and exit
status 2, without a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from ._checks import InputError, InputTypeError


def console() -> Console:
    """rich output; wide enough for the tables when written to a file or a pipe."""
    return Console(width=None if sys.stdout.isatty() else 150)


class UsageError(Exception):
    """A mistake in what the user asked for, reported as one line."""


@dataclass(frozen=True)
class Command:
    name: str
    summary: str
    example: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _shape(text: str) -> tuple[int, int, int, int]:
    try:
        B, T, I, H = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a shape BxTxIxH such as 32x200x2x128, got {text!r}"
        ) from None
    if min(B, T, I, H) < 1:
        raise argparse.ArgumentTypeError(f"expected sizes ≥ 1 in {text!r}")
    return B, T, I, H


def _csv(valid: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        items = tuple(v.strip() for v in text.split(",") if v.strip())
        bad = [v for v in items if v not in valid]
        if bad or not items:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(bad) or 'empty list'}; expected some of {', '.join(valid)}"
            )
        return items

    return parse


# -- bench ---------------------------------------------------------------------------------------


def _bench_arguments(p: argparse.ArgumentParser) -> None:
    from .bench import CELLS, DEFAULT_SHAPES, BenchConfig

    d = BenchConfig()
    p.add_argument(
        "--cells",
        type=_csv(CELLS),
        default=d.cells,
        help=f"cells to time, comma-separated (default: all: {','.join(CELLS)})",
    )
    p.add_argument(
        "--shapes",
        type=_shape,
        nargs="+",
        default=d.shapes,
        help="shapes BxTxIxH (default: " + " ".join("x".join(map(str, s)) for s in DEFAULT_SHAPES) + ")",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=d.repeats,
        help=f"timed repeats per measurement; medians are reported (default: {d.repeats})",
    )
    p.add_argument(
        "--warmup", type=int, default=d.warmup, help=f"untimed runs before timing (default: {d.warmup})"
    )
    p.add_argument("--device", default=d.device, help="cpu or cuda (default: cpu)")
    p.add_argument("--no-trace", action="store_true", help="skip the full-trace measurement")
    p.add_argument(
        "--no-contributions",
        action="store_true",
        help="skip the contribution norms against T autograd backward passes",
    )
    p.add_argument(
        "--diagnostics",
        action="store_true",
        help="also time every diagnostic of an LSTM (H = 128) at T = 125…1000",
    )
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    from .bench_successors import add_arguments

    add_arguments(p)


def _bench(args: argparse.Namespace) -> int:
    import torch

    from . import bench

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda asked for, but no CUDA device is available")
    if args.repeats < 1 or args.warmup < 0:
        raise UsageError(f"expected --repeats ≥ 1 and --warmup ≥ 0, got {args.repeats} and {args.warmup}")
    if args.successors:
        from . import bench_successors

        return bench_successors.main(args, console())
    cfg = bench.BenchConfig(
        cells=tuple(args.cells),
        shapes=tuple(args.shapes),
        repeats=args.repeats,
        warmup=args.warmup,
        device=args.device,
        trace=not args.no_trace,
        contributions=not args.no_contributions,
        diagnostics=args.diagnostics,
    )
    out = console()
    with out.status("measuring") as status:
        result = bench.run(cfg, progress=lambda what: status.update(f"measuring {what}"))
    for item in bench.render(result):
        out.print(item)
    if args.json:
        bench.write_json(result, args.json)
        out.print(f"wrote {args.json}")
    return 0


# -- train ---------------------------------------------------------------------------------------


def _opt_float(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


def _tbptt(text: str) -> tuple[int, int]:
    try:
        k1, k2 = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K1,K2 such as 20,40, got {text!r}") from None
    return k1, k2


def _train_arguments(p: argparse.ArgumentParser) -> None:
    from .tasks import TASKS
    from .training.trainer import CLIPS, OPTIMIZERS, TrainConfig

    d = TrainConfig()
    g = p.add_argument_group("task")
    g.add_argument(
        "--task", default=d.task, choices=list(TASKS), help=f"the long-range task (default: {d.task})"
    )
    g.add_argument(
        "--protocol",
        help="the task's protocol, e.g. le, hs97, pascanu for adding (default: the task's first)",
    )
    g.add_argument("--seq-len", type=int, help="sequence length T (default: the task's, 100 for most)")
    g.add_argument(
        "--symbols", type=int, choices=(2, 3), help="temporal order: 2 or 3 relevant symbols (default 2)"
    )
    g.add_argument(
        "--test-size", type=int, default=d.test_size, help=f"held-out test sequences (default: {d.test_size})"
    )
    g = p.add_argument_group("model")
    g.add_argument(
        "--cell", default=d.cell, choices=("rnn", "lstm", "gru"), help=f"recurrent cell (default: {d.cell})"
    )
    g.add_argument(
        "--variant",
        default=d.variant,
        help="LSTM variant: vanilla, peephole, original, nig, nfg, nog, niaf, noaf, cifg, fgr",
    )
    g.add_argument(
        "--nonlinearity", default=d.nonlinearity, help="Elman RNN nonlinearity: tanh, relu, sigmoid, linear"
    )
    g.add_argument(
        "--hidden-size", type=int, default=d.hidden_size, help=f"hidden units (default: {d.hidden_size})"
    )
    g.add_argument("--num-layers", type=int, default=d.num_layers, help="stacked layers (default: 1)")
    g.add_argument(
        "--core",
        default=d.core,
        choices=("bptt", "torch"),
        help="bptt's explicit engine or torch.nn's fused module (default: bptt)",
    )
    g = p.add_argument_group("initialisation")
    g.add_argument(
        "--init",
        default=d.init,
        choices=("default", "orthogonal", "identity"),
        help="recurrent initialisation (default: PyTorch's)",
    )
    g.add_argument(
        "--init-scale",
        type=float,
        default=d.init_scale,
        help="multiply W_hh by this after initialising (default: 1)",
    )
    g.add_argument("--forget-bias", type=_opt_float, help="LSTM forget-gate bias, in b_ih only (e.g. 1)")
    g.add_argument("--input-bias", type=_opt_float, help="LSTM input-gate bias, in b_ih only")
    g.add_argument(
        "--chrono",
        type=int,
        metavar="T_MAX",
        help="chrono initialisation of the LSTM gate biases for lags up to T_MAX",
    )
    g = p.add_argument_group("optimisation")
    g.add_argument("--optimizer", default=d.optimizer, choices=OPTIMIZERS, help=f"(default: {d.optimizer})")
    g.add_argument("--lr", type=float, default=d.lr, help=f"learning rate (default: {d.lr})")
    g.add_argument("--momentum", type=float, help="momentum (default: 0.9 for SGD, 0 for RMSprop)")
    g.add_argument(
        "--batch-size", type=int, default=d.batch_size, help=f"sequences per step (default: {d.batch_size})"
    )
    g.add_argument("--steps", type=int, default=d.steps, help=f"training steps (default: {d.steps})")
    g.add_argument(
        "--clip",
        default=d.clip,
        choices=CLIPS,
        help="gradient clipping: one norm over all parameters, or elementwise (default: none)",
    )
    g.add_argument(
        "--clip-threshold",
        type=float,
        default=d.clip_threshold,
        help=f"the norm threshold or the value bound (default: {d.clip_threshold})",
    )
    g.add_argument(
        "--nonfinite",
        default=d.nonfinite,
        choices=("stop", "skip"),
        help="on a non-finite gradient: stop with a report, or skip the step (default: stop)",
    )
    g.add_argument(
        "--tbptt",
        type=_tbptt,
        metavar="K1,K2",
        help="truncated BPTT: every K1 steps, backpropagate through the last K2",
    )
    g.add_argument(
        "--no-early-stop", action="store_true", help="keep training after the task's criterion is met"
    )
    g = p.add_argument_group("run")
    g.add_argument(
        "--seed",
        type=int,
        default=d.seed,
        help=f"seed of the weights and the training stream (default: {d.seed})",
    )
    g.add_argument("--out", default=None, help="run directory (default: runs/TASK-CELL-seedN)")
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    g.add_argument(
        "--log-every",
        type=int,
        default=d.log_every,
        help=f"metrics row every N steps (default: {d.log_every})",
    )
    g.add_argument(
        "--eval-every",
        type=int,
        default=d.eval_every,
        help=f"test-set evaluation every N steps (default: {d.eval_every})",
    )
    g.add_argument(
        "--monitor-every",
        type=int,
        default=d.monitor_every,
        help="diagnostics snapshot every N steps (default: 0, off)",
    )
    g.add_argument(
        "--checkpoint-every",
        type=int,
        default=d.checkpoint_every,
        help=f"checkpoint every N steps (default: {d.checkpoint_every})",
    )
    g.add_argument(
        "--dry-run", action="store_true", help="two steps at tiny sizes, to check that everything runs"
    )


def train_config(args: argparse.Namespace) -> Any:
    """The TrainConfig that the train flags describe (--dry-run shrinks it)."""
    from .training.trainer import TrainConfig

    options = {"symbols": args.symbols} if args.symbols else {}
    cfg = TrainConfig(
        task=args.task,
        protocol=args.protocol,
        seq_len=args.seq_len,
        task_options=options,
        test_size=args.test_size,
        cell=args.cell,
        variant=args.variant,
        nonlinearity=args.nonlinearity,
        hidden_size=args.hidden_size,
        num_layers=args.num_layers,
        core=args.core,
        optimizer=args.optimizer,
        lr=args.lr,
        momentum=args.momentum,
        batch_size=args.batch_size,
        steps=args.steps,
        clip=args.clip,
        clip_threshold=args.clip_threshold,
        nonfinite=args.nonfinite,
        init=args.init,
        init_scale=args.init_scale,
        forget_bias=args.forget_bias,
        input_bias=args.input_bias,
        chrono=args.chrono,
        tbptt=args.tbptt,
        log_every=args.log_every,
        eval_every=args.eval_every,
        monitor_every=args.monitor_every,
        checkpoint_every=args.checkpoint_every,
        early_stop=not args.no_early_stop,
        seed=args.seed,
    )
    if args.dry_run:
        small = None if args.task in ("reber", "digits") else min(cfg.seq_len or 10, 10)
        cfg = dataclasses.replace(
            cfg,
            seq_len=small,
            hidden_size=8,
            batch_size=4,
            steps=2,
            test_size=16,
            log_every=1,
            eval_every=2,
            checkpoint_every=2,
            monitor_every=1,
        )
    return cfg


def _train(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from .training import NonFiniteGradient, train

    cfg = train_config(args).validate()
    out_dir = args.out or f"runs/{cfg.task}-{cfg.cell}-seed{cfg.seed}"
    out = console()
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=out, transient=False) as bar:
        job = bar.add_task(f"{cfg.task} · {cfg.cell}", total=cfg.steps, info="")

        def show(row: dict[str, Any]) -> None:
            info = f"loss {row['loss']:.4g}  ‖g‖ {row['grad_norm']:.3g}" + (
                "  clipped" if row["clipped"] else ""
            )
            if row["test_loss"] != "":
                info += f"  test {row['test_loss']:.4g}"
            bar.update(job, completed=row["step"] + 1, info=info)

        try:
            summary = train(cfg, out_dir, resume=args.resume, progress=show)
        except NonFiniteGradient as err:
            out.print(f"[red]stopped:[/] {err}  (report in {out_dir}/nonfinite.json)")
            return 1
    verdict = "[green]solved[/]" if summary["solved"] else "not solved"
    out.print(
        f"{summary['task']} ({summary['protocol']}), {summary['cell']}, T = {summary['seq_len']}: test loss "
        f"{summary['test_loss']:.4g} against chance {summary['baseline_loss']:.4g} after {summary['steps']} steps — "
        f"{verdict} ({summary['success']}); {summary['wall_s']:.1f} s; run in {out_dir}"
    )
    return 0


# -- demo ----------------------------------------------------------------------------------------


def _demo_arguments(p: argparse.ArgumentParser) -> None:
    from .demo import DemoConfig

    d = DemoConfig()
    p.add_argument("--out", default=d.out, help=f"where the runs and report.html go (default: {d.out})")
    p.add_argument(
        "--seq-len", type=int, default=d.seq_len, help=f"adding-problem length T (default: {d.seq_len})"
    )
    p.add_argument(
        "--hidden-size",
        type=int,
        default=d.hidden_size,
        help=f"hidden units of every model (default: {d.hidden_size})",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=d.steps,
        help=f"training budget of the RNN and the LSTM (default: {d.steps})",
    )
    p.add_argument("--seed", type=int, default=d.seed, help=f"seed of every run (default: {d.seed})")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="tiny sizes and four steps per run, to check that everything runs",
    )


def _demo(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from . import demo

    cfg = demo.DemoConfig(
        out=args.out,
        seq_len=args.seq_len,
        hidden_size=args.hidden_size,
        steps=args.steps,
        seed=args.seed,
        dry_run=args.dry_run,
    )
    for name in ("seq_len", "hidden_size", "steps"):
        if getattr(cfg, name) < 1:
            raise UsageError(f"expected --{name.replace('_', '-')} ≥ 1, got {getattr(cfg, name)}")
    out = console()
    columns = [
        TextColumn("{task.description:<22}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=out) as bar:
        jobs = {name: bar.add_task(name, total=tc.steps, info="") for name, tc in demo.plan(cfg)}

        def show(name: str, row: dict[str, Any]) -> None:
            info = f"loss {row['loss']:.3g}  ‖g‖ {row['grad_norm']:.3g}"
            bar.update(jobs[name], completed=row["step"] + 1, info=info)

        result = demo.run(cfg, progress=show)
    table = Table(title="bptt demo")
    for col in (
        "run",
        "solved",
        "test loss / chance",
        "gradient far / near",
        "λ1 vs 1/γ",
        "λ_max",
        "stopped",
    ):
        table.add_column(col)
    for r in result["runs"]:
        ratio = (
            f"{r['gradient_far_over_near']:.2g} at d = {r['distance']}"
            if r["gradient_far_over_near"] is not None
            else "–"
        )
        loss = (
            f"{r['test_loss']:.3g} / {r['baseline_loss']:.3g}"
            if r["test_loss"] is not None
            else f"– / {r['baseline_loss']:.3g}"
        )
        lam = (
            f"{r['lambda1']:.3g} vs {r['threshold']:.3g}: {r['verdict'].split(' (')[0]}"
            if r["threshold"]
            else (r["verdict"] or "–")
        )
        lmax = f"{r['lambda_max']:.3f}" if r["lambda_max"] is not None else "–"
        stopped = (
            f"non-finite at step {r['nonfinite_step']}"
            if r["stopped"] == "nonfinite"
            else ("solved" if r["stopped"] == "solved" else f"{r['steps']} steps")
        )
        table.add_row(r["run"], "[green]yes[/]" if r["solved"] else "no", loss, ratio, lam, lmax, stopped)
    out.print(table)
    for claim in result["claims"]:
        out.print(f"• {claim}")
    out.print(f"report: {result['report']}")
    return 0


# -- report --------------------------------------------------------------------------------------


def _report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "runs", nargs="+", metavar="RUN_DIR", help="run directories written by bptt train, demo or diagnose"
    )
    p.add_argument(
        "--out", default=None, help="the HTML file to write (default: report.html in the first run directory)"
    )
    p.add_argument("--title", default="bptt report", help="the page's title")


def _report(args: argparse.Namespace) -> int:
    from .reports import write_report

    out_path = args.out or str(Path(args.runs[0]) / "report.html")
    with console().status("drawing the report"):
        path = write_report(args.runs, out_path, args.title)
    console().print(f"wrote {path}")
    return 0


# -- diagnose ------------------------------------------------------------------------------------


def _diagnose_arguments(p: argparse.ArgumentParser) -> None:
    from .tasks import TASKS

    p.add_argument(
        "model",
        metavar="MODEL",
        help="a saved torch.nn RNN/LSTM/GRU state dict or module, or a bptt checkpoint or run directory",
    )
    p.add_argument("--task", choices=list(TASKS), help="draw the inputs from this task's held-out sequences")
    p.add_argument("--protocol", help="the task's protocol (default: its first)")
    p.add_argument("--seq-len", type=int, help="the task's sequence length T")
    p.add_argument(
        "--inputs",
        metavar="FILE",
        help="a torch.save'd tensor (T, B, features), or a dict with one under 'x'",
    )
    p.add_argument("--batch-first", action="store_true", help="the --inputs tensor is (B, T, features)")
    p.add_argument("--samples", type=int, default=4, help="sequences to trace (default: 4)")
    p.add_argument(
        "--loss",
        default="auto",
        choices=("auto", "task", "random"),
        help="the checkpoint's task loss, or a fixed random direction of the last output (default: task where there is one)",
    )
    p.add_argument(
        "--nonlinearity",
        default="tanh",
        help="an Elman RNN state dict's nonlinearity, which its weights do not tell (default: tanh)",
    )
    p.add_argument("--variant", default="vanilla", help="a bptt LSTM state dict's variant (default: vanilla)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random loss direction (default: 0)")
    p.add_argument(
        "--out",
        default=None,
        help="where the diagnostics and report.html go (default: runs/diagnose-MODELNAME)",
    )


def _diagnose(args: argparse.Namespace) -> int:
    from .diagnose import diagnose
    from .reports.html import far_over_near

    if args.samples < 1:
        raise UsageError(f"expected --samples ≥ 1, got {args.samples}")
    out_dir = args.out or f"runs/diagnose-{Path(args.model).stem}"
    with console().status("tracing and drawing"):
        result = diagnose(
            args.model,
            out_dir,
            args.task,
            args.protocol,
            args.seq_len,
            args.inputs,
            args.samples,
            args.loss,
            args.nonlinearity,
            args.variant,
            args.batch_first,
            args.seed,
        )
    rec = result["record"]
    distance, ratio = far_over_near(rec)
    b = rec["bounds"][0]
    out = console()
    out.print(
        f"{result['config']['train'].get('source')}: {rec['cell']}, traced on {result['config']['train']['samples']} sequences of {rec['steps']} steps ({result['config']['train']['loss']} loss)"
    )
    out.print(
        f"• gradient at distance {distance}: {ratio:.3g} of its value at the loss; horizon {rec['horizon']} steps"
        if ratio is not None
        else "• the gradient vanished entirely"
    )
    out.print(f"• {b['layer']}: λ1 = {b['lambda1']:.3g}; {b['verdict']}")
    if rec.get("lyapunov") and rec["lyapunov"]["max"] is not None:
        out.print(
            f"• λ_max = {rec['lyapunov']['max']:.3f} per step; measured decay slope {rec['lyapunov']['slope']:.3f}"
        )
    out.print(f"report: {result['report']}")
    return 0


# -- theory --------------------------------------------------------------------------------------


def _theory_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", metavar="PATH", help="also write the claims as JSON to PATH")


def _theory(args: argparse.Namespace) -> int:
    from rich.table import Table

    from . import _io, theory

    out = console()
    with out.status("measuring the claims"):
        claims = theory.claims()
    table = Table(title="the seeds' closed forms, measured by bptt")
    for col in ("claim", "formula", "closed form", "measured", "rel. error", ""):
        table.add_column(col, justify="right" if col in ("closed form", "measured", "rel. error") else "left")
    for c in claims:
        table.add_row(
            c.name,
            c.formula,
            f"{c.closed_form:.10g}",
            f"{c.measured:.10g}",
            f"{c.rel_err:.1e}",
            "[green]✓[/]" if c.holds else "[red]✗[/]",
        )
    out.print(table)
    held = sum(c.holds for c in claims)
    out.print(f"{held} of {len(claims)} claims hold within their tolerance")
    if args.json:
        _io.write_json(args.json, [dict(c.__dict__, rel_err=c.rel_err, holds=c.holds) for c in claims])
        out.print(f"wrote {args.json}")
    return 0 if held == len(claims) else 1


COMMANDS = [
    Command(
        "demo",
        "the headline job: RNN against LSTM on the adding problem, exploding with and without clipping, and the report",
        "bptt demo --out runs/demo",
        _demo_arguments,
        _demo,
    ),
    Command(
        "bench",
        "time the explicit engine against torch.nn's fused modules, side by side",
        "bptt bench --cells lstm,gru --shapes 32x200x2x128 --json bench.json",
        _bench_arguments,
        _bench,
    ),
    Command(
        "train",
        "train a cell on a long-range task, with clipping, the non-finite guard and diagnostics",
        "bptt train --task adding --cell lstm --seq-len 100 --steps 2000 --seed 0 --out runs/adding-lstm",
        _train_arguments,
        _train,
    ),
    Command(
        "diagnose",
        "the report of a model you trained: a torch.nn state dict or module, or a bptt checkpoint",
        "bptt diagnose my_lstm.pt --task adding --seq-len 100 --out runs/my-lstm",
        _diagnose_arguments,
        _diagnose,
    ),
    Command(
        "report",
        "one self-contained HTML report for one run or several side by side",
        "bptt report runs/demo/rnn-adding runs/demo/lstm-adding --out report.html",
        _report_arguments,
        _report,
    ),
    Command(
        "theory",
        "print the seeds' closed forms, each checked against bptt's own measurement",
        "bptt theory",
        _theory_arguments,
        _theory,
    ),
]


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="bptt",
        description="Backpropagation through time, made visible.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n"
        + "\n".join(f"  {c.name:<10} {c.summary}\n  {'':<10} e.g. {c.example}" for c in COMMANDS),
    )
    sub = top.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for c in COMMANDS:
        p = sub.add_parser(
            c.name,
            help=c.summary,
            description=c.summary[0].upper() + c.summary[1:] + ".",
            epilog=f"example:\n  {c.example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        c.add_arguments(p)
        p.set_defaults(run=c.run)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except (UsageError, FileNotFoundError, InputError, InputTypeError) as err:
        print(f"bptt {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"bptt {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
