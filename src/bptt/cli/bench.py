"""`bptt bench`: the explicit engine against torch.nn's fused modules, side by side."""

from __future__ import annotations

import argparse

from . import args as a
from .base import Command, config_from_args, console, memory_errors


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..bench import DEFAULT_SHAPES, BenchConfig, cells

    d = BenchConfig()
    S = argparse.SUPPRESS
    p.add_argument(
        "--cells",
        type=a.some_of(cells()),
        default=S,
        help=f"cells to time, comma-separated (default: all: {','.join(cells())})",
    )
    p.add_argument(
        "--shapes",
        type=a.shape,
        nargs="+",
        default=S,
        help="shapes BxTxIxH, or BxTxIxHxL for L layers (default: "
        + " ".join("x".join(map(str, s)) for s in DEFAULT_SHAPES)
        + ")",
    )
    p.add_argument(
        "--repeats",
        type=a.count(1),
        default=S,
        help=f"timed repeats per measurement; medians are reported (default: {d.repeats})",
    )
    p.add_argument(
        "--warmup", type=a.count(0), default=S, help=f"untimed runs before timing (default: {d.warmup})"
    )
    p.add_argument(
        "--device",
        type=_device,
        default=S,
        help="cpu, or cuda / cuda:N: the Triton sweeps against cuDNN, timed with CUDA events (default: cpu)",
    )
    p.add_argument(
        "--no-trace", dest="trace", action="store_false", default=S, help="skip the full-trace measurement"
    )
    p.add_argument(
        "--no-contributions",
        dest="contributions",
        action="store_false",
        default=S,
        help="skip the contribution norms against T autograd backward passes",
    )
    p.add_argument(
        "--diagnostics",
        action="store_true",
        default=S,
        help="also time every diagnostic of an LSTM (H = 128) at T = 125…1000",
    )
    p.add_argument(
        "--no-watch",
        dest="watch",
        action="store_false",
        default=S,
        help="skip the watched training step against the unwatched one (word-LM shape 20x35x200x200, 2 layers)",
    )
    p.add_argument(
        "--engines",
        action="store_true",
        default=S,
        help="also time each cell's native kernel against the Python time loop over the same equations",
    )
    p.add_argument("--json", type=a.out_file, metavar="PATH", help="also write the results as JSON to PATH")
    from ..bench_successors import add_arguments as successors_arguments

    successors_arguments(p)


def _device(text: str) -> str:
    if text == "cpu" or text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {text!r}")


def run(args: argparse.Namespace) -> int:
    from .. import bench

    if args.successors:
        from .. import bench_successors

        return bench_successors.main(args, console())
    cfg = config_from_args(bench.BenchConfig, args)
    bench.check_device(cfg.device)
    out = console()
    with out.status("measuring") as status:
        with memory_errors("--shapes " + " ".join("x".join(map(str, s)) for s in cfg.shapes)):
            result = bench.run(cfg, progress=lambda what: status.update(f"measuring {what}"))
    for item in bench.render(result):
        out.print(item)
    if args.json:
        bench.write_json(result, args.json)
        out.print(f"wrote {args.json}")
    return 1 if bench.failures(result) else 0


COMMAND = Command(
    "bench",
    "time the explicit engine against torch.nn's fused modules, side by side",
    "bptt bench --cells lstm,gru --shapes 32x200x2x128 --json bench.json",
    add_arguments,
    run,
)
