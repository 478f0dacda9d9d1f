"""Compile the Triton kernels for a GPU architecture without a GPU: `python -m bptt.compile_check`.

Triton's interpreter runs the kernels' Python, not the compiler, so a kernel can pass every
interpreted test and still fail to lower to PTX. This module compiles each kernel specialization
the sweeps launch (every LSTM variant, the per-step and the persistent time loops, split and not,
float32 and float64, the GRU and every Elman nonlinearity) for sm_90 by default, through Triton's
own front end, LLVM and ptxas, and prints the shared memory each needs and, through Triton's
cuobjdump, its registers and local memory per thread (local memory: registers spilled to the stack).
It must run without TRITON_INTERPRET=1.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Spec:
    """One kernel specialization: the kernel's name, the pointer dtype and its compile-time constants."""

    kernel: str
    dtype: str  # "fp32" or "fp64"
    constants: dict[str, Any]
    label: str


LOOPS = ("persistent", "split", "resident")  # the persistent sweeps' loops (gpu.LOOPS less per-step)
BACKWARD_LOOPS = ("persistent", "split")  # a resident backward is the split one (gpu._blocks)
# the split sweeps' other grid barriers (auto: data forward, counter backward)
BARRIERS = ("flags", "counter")
ACCUMULATORS = 8  # the products as independent partial sums (gpu.ACCUMULATORS), one more spec a sweep


def _accumulating(blocks: dict[str, Any]) -> dict[str, Any]:
    """`blocks` with the products split into ACCUMULATORS partial sums (kernels._dot)."""
    return {**blocks, "TILES": blocks["TILES"]._replace(ACCUMULATORS=ACCUMULATORS)}


def _split_blocks(
    H: int, dtype: Any, backward: bool = False, gates: bool = True, *, loop: str
) -> dict[str, Any]:
    """`gpu._blocks` for one of `LOOPS` (or one of `BARRIERS`: split, with that barrier), bound as
    `_bound` binds it."""
    from .engine import gpu

    split = loop != "persistent"
    blocks = dict(gpu._blocks(H, dtype, backward, gates, split=split, resident=loop == "resident"))
    tiles = blocks["TILES"]
    blocks["TILES"] = tiles._replace(BARRIER=loop if loop in BARRIERS else tiles.BARRIER)
    return _bound(blocks, H, dtype)


def _bound(blocks: Mapping[str, Any], H: int, dtype: Any) -> dict[str, Any]:
    """`blocks` bound as `gpu._persistent` binds them (`gpu.bind`): split, one tile of units a program;
    else one program a block of rows."""
    from .engine import gpu

    tiles = blocks["TILES"]
    units = tiles.BLOCK_H if tiles.SPLIT else H
    return gpu.bind(blocks, H, units, -(-H // units), dtype.itemsize)[0]


def _candidate_blocks(
    candidate: dict[str, Any], H: int, dtype: Any, backward: bool, G: int, exchange: bool = False
) -> dict[str, Any]:
    """`gpu._blocks` under one of autotuning's candidates (gpu.FORWARD_CANDIDATES,
    gpu.BACKWARD_CANDIDATES), or other settings, bound as `_bound` binds it; `exchange`: the LSTM's
    backward, which can exchange partial sums (gpu.BACKWARD_EXCHANGE)."""
    from .engine import gpu

    token = gpu._chosen.set(candidate)
    try:
        blocks = gpu._blocks(
            H, dtype, backward, G > 1, weight_bytes=G * H * H * dtype.itemsize, exchange=exchange
        )
        return _bound(blocks, H, dtype)
    finally:
        gpu._chosen.reset(token)


def _candidate_specs(dtype: str) -> Iterator[Spec]:
    """Each cell's persistent sweeps at H = 128 under every autotuning candidate."""
    import torch

    from .cells.lstm import VARIANTS, LSTMStep
    from .engine import gpu

    torch_dtype = {"fp32": torch.float32, "fp64": torch.float64}[dtype]
    at = {"H": 128, "REVERSE": False}
    cells = (
        ("lstm", 4, {"V": gpu._variant(LSTMStep(VARIANTS["vanilla"])), "HAS_BIAS": True}),
        ("gru", 3, {"HAS_BIAS": True}),
        ("rnn", 1, {"ACT": 0, "HAS_BIAS": True}),
    )
    for cell, G, constants in cells:
        for direction, candidates in (
            ("forward", gpu.FORWARD_CANDIDATES),
            ("backward", gpu.BACKWARD_CANDIDATES),
        ):
            for candidate in candidates:
                backward = direction == "backward"
                blocks = _candidate_blocks(candidate, 128, torch_dtype, backward, G, cell != "rnn")
                kernel = f"{cell}_{direction}_sweep"
                extra = {} if kernel == "gru_backward_sweep" else constants
                yield Spec(
                    kernel, dtype, {**extra, **at, **blocks}, f"{cell} H=128 tuned: {gpu.label(candidate)}"
                )


def specs(full: bool = True, dtype: str | None = None) -> Iterator[Spec]:
    """Every specialization the sweeps launch (`full`; the persistent ones at H = 128, split and not,
    and under each of autotuning's candidates), or one of each kernel; each once."""
    seen = set()
    for each in _specs(full, dtype):
        for spec in _grads_n(each, full):
            key = (spec.kernel, spec.dtype, repr(sorted(spec.constants.items())))
            if key not in seen:
                seen.add(key)
                yield spec


def _grads_n(spec: Spec, full: bool) -> Iterator[Spec]:
    """A persistent backward sweep with ∂L/∂h_n (and ∂L/∂c_n) given (HAS_GRAD_N) and, `full`, without
    (h_n and c_n not used: its carries start from zeros); any other kernel as it is."""
    if not spec.kernel.endswith("_backward_sweep"):
        yield spec
        return
    yield Spec(spec.kernel, spec.dtype, {**spec.constants, "HAS_GRAD_N": True}, spec.label)
    if full:
        yield Spec(spec.kernel, spec.dtype, {**spec.constants, "HAS_GRAD_N": False}, f"{spec.label} no dh_n")


def _specs(full: bool, dtype: str | None) -> Iterator[Spec]:
    import torch

    from .cells.lstm import VARIANTS, LSTMStep
    from .engine import gpu

    dtypes = (dtype,) if dtype else ("fp32", "fp64") if full else ("fp32",)
    names = [n for n in VARIANTS if n != "np"] if full else ["vanilla", "cifg", "fgr"]
    block = {"BLOCK": 256}
    for dtype in dtypes:
        torch_dtype = {"fp32": torch.float32, "fp64": torch.float64}[dtype]
        for name in names:
            step = LSTMStep(VARIANTS[name])
            c = {"V": gpu._variant(step), "HAS_BIAS": True}  # HAS_BIAS: the sweeps that add b_hh
            fgr = step.variant.gate_recurrence
            yield Spec("lstm_forward_step", dtype, {**c, **block}, f"lstm {name}")
            for proj in (False, True) if full or fgr else (False,):
                yield Spec(
                    "lstm_backward_step",
                    dtype,
                    {**c, "GATE_RECURRENCE": fgr, "PROJECTION": proj, **block},
                    f"lstm {name}{' proj' if proj else ''}",
                )
            if fgr:
                continue  # FGR's gate recurrence runs the per-step kernels only
            for kernel, loops in (("lstm_forward_sweep", LOOPS), ("lstm_backward_sweep", BACKWARD_LOOPS)):
                for loop in (*loops, *BARRIERS) if name == "vanilla" else loops:
                    blocks = _split_blocks(128, torch_dtype, "backward" in kernel, loop=loop)
                    at = {**c, "H": 128, "REVERSE": False}
                    yield Spec(kernel, dtype, {**at, **blocks}, f"lstm {name} H=128{_label(loop)}")
                    # as gpu._blocks sets them: the forward takes accumulators where split only
                    if name == "vanilla" and loop in LOOPS and (loop != "persistent" or "backward" in kernel):
                        yield Spec(
                            kernel,
                            dtype,
                            {**at, **_accumulating(blocks)},
                            f"lstm {name} H=128{_label(loop)} acc{ACCUMULATORS}",
                        )
                    if name == "vanilla" and loop == ("split" if "backward" in kernel else "resident"):
                        yield Spec(  # 8 warps: each thread holds half as much (scripts/gpu_tune.py)
                            kernel,
                            dtype,
                            {**at, **_accumulating(blocks), "num_warps": 8},
                            f"lstm {name} H=128{_label(loop)} acc{ACCUMULATORS} 8 warps",
                        )
                if "backward" in kernel:  # partial sums of ∂L/∂h_{t−1} (gpu.BACKWARD_EXCHANGE)
                    for barrier in ("data", "counter") if name == "vanilla" else ("data",):
                        partials = {"LOOP": "resident", "BARRIER": barrier, "BACKWARD_EXCHANGE": "partials"}
                        blocks = _candidate_blocks(partials, 128, torch_dtype, True, c["V"].G, True)
                        yield Spec(
                            kernel,
                            dtype,
                            {**c, "H": 128, "REVERSE": False, **blocks},
                            f"lstm {name} H=128 partials {barrier}",
                        )
        yield Spec("gru_forward_step", dtype, dict(block), "gru")
        yield Spec("gru_backward_step", dtype, dict(block), "gru")
        for act_name, act in gpu.ACTIVATIONS.items() if full else [("tanh", 0)]:
            yield Spec("rnn_forward_step", dtype, {"ACT": act, **block}, f"rnn {act_name}")
            yield Spec("rnn_backward_step", dtype, {"ACT": act, **block}, f"rnn {act_name}")
        for loop in LOOPS:
            label, at = _label(loop), {"H": 128, "REVERSE": False}
            sweep = {**at, **_split_blocks(128, torch_dtype, loop=loop)}
            one = {**at, **_split_blocks(128, torch_dtype, gates=False, loop=loop)}
            back = {**at, **_split_blocks(128, torch_dtype, backward=True, loop=loop)}
            backward = loop in BACKWARD_LOOPS
            for bias in (True, False) if full else (True,):
                yield Spec(
                    "gru_forward_sweep", dtype, {**sweep, "HAS_BIAS": bias}, f"gru H=128 bias={bias}{label}"
                )
            if loop != "persistent":  # the forward takes accumulators where split only
                yield Spec(
                    "gru_forward_sweep",
                    dtype,
                    {**_accumulating(sweep), "HAS_BIAS": True},
                    f"gru H=128{label} acc{ACCUMULATORS}",
                )
                yield Spec(
                    "rnn_forward_sweep",
                    dtype,
                    {**_accumulating(one), "ACT": 0, "HAS_BIAS": True},
                    f"rnn tanh H=128{label} acc{ACCUMULATORS}",
                )
            if backward:
                yield Spec("gru_backward_sweep", dtype, back, f"gru H=128{label}")
                yield Spec(
                    "gru_backward_sweep", dtype, _accumulating(back), f"gru H=128{label} acc{ACCUMULATORS}"
                )
                yield Spec(
                    "rnn_backward_sweep",
                    dtype,
                    {**_accumulating(back), "ACT": 0},
                    f"rnn tanh H=128{label} acc{ACCUMULATORS}",
                )
            for act_name, act in gpu.ACTIVATIONS.items() if full else [("tanh", 0)]:
                yield Spec(
                    "rnn_forward_sweep",
                    dtype,
                    {**one, "ACT": act, "HAS_BIAS": act == 0},
                    f"rnn {act_name} H=128{label}{'' if act == 0 else ' no bias'}",
                )
                if backward:
                    yield Spec(
                        "rnn_backward_sweep", dtype, {**back, "ACT": act}, f"rnn {act_name} H=128{label}"
                    )
        for barrier in ("data", "counter"):  # the GRU's partial sums of ∂L/∂h_{t−1} (gpu.BACKWARD_EXCHANGE)
            partials = {"LOOP": "resident", "BARRIER": barrier, "BACKWARD_EXCHANGE": "partials"}
            blocks = _candidate_blocks(partials, 128, torch_dtype, True, 3, True)
            yield Spec(
                "gru_backward_sweep",
                dtype,
                {"H": 128, "REVERSE": False, **blocks},
                f"gru H=128 partials {barrier}",
            )
        if full:
            yield from _candidate_specs(dtype)


def _label(loop: str) -> str:
    return "" if loop == "persistent" else f" {loop}"


def _signature(fn: Any, spec: Spec) -> dict[str, str]:
    """Triton's signature for the kernel: pointers of the dtype, 32-bit integers, the constants."""
    sig = {}
    for p in fn.params:
        if p.is_constexpr:
            sig[p.name] = "constexpr"
        elif p.name in ("n", "T", "B", "H", "slots"):
            sig[p.name] = "i32"
        elif p.name in ("sync", "gave_up"):  # the persistent sweeps' int32 barrier and give-up flags
            sig[p.name] = "*i32"
        else:
            sig[p.name] = "*" + spec.dtype
    return sig


@dataclass(frozen=True)
class Compiled:
    """One compiled specialization: compile time, shared memory, and ptxas's registers and local
    memory (the stack: spilled registers, arrays it could not keep in registers) per thread, in bytes;
    None where Triton's cuobjdump is missing."""

    spec: Spec
    seconds: float
    shared: int
    registers: int | None
    local: int | None
    chain: tuple[int, int, int] | None = None  # `chains` of its machine code


def _cuobjdump(cubin: bytes, flag: str) -> str | None:
    """Triton's cuobjdump run on a cubin (`-res-usage`, `-sass`); None where it is missing."""
    import subprocess
    import tempfile

    import triton

    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    if not os.path.exists(tool):
        return None
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        return subprocess.run([tool, flag, f.name], capture_output=True, text=True, check=True).stdout


def _resources(cubin: bytes) -> tuple[int | None, int | None]:
    """Registers and stack bytes per thread of a cubin's one kernel, from `cuobjdump -res-usage`."""
    import re

    usage = _cuobjdump(cubin, "-res-usage")
    found = re.search(r"REG:(\d+) STACK:(\d+)", usage or "")
    return (int(found[1]), int(found[2])) if found else (None, None)


MULTIPLY_ADDS = ("HMMA", "FFMA", "DFMA", "DMMA")  # tensor-core products and fused multiply-adds


def chains(sass: str) -> tuple[int, int, int]:
    """From SASS: (multiply-adds, the longest run of them each reading the one before, CTA barriers).

    A step's product waits on its longest dependent run, however many run beside it. Dependences are
    read from register names, through other instructions (a move passes a run on, a load from an
    address starts afresh), so a run is a bound from above; once through the code, as the loops'
    bodies stand in it.

    Example:
        >>> code = "FFMA R2, R4, R5, RZ ;\\nFFMA R3, R6, R7, RZ ;\\nFFMA R2, R8, R9, R2 ;\\n"
        >>> code += "BAR.SYNC.DEFER_BLOCKING 0x0 ;\\nMOV R10, R2 ;\\nFFMA R3, R10, R9, R3 ;\\n"
        >>> chains(code)  # R2 (2 deep) moved to R10, read by the last FFMA: 3
        (4, 3, 1)
    """
    import re

    depth: dict[str, int] = {}
    count = longest = barriers = 0
    for line in sass.splitlines():
        words = line.split(";")[0].split("*/")[-1].split()
        if words and words[0].startswith("@"):  # a predicate
            words = words[1:]
        if not words:
            continue
        opcode = words[0].split(".")[0]
        registers = re.findall(r"\bR\d+\b", " ".join(words[1:]))
        if words[0].startswith("BAR.SYNC"):
            barriers += 1
        elif opcode in MULTIPLY_ADDS and registers:
            count += 1
            depth[registers[0]] = 1 + max((depth.get(r, 0) for r in registers[1:]), default=0)
            longest = max(longest, depth[registers[0]])
        elif registers and not opcode.startswith(("ST", "BRA", "RED", "BAR")):
            # another instruction passes on what it reads (a move), or starts afresh (a load)
            depth[registers[0]] = max((depth.get(r, 0) for r in registers[1:]), default=0)
    return count, longest, barriers


def compile_all(
    arch: int = 90,
    full: bool = True,
    dtype: str | None = None,
    with_chains: bool = False,
    only: str | None = None,
) -> list[Compiled]:
    """Compile every spec for sm_`arch` (`only`: those whose "kernel label" the regular expression
    finds), with its resources (and, `with_chains`, its `chains`); raises on failure."""
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        raise RuntimeError("the compile check needs TRITON_INTERPRET unset: it runs Triton's compiler")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.compiler import compile as triton_compile

    from .engine import kernels

    target = GPUTarget("cuda", arch, 32)
    out = []
    for spec in specs(full, dtype):
        if only is not None and not re.search(only, f"{spec.kernel} {spec.label}"):
            continue
        fn = getattr(kernels, spec.kernel)
        sig = _signature(fn, spec)
        constants = {k: v for k, v in spec.constants.items() if k in sig}
        options = {k: v for k, v in spec.constants.items() if k in ("num_warps", "num_stages")}
        start = time.perf_counter()
        compiled = triton_compile(ASTSource(fn, sig, constants), target=target, options=options)
        seconds = time.perf_counter() - start
        registers, local = _resources(compiled.asm["cubin"])
        sass = _cuobjdump(compiled.asm["cubin"], "-sass") if with_chains else None
        chain = chains(sass) if sass is not None else None
        out.append(Compiled(spec, seconds, int(compiled.metadata.shared), registers, local, chain))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, default=90, help="compute capability ×10 (default: 90, Hopper)")
    parser.add_argument("--quick", action="store_true", help="one specialization of each kernel")
    parser.add_argument("--dtype", choices=("fp32", "fp64"), help="only this dtype")
    parser.add_argument(
        "--only", metavar="REGEX", help='only the specializations whose "kernel label" this finds'
    )
    parser.add_argument(
        "--chains",
        action="store_true",
        help="also each kernel's multiply-adds, their longest dependent run and its CTA barriers",
    )
    args = parser.parse_args(argv)
    results = compile_all(
        args.arch, full=not args.quick, dtype=args.dtype, with_chains=args.chains, only=args.only
    )
    for c in results:
        chain = (
            f"  multiply-adds {c.chain[0]}  longest run {c.chain[1]}  barriers {c.chain[2]}"
            if c.chain
            else ""
        )
        print(
            f"{c.spec.kernel:<22} {c.spec.dtype} {c.spec.label:<28} {c.seconds:6.2f} s  shared {c.shared:>6} B"
            f"  registers {c.registers}  local {c.local} B{chain}",
            flush=True,
        )
    print(f"compiled {len(results)} kernel specializations for sm_{args.arch}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
