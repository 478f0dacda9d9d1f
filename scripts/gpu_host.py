"""Where the host's time goes in one bptt.LSTM forward + backward on a GPU, against torch.nn.LSTM.

    python scripts/gpu_host.py [--steps T] [--repeats N] [--top K] [--device cpu]

At a few steps the GPU waits on the host: a call costs what Python, the dispatcher and the kernel
launches cost. This prints, for B = 32, I = 2, H = 128: the wall-clock µs of a forward + backward,
the host's launch calls (CUDA runtime and driver) per call from torch.profiler, and cProfile's
functions by their own time, for bptt.LSTM and for cuDNN through torch.nn.LSTM. Needs a CUDA GPU;
`--device cpu` profiles the same call on the CPU (the native sweeps), which also checks the script.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import bptt


def step(model: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor) -> None:
    out = model(x)[0]
    torch.autograd.backward(out, grad)


def sync(x: torch.Tensor) -> None:
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)


def wall_us(model: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor, repeats: int) -> float:
    """µs per forward + backward, back to back, waiting for the GPU once at the end."""
    for _ in range(10):
        step(model, x, grad)
    sync(x)
    start = time.perf_counter()
    for _ in range(repeats):
        step(model, x, grad)
    sync(x)
    return 1e6 * (time.perf_counter() - start) / repeats


def launches(model: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor, repeats: int) -> str:
    """The CUDA runtime and driver calls per forward + backward, with their host µs, from torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if x.device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(repeats):
            step(model, x, grad)
        sync(x)
    rows = []
    for event in prof.key_averages():
        if event.key.startswith(("cuda", "cu")) and not event.key.startswith("cudnn"):
            rows.append((event.cpu_time_total / repeats, event.key, event.count / repeats))
    rows.sort(reverse=True)
    return "\n".join(f"  {key:<40} {count:6.1f} calls  {us:8.1f} µs" for us, key, count in rows[:12])


def own_time(model: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor, repeats: int, top: int) -> str:
    """cProfile's functions by their own time over `repeats` calls."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(repeats):
        step(model, x, grad)
    sync(x)
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(top)
    return text.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("needs a CUDA GPU (or --device cpu)", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    reference = torch.nn.LSTM(2, 128).to(args.device)
    ours = bptt.from_torch(reference)
    x = torch.randn(args.steps, 32, 2, device=args.device)
    grad = torch.randn(args.steps, 32, 128, device=args.device)
    for name, model in (("bptt.LSTM", ours), ("torch.nn.LSTM", reference)):
        print(
            f"== {name}, T = {args.steps}: {wall_us(model, x, grad, args.repeats):.0f} µs a forward + backward"
        )
        print(launches(model, x, grad, 20))
    print(own_time(ours, x, grad, args.repeats, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
