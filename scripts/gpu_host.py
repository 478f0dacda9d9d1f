"""Where the host's time goes in one bptt.LSTM forward + backward on a GPU, against torch.nn.LSTM.

    python scripts/gpu_host.py [--steps T] [--repeats N] [--top K] [--device cpu] [--batch B]
        [--hidden H] [--stub] [--dump DIR]

At a few steps the GPU waits on the host: a call costs what Python, the dispatcher and the kernel
launches cost. This prints, for B = 32, I = 2, H = 128: the wall-clock µs of a forward + backward,
the host's launch calls (CUDA runtime and driver) per call from torch.profiler, the ATen operators
below autograd (views apart), the GPU's own busy time by kernel (against the wall time: who waits
on whom), and cProfile's functions by their own time, for bptt.LSTM and for cuDNN through
torch.nn.LSTM, bptt's host time before, in and after its two sweep launches, and the wall time
and operators of a `bptt.trace` with its contribution norms.
Needs a CUDA GPU; `--device cpu` profiles the same call on the CPU (the native sweeps), which also
checks the script. `--stub` (with TRITON_INTERPRET=1 BPTT_ENGINE=triton, on the CPU) runs the CUDA
sweeps' host path with each kernel launch replaced by nothing: what bptt's Python and operators cost
around the kernels, at a size (`--batch 2 --hidden 8`) where the rest costs little.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import bptt


def step(model: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor) -> None:
    out = model(x)[0]
    torch.autograd.backward(out, grad)


Call = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], None]  # one timed call: step, traced


def sync(x: torch.Tensor) -> None:
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)


def wall_us(
    model: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor, repeats: int, call: Call = step
) -> float:
    """µs per forward + backward (or `call`), back to back, waiting for the GPU once at the end."""
    for _ in range(10):
        call(model, x, grad)
    sync(x)
    start = time.perf_counter()
    for _ in range(repeats):
        call(model, x, grad)
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


def gpu_time(model: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor, repeats: int) -> str:
    """The GPU's own time per forward + backward, by kernel, from torch.profiler's CUDA activity: the
    sum over kernels against the wall time says whether a call waits on the host or on the GPU."""
    if x.device.type != "cuda":
        return "  (no GPU timeline on the CPU)"
    from torch.profiler import ProfilerActivity, profile

    for _ in range(3):
        step(model, x, grad)
    sync(x)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(repeats):
            step(model, x, grad)
        sync(x)
    rows = [
        (event.self_device_time_total / repeats, event.key, event.count / repeats)
        for event in prof.key_averages()
        if event.self_device_time_total > 0
    ]
    rows.sort(reverse=True)
    busy = sum(us for us, _, _ in rows)
    lines = [f"  GPU busy {busy:8.1f} µs a call, in {sum(n for _, _, n in rows):.0f} kernels and copies"]
    lines += [f"  {key[:60]:<60} {count:5.1f}×  {us:8.1f} µs" for us, key, count in rows[:10]]
    return "\n".join(lines)


def ops(model: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor, call: Call = step) -> str:
    """ATen operators per forward + backward below autograd, views apart from the rest: on a GPU
    each of the rest is a launch (or an allocation) the host pays for."""
    import collections

    from torch.utils._python_dispatch import TorchDispatchMode

    views = {"view", "select", "slice", "permute", "unsqueeze", "squeeze", "detach", "expand", "alias"}
    views |= {"transpose", "t", "as_strided", "unbind", "split", "lift_fresh", "_unsafe_view", "reshape"}

    class Count(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.seen: collections.Counter[str] = collections.Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            self.seen[str(func)] += 1
            return func(*args, **(kwargs or {}))

    call(model, x, grad)
    with Count() as count:
        call(model, x, grad)
    # by the operator's name (aten.NAME.overload): `cat` and `sqrt` are not views
    rest = {k: n for k, n in count.seen.items() if k.split(".")[1] not in views}
    top = ", ".join(
        f"{k.removeprefix('aten.').removesuffix('.default')} {n}"
        for k, n in sorted(rest.items(), key=lambda kv: -kv[1])
    )
    return f"  {sum(count.seen.values())} operators, {sum(rest.values())} of them not views: {top}"


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


def before_launch(model: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor, repeats: int) -> str:
    """The host's µs around bptt's two sweep launches (the launch functions of engine/gpu.py
    `_persistent`: the polled buffers' fill, Triton's launch, the check of the give-up flag), the GPU
    idle at the start of each call as in `bptt bench`: what the GPU waits for before each sweep can
    start (from the forward's call to its launch; from the backward's call to its), the launches
    themselves, split into before Triton's launch, Triton's launch and after it, and what follows
    each (the host's, overlapping the sweep on the GPU). Medians."""
    from bptt.engine import gpu

    marks: list[float] = []
    persistent = gpu._persistent

    class Timed:
        """The kernel, its launch (`kernel[grid](...)`) marked before and after."""

        def __init__(self, kernel: Any) -> None:
            self.wrapped = kernel

        def __getitem__(self, grid: object) -> Callable[..., None]:
            run = self.wrapped[grid]

            def call(*a: object, **kw: object) -> None:
                marks.append(time.perf_counter())
                run(*a, **kw)
                marks.append(time.perf_counter())

            return call

    def timed(kernel: Any, *args: object) -> Callable[..., None]:
        launch = persistent(Timed(kernel), *args)

        def call(*a: object, **kw: object) -> None:
            marks.append(time.perf_counter())
            launch(*a, **kw)
            marks.append(time.perf_counter())

        return call

    gpu._persistent = timed
    rows = []
    try:
        for _ in range(repeats + 5):
            sync(x)
            marks.clear()
            start = time.perf_counter()
            out = model(x)[0]
            middle = time.perf_counter()
            torch.autograd.backward(out, grad)
            end = time.perf_counter()
            if len(marks) != 8:
                return f"  (expected one forward and one backward sweep launch, saw {len(marks) // 4})"
            f0, f1, f2, f3, b0, b1, b2, b3 = marks
            rows.append((f0 - start, f3 - f0, middle - f3, b0 - middle, b3 - b0, end - b3, f1 - f0, f2 - f1))
            rows[-1] += (f3 - f2, b1 - b0, b2 - b1, b3 - b2)
    finally:
        gpu._persistent = persistent
    med = [1e6 * statistics.median(col) for col in zip(*rows[5:], strict=True)]
    return (
        f"  forward: {med[0]:.0f} µs to the sweep's launch, {med[1]:.0f} in it, {med[2]:.0f} after it\n"
        f"  backward: {med[3]:.0f} µs to the sweep's launch, {med[4]:.0f} in it, {med[5]:.0f} after it\n"
        f"  in the launches: forward {med[6]:.0f} before Triton's launch, {med[7]:.0f} in it, {med[8]:.0f} "
        f"after it; backward {med[9]:.0f}, {med[10]:.0f}, {med[11]:.0f}"
    )


def launch_profile(
    model: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor, repeats: int, top: int, dump: Path | None
) -> str:
    """cProfile inside bptt's sweep launches only (the launch functions of engine/gpu.py `_persistent`),
    by cumulative time, then the forward's call as a whole and the layer's backward (`LayerSweep.backward`,
    in whichever thread autograd runs it: on a GPU not the caller's) by cumulative time: which calls
    make up the host's time in and before the launches (cProfile adds ~0.5 µs a Python call). With
    `dump`, the three profiles are written there (launches.prof, forward.prof, backward.prof) for pstats."""
    from bptt.engine import function, gpu

    inside, forward, backward = cProfile.Profile(), cProfile.Profile(), cProfile.Profile()
    persistent = gpu._persistent
    layer_backward = function.LayerSweep.backward

    def profiled(*args: object) -> Callable[..., None]:
        launch = persistent(*args)

        def call(*a: object, **kw: object) -> None:
            inside.enable()
            try:
                launch(*a, **kw)
            finally:
                inside.disable()

        return call

    def backward_profiled(ctx: object, *grads: object) -> object:
        backward.enable()
        try:
            return layer_backward(ctx, *grads)
        finally:
            backward.disable()

    gpu._persistent = profiled
    try:
        for _ in range(repeats):
            step(model, x, grad)
        sync(x)
    finally:
        gpu._persistent = persistent
    function.LayerSweep.backward = staticmethod(backward_profiled)  # type: ignore[method-assign,assignment]
    try:
        for _ in range(repeats):
            sync(x)
            forward.enable()
            out = model(x)[0]
            forward.disable()
            torch.autograd.backward(out, grad)
        sync(x)
    finally:
        function.LayerSweep.backward = staticmethod(layer_backward)  # type: ignore[method-assign,assignment]
    text = io.StringIO()
    for name, profile, what in (
        ("launches", inside, f"inside the sweep launches, {repeats} forward + backward calls"),
        ("forward", forward, f"the forward's call, {repeats} calls (the GPU idle at each start)"),
        ("backward", backward, f"LayerSweep.backward, {repeats} calls"),
    ):
        text.write(f"  -- {what}, by cumulative time\n")
        pstats.Stats(profile, stream=text).sort_stats("cumulative").print_stats(top)
        if dump is not None:
            dump.mkdir(parents=True, exist_ok=True)
            profile.dump_stats(dump / f"{name}.prof")
    return text.getvalue()


def _empty_kernel() -> Any:
    """A Triton kernel that does nothing (its annotations are read from this module's globals)."""
    import triton
    import triton.language as tl

    globals()["tl"] = tl  # what Triton resolves `tl.constexpr` in

    @triton.jit
    def empty(x_ptr, N: tl.constexpr):  # type: ignore[no-untyped-def]
        pass

    return empty


def primitives(device: str, repeats: int = 200) -> str:
    """The host's µs per call of what a sweep's launch is made of, each alone, back to back: an empty
    Triton kernel's launch (one program; two, cooperative), a small torch.zeros, a one-value copy into
    pinned memory with its event (where kernels cannot write pinned memory), an event's query, the
    check of the host's give-up flag. The floor under `before_launch`'s figures."""
    if device != "cuda":
        return "  (CUDA only)"
    from bptt.engine import gpu

    mapped = gpu._mapped(torch.device(device))
    empty = _empty_kernel()
    flag = torch.zeros(4, dtype=torch.int32, device=device)
    event = torch.cuda.Event()  # type: ignore[no-untyped-call]
    event.record()

    def pinned_copy() -> None:
        stuck = torch.empty(1, dtype=torch.int32, pin_memory=True).copy_(flag[-1:], non_blocking=True)
        done = torch.cuda.Event()  # type: ignore[no-untyped-call]
        done.record()
        del stuck

    cases: list[tuple[str, Callable[[], object]]] = [
        ("triton launch, 1 program", lambda: empty[(1,)](flag, N=4)),
        (
            "triton launch, 2 programs, cooperative",
            lambda: empty[(1, 2)](flag, N=4, launch_cooperative_grid=True),
        ),
        ("torch.zeros(129) on the GPU", lambda: torch.zeros(129, dtype=torch.int32, device=device)),
        ("fill_(-1) of 4 KiB", lambda: flag.fill_(-1)),
        ("pinned copy + event (the fallback's)", pinned_copy),
        ("event.query()", lambda: event.query()),  # type: ignore[no-untyped-call]
        ("gpu.check_barriers() (the host's flag)", gpu.check_barriers),
    ]
    lines = [f"  a kernel's store reaches pinned host memory (the give-up flag needs no copy): {mapped}"]
    for name, call in cases:
        for _ in range(20):
            call()
        sync(flag)
        start = time.perf_counter()
        for _ in range(repeats):
            call()
        took = time.perf_counter() - start
        sync(flag)
        lines.append(f"  {name:<42} {1e6 * took / repeats:7.1f} µs")
    return "\n".join(lines)


class _NoKernel:
    """Stands for a Triton kernel: `kernel[grid](...)` launches nothing (and appends the time to
    `marks`, where given)."""

    def __init__(self, marks: list[float] | None = None) -> None:
        self.marks = marks

    def __getitem__(self, grid: object) -> object:
        def launch(*args: object, **kwargs: object) -> None:
            if self.marks is not None:
                self.marks.append(time.perf_counter())

        return launch


def stub_kernels(package: str = "bptt", marks: list[float] | None = None) -> None:
    """The persistent sweeps' launches (`package`.engine.gpu `_persistent`) with no kernel behind them,
    each marking its time in `marks` where given."""
    import importlib

    gpu = importlib.import_module(f"{package}.engine.gpu")
    persistent = gpu._persistent

    def stubbed(kernel: Any, *args: object) -> Callable[..., None]:
        # a kernel wrapped (`before_launch`'s Timed): what it wraps is stubbed (not `kernel`, an
        # attribute every compiled Triton JITFunction has: the real kernel would launch)
        if hasattr(kernel, "wrapped"):
            kernel.wrapped = _NoKernel(marks)
            return persistent(kernel, *args)  # type: ignore[no-any-return]
        return persistent(_NoKernel(marks), *args)  # type: ignore[no-any-return]

    gpu._persistent = stubbed


def traced(model: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor) -> None:
    bptt.trace(model, x, lambda out, state: (out * grad).sum()).contribution_norms()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--stub", action="store_true", help="the CUDA sweeps' host path, no kernels (CPU)")
    parser.add_argument(
        "--dump", type=Path, help="a folder for the cProfile files of the launches, forward, backward"
    )
    args = parser.parse_args()
    if args.stub:
        from bptt.engine import gpu, native

        if args.device != "cpu" or not gpu.interpreting() or native.engine() != "triton":
            print("--stub needs --device cpu and TRITON_INTERPRET=1 BPTT_ENGINE=triton", file=sys.stderr)
            return 2
        stub_kernels()
    elif args.device == "cuda" and not torch.cuda.is_available():
        print("needs a CUDA GPU (or --device cpu)", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    B, H = args.batch, args.hidden
    reference = torch.nn.LSTM(2, H).to(args.device)
    ours = bptt.from_torch(reference)
    x = torch.randn(args.steps, B, 2, device=args.device)
    grad = torch.randn(args.steps, B, H, device=args.device)
    for name, model in (("bptt.LSTM", ours), ("torch.nn.LSTM", reference)):
        print(
            f"== {name}, T = {args.steps}: {wall_us(model, x, grad, args.repeats):.0f} µs a forward + backward"
        )
        print(launches(model, x, grad, 20))
        print(ops(model, x, grad))
        print(gpu_time(model, x, grad, 20))
        if model is ours and (args.stub or args.device == "cuda"):  # the Triton sweeps' launches
            print(before_launch(model, x, grad, args.repeats))
            print(launch_profile(model, x, grad, min(args.repeats, 50), args.top, args.dump))
    print("== the launch's parts alone, host µs a call")
    print(primitives(args.device))
    trace_us = wall_us(ours, x, grad, args.repeats, traced)
    print(f"== bptt.trace with contribution norms, T = {args.steps}: {trace_us:.0f} µs")
    print(ops(ours, x, grad, traced))
    print(own_time(ours, x, grad, args.repeats, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
