"""`bptt bench`: the explicit engine against torch.nn's fused modules, side by side."""

from __future__ import annotations

import argparse

from . import args as a
from .base import Command, UsageError, config_from_args, console


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
        help="shapes BxTxIxH (default: " + " ".join("x".join(map(str, s)) for s in DEFAULT_SHAPES) + ")",
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
    p.add_argument("--device", type=_device, default=S, help="cpu, cuda or cuda:N (default: cpu)")
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
        "--engines",
        action="store_true",
        default=S,
        help="also time each cell's native kernel against the Python time loop over the same equations",
    )
    p.add_argument("--json", type=a.out_file, metavar="PATH", help="also write the results as JSON to PATH")


def _device(text: str) -> str:
    if text == "cpu" or text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {text!r}")


def run(args: argparse.Namespace) -> int:
    import torch

    from .. import bench

    cfg = config_from_args(bench.BenchConfig, args)
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda asked for, but no CUDA device is available")
    out = console()
    with out.status("measuring") as status:
        result = bench.run(cfg, progress=lambda what: status.update(f"measuring {what}"))
    for item in bench.render(result):
        out.print(item)
    if args.json:
        bench.write_json(result, args.json)
        out.print(f"wrote {args.json}")
    return 0


COMMAND = Command(
    "bench",
    "time the explicit engine against torch.nn's fused modules, side by side",
    "bptt bench --cells lstm,gru --shapes 32x200x2x128 --json bench.json",
    add_arguments,
    run,
)
