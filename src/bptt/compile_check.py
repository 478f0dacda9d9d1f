"""Compile the Triton kernels for a GPU architecture without a GPU: `python -m bptt.compile_check`.

Triton's interpreter runs the kernels' Python, not the compiler, so a kernel can pass every
interpreted test and still fail to lower to PTX. This module compiles each kernel specialization
the sweeps launch (every LSTM variant, the per-step and the persistent time loops, split and not,
float32 and float64, the GRU and every Elman nonlinearity) for sm_90 by default, through Triton's
own front end, LLVM and ptxas, and prints the shared memory each needs. It must run without
TRITON_INTERPRET=1.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Spec:
    """One kernel specialization: the kernel's name, the pointer dtype and its compile-time constants."""

    kernel: str
    dtype: str  # "fp32" or "fp64"
    constants: dict[str, Any]
    label: str


def _split_blocks(
    H: int, dtype: Any, backward: bool = False, gates: bool = True, *, split: bool
) -> dict[str, Any]:
    """`gpu._blocks`, with a split launch's share of one tile of units per program."""
    from .engine import gpu

    blocks = gpu._blocks(H, dtype, backward, gates, split=split)
    if split:
        blocks["TILES"] = blocks["TILES"]._replace(UNITS=blocks["TILES"].BLOCK_H)
    return blocks


def specs(full: bool = True, dtype: str | None = None) -> Iterator[Spec]:
    """Every specialization the sweeps launch (`full`; the persistent ones at H = 128, split and not), or one
    of each kernel."""
    import torch

    from .cells.lstm import VARIANTS, LSTMStep
    from .engine import gpu

    dtypes = (dtype,) if dtype else ("fp32", "fp64") if full else ("fp32",)
    names = [n for n in VARIANTS if n != "np"] if full else ["vanilla", "cifg", "fgr"]
    block = {"BLOCK": 256}
    for dtype in dtypes:
        for name in names:
            step = LSTMStep(VARIANTS[name])
            c = {"V": gpu._variant(step)}
            fgr = step.variant.gate_recurrence
            yield Spec("lstm_forward_step", dtype, {**c, **block}, f"lstm {name}")
            for proj in (False, True) if full or fgr else (False,):
                yield Spec(
                    "lstm_backward_step",
                    dtype,
                    {**c, "GATE_RECURRENCE": fgr, "PROJECTION": proj, **block},
                    f"lstm {name}{' proj' if proj else ''}",
                )
            if not fgr:
                for kernel in ("lstm_forward_sweep", "lstm_backward_sweep"):
                    for split in (False, True):
                        blocks = _split_blocks(
                            128,
                            {"fp32": torch.float32, "fp64": torch.float64}[dtype],
                            "backward" in kernel,
                            split=split,
                        )
                        yield Spec(
                            kernel,
                            dtype,
                            {**c, "H": 128, "REVERSE": False, **blocks},
                            f"lstm {name} H=128{' split' if split else ''}",
                        )
        torch_dtype = {"fp32": torch.float32, "fp64": torch.float64}[dtype]
        yield Spec("gru_forward_step", dtype, dict(block), "gru")
        yield Spec("gru_backward_step", dtype, dict(block), "gru")
        for act_name, act in gpu.ACTIVATIONS.items() if full else [("tanh", 0)]:
            yield Spec("rnn_forward_step", dtype, {"ACT": act, **block}, f"rnn {act_name}")
            yield Spec("rnn_backward_step", dtype, {"ACT": act, **block}, f"rnn {act_name}")
        for split in (False, True):
            label = " split" if split else ""
            sweep = {"H": 128, "REVERSE": False, **_split_blocks(128, torch_dtype, split=split)}
            back = {"H": 128, "REVERSE": False, **_split_blocks(128, torch_dtype, backward=True, split=split)}
            for bias in (True, False) if full else (True,):
                yield Spec(
                    "gru_forward_sweep", dtype, {**sweep, "HAS_BIAS": bias}, f"gru H=128 bias={bias}{label}"
                )
            yield Spec("gru_backward_sweep", dtype, dict(back), f"gru H=128{label}")
            one = {"H": 128, "REVERSE": False, **_split_blocks(128, torch_dtype, gates=False, split=split)}
            for act_name, act in gpu.ACTIVATIONS.items() if full else [("tanh", 0)]:
                yield Spec("rnn_forward_sweep", dtype, {**one, "ACT": act}, f"rnn {act_name} H=128{label}")
                yield Spec("rnn_backward_sweep", dtype, {**back, "ACT": act}, f"rnn {act_name} H=128{label}")


def _signature(fn: Any, spec: Spec) -> dict[str, str]:
    """Triton's signature for the kernel: pointers of the dtype, 32-bit integers, the constants."""
    sig = {}
    for p in fn.params:
        if p.is_constexpr:
            sig[p.name] = "constexpr"
        elif p.name in ("n", "T", "B", "H"):
            sig[p.name] = "i32"
        elif p.name == "sync":  # the persistent sweeps' int32 barrier flags
            sig[p.name] = "*i32"
        else:
            sig[p.name] = "*" + spec.dtype
    return sig


def compile_all(arch: int = 90, full: bool = True, dtype: str | None = None) -> list[tuple[Spec, float, int]]:
    """Compile every spec for sm_`arch`: (spec, seconds, bytes of shared memory) each; raises on failure."""
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        raise RuntimeError("the compile check needs TRITON_INTERPRET unset: it runs Triton's compiler")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.compiler import compile as triton_compile

    from .engine import kernels

    target = GPUTarget("cuda", arch, 32)
    out = []
    for spec in specs(full, dtype):
        fn = getattr(kernels, spec.kernel)
        sig = _signature(fn, spec)
        constants = {k: v for k, v in spec.constants.items() if k in sig}
        options = {k: v for k, v in spec.constants.items() if k in ("num_warps", "num_stages")}
        start = time.perf_counter()
        compiled = triton_compile(ASTSource(fn, sig, constants), target=target, options=options)
        out.append((spec, time.perf_counter() - start, int(compiled.metadata.shared)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, default=90, help="compute capability ×10 (default: 90, Hopper)")
    parser.add_argument("--quick", action="store_true", help="one specialization of each kernel")
    parser.add_argument("--dtype", choices=("fp32", "fp64"), help="only this dtype")
    args = parser.parse_args(argv)
    results = compile_all(args.arch, full=not args.quick, dtype=args.dtype)
    for spec, seconds, shared in results:
        print(
            f"{spec.kernel:<22} {spec.dtype} {spec.label:<24} {seconds:6.2f} s  shared {shared:>6} B",
            flush=True,
        )
    print(f"compiled {len(results)} kernel specializations for sm_{args.arch}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
