"""The sweeps on CUDA: per step one cuBLAS matmul and one fused Triton kernel (engine/kernels.py).

With engine/sweep.py's signatures, so `LayerSweep` runs them in place of the PyTorch loop. Per step
forward: gh = W_hh h_{t−1} (+ b_hh) through torch.mm, then the step's pointwise kernel writes the
gate activations, c_t and h_t straight into the tape. Per step backward: the kernel reads the tape,
∂ℓ/∂h_t and the carry, and writes ∂L/∂h_t, ∂L/∂c_t, ∂L/∂gx_t (∂L/∂gh_t) and ∂L/∂c_{t−1}; then
∂L/∂h_{t−1} = W_hhᵀ ∂L/∂gh_t through torch.mm. The tape ends up exactly as the PyTorch loop leaves
it, so `bptt.trace`, the gradient terms and every diagnostic read it unchanged.

The cells register these sweeps with engine/dispatch.py for their exact step types, `ElmanStep`,
`GRUStep` and `LSTMStep` (every nonlinearity and variant, with or without projection), on
float32/float64 CUDA tensors when Triton imports. A subclass of a step, another dtype or a missing
Triton leaves the PyTorch loop in charge, which computes the same numbers exactly.

The persistent kernels (engine/kernels.py) run a whole sweep in one launch instead, each program
owning a block of the batch's rows. `BPTT_TRITON_LOOP=split` spreads each block's hidden units over
several programs, as many as fit on the GPU at once, which meet at a grid barrier every step: more
of the GPU at work for a small batch. `BPTT_TRITON_LOOP=resident` splits too, and each program loads
the rows of W_hh of its units once a sweep (forward) and keeps them on chip (the design of FlashRNN),
where they fit in `RESIDENT_BYTES`; it falls back to split where they do not. Both are checked in
the interpreter with one program a block and on a GPU by the CUDA tests. The default,
`BPTT_TRITON_LOOP=auto`, runs resident where W_hh is large enough (`AUTO_SPLIT_BYTES`), as
measured on an H100 and an H200.

`BPTT_TRITON_AUTOTUNE=1` (or `autotune()`) times these settings on the first sweep of each cell and
shape instead, and keeps the fastest (`tuned()` says what it chose), as cudnn.benchmark does.

`BPTT_ENGINE=triton` (or `use_engine("triton")`) forces these sweeps; without a GPU that needs
`TRITON_INTERPRET=1`, which runs the kernels in Triton's interpreter on CPU tensors (the tests do
this at tiny sizes against the Python steps).
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import functools
import importlib
import importlib.util
import operator
import os
import time
import warnings
from collections.abc import Callable, Mapping
from types import MappingProxyType, ModuleType
from typing import Any, NamedTuple, TypeVar

import torch
from torch import Tensor

from .._checks import InputError
from . import dispatch, native
from .sweep import Carry, Outputs, Params, Step, allocate_step_grads
from .tape import Tape

ACTIVATIONS = {"tanh": 0, "relu": 1, "sigmoid": 2, "linear": 3}  # the Elman kernels' ACT constant

LOOPS = ("auto", "persistent", "per-step", "split", "resident")
# The time loop on the GPU: one launch per sweep (persistent), two per step (per-step), one launch
# per sweep whose blocks of rows each spread their units over several programs (split), or split with
# each program's rows of W_hh loaded once a sweep and kept on chip (resident, where they fit); auto:
# resident (split where W_hh does not fit on chip) where W_hh has at least AUTO_SPLIT_BYTES, else
# persistent.
LOOP = os.environ.get("BPTT_TRITON_LOOP", "auto")

# Measured on an H100 (`scripts/gpu_check.sh`, forward + backward over cuDNN's, persistent → split):
# LSTM H = 128: 5.3× → 3.8×, 256: 2.5× → 1.0×, 200: 2.0× → 1.2×, 64: 5.7× → 7.2×; GRU alike; Elman
# H = 256: 4.5× → 2.8×, 200: 2.0× → 3.4×, 128: 2.1× → 3.3×. With the counter barrier, the resident
# forward, the backward in IEEE float32 and the carries on chip (an H200, `scripts/gpu_tune.py`),
# resident beats persistent at every measured point down to 64 KB of W_hh: LSTM H = 64 (B = 16,
# T = 1000) 12.0 → 6.8 ms, Elman H = 128 (B = 32, T = 200) 2.3 → 1.7 ms.
AUTO_SPLIT_BYTES = 64 * 1024

# Settings to measure others by (scripts/gpu_tune.py): the persistent forward's and backward's chunk
# of a product's inner dimension (0: the default) and the software-pipeline stages of the chunk loops
# (1: none; n: the loads of n − 1 chunks ahead in flight, through shared memory); and the split
# sweeps' grid barrier (kernels._sync).
CHUNK = int(os.environ.get("BPTT_TRITON_CHUNK", "0"))
BACKWARD_CHUNK = int(os.environ.get("BPTT_TRITON_BACKWARD_CHUNK", "0"))
STAGES = int(os.environ.get("BPTT_TRITON_STAGES", "1"))
BARRIERS = ("auto", "flags", "counter", "data")  # the split sweeps' grid barrier (kernels._sync, _shared)
BARRIER = os.environ.get("BPTT_TRITON_BARRIER", "auto")
# auto: "data" forward, "counter" backward. Measured on an H100 (scripts/gpu_tune.py, LSTM sweeps alone,
# ms, data against counter): forward at (B, T, I, H) = (32, 200, 2, 128) 0.51 against 0.65, (64, 100,
# 64, 256) 0.49 against 0.50, the word LM (20, 35, 200, 200) 0.17 against 0.22; the backward's partial
# sums 1.10 against 0.66, 0.48 against 0.48, 0.81 against 0.18, its split sweep 1.05 against 1.01,
# 0.97 against 0.88, 0.39 against 0.30. (Before, on an H200: data up to 8 programs a block, else counter.)


def barrier_for(barrier: str, backward: bool) -> str:
    """The grid barrier of a split sweep, forward or backward: BPTT_TRITON_BARRIER, with "auto" resolved.

    Example:
        >>> barrier_for("auto", backward=False), barrier_for("auto", backward=True), barrier_for("flags", True)
        ('data', 'counter', 'flags')
    """
    if barrier != "auto":
        return barrier
    return "counter" if backward else "data"


# float32 products: three TF32 passes on tensor cores (float32 accuracy; the forward's default), one
# TF32 pass (cuDNN's default for float32, ~1e-3 relative error), or IEEE float32 FMAs (the backward's
# default: faster than tf32x3 for its (16, 256) · (256, 16) chunks, LSTM backward at B = 32, T = 200,
# H = 128 2.04 → 1.37 ms on an H100 split, 1.93 → 1.26 ms on an H200 resident); and the warps of a persistent program (0: the default, 4; a resident
# forward takes 8 above 32 KB).
PRECISIONS = ("tf32x3", "tf32", "ieee")
PRECISION = os.environ.get("BPTT_TRITON_PRECISION", "tf32x3")
BACKWARD_PRECISION = os.environ.get("BPTT_TRITON_BACKWARD_PRECISION", "ieee")
WARPS = int(os.environ.get("BPTT_TRITON_WARPS", "0"))
BACKWARD_WARPS = int(os.environ.get("BPTT_TRITON_BACKWARD_WARPS", "0"))
# The persistent sweeps' products as up to this many independent partial sums over their inner
# dimension (kernels._dot): shorter chains of dependent multiply-adds per step (in the sm_90 code at
# H = 128 and 8 of them, 48 → 6 TF32 mma forward, 512 → 64 FMAs backward), for more reshaping and
# CTA barriers (`python -m bptt.compile_check --chains` lists them with the registers). The forward
# takes them where split only. 1: one chain (tl.dot's own). Opt-in: on an H100 (scripts/gpu_tune.py,
# LSTM at B = 32, T = 200, H = 128) 8 of them took 0.74–0.80 ms forward against 0.51 with one, and
# 1.25 backward (split, counter) against 1.01.
ACCUMULATORS = int(os.environ.get("BPTT_TRITON_ACCUMULATORS", "1"))
BACKWARD_ACCUMULATORS = int(os.environ.get("BPTT_TRITON_BACKWARD_ACCUMULATORS", "1"))
# What the programs of a split LSTM or GRU backward exchange each step (the Elman RNN's: "gates"). "gates": each writes its units' part
# of ∂L/∂gh_t, and reads all of it (G·H wide) and W_hh's columns for its units from L2 to compute
# ∂L/∂h_{t−1} = W_hhᵀ ∂L/∂gh_t there. "partials": each keeps its units' rows of W_hh on chip (as the
# resident forward does; where they fit, else "gates"), multiplies its own part of ∂L/∂gh_t by them
# into a partial sum over all H units, and adds up the block's partial sums for its units
# (kernels._from_partials): at H = 128, 8 programs a block, a program reads 8 KB a step instead of
# 32 KB of ∂L/∂gh_t and 32 KB of W_hh, and its product's inner dimension is 64 instead of 512. Under
# the data barrier the partial sums of every step have a slot of their own (T · programs · B · H
# values, up to EXCHANGE_BYTES, else the counter barrier), two slots otherwise. The default: on an
# H100 the LSTM backward sweep alone (counter barrier) took 0.66 ms against 1.01 at (B, T, I, H) =
# (32, 200, 2, 128), 0.48 against 0.88 at (64, 100, 64, 256), 0.18 against 0.30 for the word LM.
# The GRU's (kernels._gru_backward_tile), the same way, its three gate blocks a program: on an H200
# its backward took 0.75 ms against 1.23 at (32, 200, 2, 128), 0.72 against 1.00 at (64, 100, 64,
# 256), 1.26 against 1.77 for the word LM (scripts/gpu_tune.py --cells gru).
EXCHANGES = ("gates", "partials")
BACKWARD_EXCHANGE = os.environ.get("BPTT_TRITON_BACKWARD_EXCHANGE", "partials")
EXCHANGE_BYTES = 64 * 1024 * 1024

# Autotuning ("1"; `autotune`): the first sweep of each cell, shape and dtype times the persistent
# sweeps under each of the settings below, on the user's own GPU, and keeps the fastest for the later
# sweeps of that kind, as torch.backends.cudnn.benchmark does for cuDNN's algorithms. Every candidate
# computes the same sweep to float32 rounding (the CUDA tests hold each to float64); the loop, barrier,
# warps, accumulators, float32 products as tf32x3 or IEEE FMAs and the LSTM's and GRU's backward exchange are
# the candidates' (the other settings stay as set); forward and backward are tuned apart. Off by
# default: the first call of each shape compiles and times them all.
AUTOTUNE = os.environ.get("BPTT_TRITON_AUTOTUNE", "0")


def _with_each_barrier(loop: str, *extras: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    """Candidates of one split loop: each of `extras` (settings beside it) with the counter and the data barrier."""
    return tuple(
        {"LOOP": loop, "BARRIER": barrier, **extra} for extra in extras for barrier in ("counter", "data")
    )


FORWARD_CANDIDATES: tuple[dict[str, Any], ...] = (
    {},  # the settings as they are (the defaults)
    {"LOOP": "persistent"},
    *_with_each_barrier("resident", {}, {"ACCUMULATORS": 8}),
    {"LOOP": "resident", "BARRIER": "data", "ACCUMULATORS": 8, "WARPS": 8},
    # IEEE float32 FMAs, as the backward's products (which ran faster so than tf32x3): on 8 warps no
    # spills at H = 64 to 256 but 32 B at 128 (LSTM, sm_90), where two partial sums a thread spill
    # none (but 160–216 B at 200 and 256); the Elman forward's default spills 160–168 B there, these none
    *_with_each_barrier("resident", {"PRECISION": "ieee", "WARPS": 8}),
    {"LOOP": "resident", "BARRIER": "data", "PRECISION": "ieee", "ACCUMULATORS": 2, "WARPS": 8},
)
BACKWARD_CANDIDATES: tuple[dict[str, Any], ...] = (
    {},
    {"LOOP": "persistent"},
    # two partial sums a thread on 8 warps: half the chain, no more CTA barriers (compile_check --chains)
    *_with_each_barrier(
        "split", {}, {"BACKWARD_ACCUMULATORS": 8}, {"BACKWARD_ACCUMULATORS": 2, "BACKWARD_WARPS": 8}
    ),
    # the LSTM's and GRU's partial sums of ∂L/∂h_{t−1} (BACKWARD_EXCHANGE; the Elman backward runs
    # split under these): in the sm_90 code at H = 128, 66 dependent FMAs a step instead of 256, no spills
    # (the split backward spills 32 B under the data barrier), 19 CTA barriers instead of 12
    *_with_each_barrier("resident", {"BACKWARD_EXCHANGE": "partials"}),
    {"LOOP": "resident", "BARRIER": "data", "BACKWARD_EXCHANGE": "partials", "BACKWARD_WARPS": 8},
    # on tensor cores: 24 dependent TF32 mma a step
    {
        "LOOP": "resident",
        "BARRIER": "data",
        "BACKWARD_EXCHANGE": "partials",
        "BACKWARD_PRECISION": "tf32x3",
        "BACKWARD_WARPS": 8,
    },
)
SETTINGS = (
    "LOOP",
    "BARRIER",
    "CHUNK",
    "BACKWARD_CHUNK",
    "STAGES",
    "PRECISION",
    "BACKWARD_PRECISION",
    "WARPS",
    "BACKWARD_WARPS",
    "ACCUMULATORS",
    "BACKWARD_ACCUMULATORS",
    "BACKWARD_EXCHANGE",
)
# A candidate's settings while it is timed or runs tuned: this thread's, over the module's
_chosen: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "bptt_triton_settings", default=None
)


def _setting(name: str) -> Any:
    """A setting of the persistent sweeps (one of `SETTINGS`): the tuned candidate's, else the module's."""
    chosen = _chosen.get()
    return chosen[name] if chosen is not None and name in chosen else globals()[name]


_module_settings = operator.itemgetter(*SETTINGS)  # the module's `SETTINGS`, from its globals in one call


def _settings() -> tuple[Any, ...]:
    """Every setting in `SETTINGS`' order, as `_setting` reads each."""
    values: tuple[Any, ...] = _module_settings(globals())
    chosen = _chosen.get()
    if chosen is not None:
        values = tuple(chosen.get(name, value) for name, value in zip(SETTINGS, values, strict=True))
    return values


_kernels: ModuleType | None = None
_import_error: str | None = None


def interpreting() -> bool:
    """Whether Triton runs kernels in its interpreter (TRITON_INTERPRET=1), on CPU tensors."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def kernels() -> ModuleType | None:
    """engine/kernels.py, imported once; None (with the reason in `import_error()`) without Triton."""
    global _kernels, _import_error
    if _kernels is None and _import_error is None:
        if importlib.util.find_spec("triton") is None:
            _import_error = "Triton is not installed (pip install 'bptt[gpu]')"
        else:
            try:
                _kernels = importlib.import_module(".kernels", __package__)
            except Exception as err:  # a broken Triton install leaves the PyTorch loop in charge
                _import_error = f"Triton failed to import: {err}"
    return _kernels


def import_error() -> str | None:
    kernels()
    return _import_error


def available(x: Tensor) -> bool:
    """Whether the Triton sweeps can run for this layer input now: engine setting, dtype, Triton; an
    error for a setting out of range (checked again only when one changed: every layer asks)."""
    global _checked
    engine = native.engine()
    if engine not in ("auto", "triton") or x.dtype not in (torch.float32, torch.float64):
        return False
    settings = (_module_settings(globals()), AUTOTUNE)
    if settings != _checked:
        _check_settings()
        _checked = settings
    if kernels() is None:
        if engine == "triton":
            raise RuntimeError(f"BPTT_ENGINE=triton, but the Triton sweeps are unavailable: {_import_error}")
        return False
    return True


_checked: tuple[Any, ...] | None = None  # the settings `available` last found in range


def _check_settings() -> None:
    """An error for a setting (BPTT_TRITON_*) out of range."""
    if LOOP not in LOOPS:
        raise InputError(f"expected BPTT_TRITON_LOOP to be one of {', '.join(LOOPS)}, got {LOOP!r}")
    for name, chunk in (("BPTT_TRITON_CHUNK", CHUNK), ("BPTT_TRITON_BACKWARD_CHUNK", BACKWARD_CHUNK)):
        if chunk and chunk not in (16, 32, 64, 128, 256, 512):
            raise InputError(f"expected {name} to be 16, 32, 64, 128, 256 or 512, got {chunk}")
    if STAGES not in (1, 2, 3, 4):
        raise InputError(f"expected BPTT_TRITON_STAGES to be 1, 2, 3 or 4, got {STAGES}")
    if BARRIER not in BARRIERS:
        raise InputError(f"expected BPTT_TRITON_BARRIER to be one of {', '.join(BARRIERS)}, got {BARRIER!r}")
    for name, precision in (
        ("PRECISION", PRECISION),
        ("BACKWARD_PRECISION", BACKWARD_PRECISION),
    ):
        if precision not in PRECISIONS:
            raise InputError(
                f"expected BPTT_TRITON_{name} to be one of {', '.join(PRECISIONS)}, got {precision!r}"
            )
    for name, warps in (("WARPS", WARPS), ("BACKWARD_WARPS", BACKWARD_WARPS)):
        if warps not in (0, 1, 2, 4, 8, 16):
            raise InputError(
                f"expected BPTT_TRITON_{name} to be 0 (the default), 1, 2, 4, 8 or 16, got {warps}"
            )
    for name, parts in (("ACCUMULATORS", ACCUMULATORS), ("BACKWARD_ACCUMULATORS", BACKWARD_ACCUMULATORS)):
        if parts not in (1, 2, 4, 8, 16, 32):
            raise InputError(f"expected BPTT_TRITON_{name} to be 1, 2, 4, 8, 16 or 32, got {parts}")
    if BACKWARD_EXCHANGE not in EXCHANGES:
        raise InputError(
            f"expected BPTT_TRITON_BACKWARD_EXCHANGE to be one of {', '.join(EXCHANGES)}, "
            f"got {BACKWARD_EXCHANGE!r}"
        )
    if AUTOTUNE not in ("0", "1"):
        raise InputError(f"expected BPTT_TRITON_AUTOTUNE to be 0 or 1, got {AUTOTUNE!r}")


def available_interpreted(x: Tensor) -> bool:
    """CPU tensors run the kernels only when asked for (BPTT_ENGINE=triton) in Triton's interpreter."""
    return native.engine() == "triton" and interpreting() and available(x)


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _on(x: Tensor) -> contextlib.AbstractContextManager[Any]:
    """Launch on the tensors' own GPU (Triton launches on the current device): a switch to it and back
    only where it is not the current one already (as in autograd's thread for that device)."""
    if x.device.type != "cuda" or x.device.index == torch.cuda.current_device():
        return contextlib.nullcontext()
    return torch.cuda.device(x.device)


def _launch(kernel: Any, n: int) -> Callable[..., Any]:
    k = kernels()
    assert k is not None
    return kernel[k.grid(n)]  # type: ignore[no-any-return]


# -- LSTM settings as the kernels' compile-time constants -------------------------------------------


def _variant(step: Any) -> Any:
    """The LSTM step's variant as the kernels' compile-time constant (`kernels.Variant`), built once
    a variant (the step's `variant` and `gate_names` are frozen)."""
    key = (step.variant, step.gate_names)
    constant = _variants.get(key)
    if constant is None:
        k = kernels()
        assert k is not None
        v, names = step.variant, step.gate_names
        blocks = (names.index(gate) if gate in names else -1 for gate in "ifgo")
        constant = k.Variant(
            len(names), *blocks, v.peephole, v.coupled, v.input_activation, v.output_activation
        )
        _variants[key] = constant
    return constant


_variants: dict[tuple[Any, ...], Any] = {}


def _gate_recurrence_matrix(W_gg: Tensor, H: int) -> Tensor:
    """R_g (3H × 3H, rows and columns i, f, o) spread over the 4H gate columns, zero for g: (4H, 4H).

    With it the gate recurrence is one matmul on the (B, 4H) tape row: z += a_{t−1} R̃ᵀ forward and
    ∂L/∂a_{t−1} = ∂L/∂z R̃ backward, the g block contributing and receiving exact zeros.
    """
    ifo = torch.cat([torch.arange(k * H, (k + 1) * H, device=W_gg.device) for k in (0, 1, 3)])
    R = W_gg.new_zeros((4 * H, 4 * H))
    R[ifo[:, None], ifo[None, :]] = W_gg
    return R


def persistent(step: Any) -> bool:
    """Whether this step runs the persistent kernels (split or not) under the loop setting: where it has
    them (`persistent_kind`) and BPTT_TRITON_LOOP is not per-step."""
    if _setting("LOOP") == "per-step":
        return False
    return persistent_kind(step)


def persistent_kind(step: Any) -> bool:
    """Whether this step has persistent kernels: every cell but the LSTM's FGR and projections."""
    return not getattr(step, "proj_size", 0) and not (
        hasattr(step, "variant") and step.variant.gate_recurrence
    )


def split_grid(
    B: int, H: int, block_b: int, block_h: int, sms: int | None, max_parts: int
) -> tuple[int, int, int]:
    """The persistent kernels' grid (blocks of rows, programs per block) and the units each program
    computes, in whole tiles of `block_h`.

    Split (`sms`, the GPU's SMs, given), a block's units go to as many programs as there are tiles of
    them, at most `max_parts`, and no more programs in all than SMs (the grid barrier needs every
    program resident at once); else one program a block computes all H units.

    Example:
        >>> split_grid(B=64, H=256, block_b=16, block_h=16, sms=132, max_parts=64)  # 4 × 16 programs
        (4, 16, 16)
        >>> split_grid(B=64, H=256, block_b=16, block_h=16, sms=None, max_parts=64)
        (4, 1, 256)
    """
    rows = triton_cdiv(B, block_b)
    parts = 1 if sms is None else max(1, min(triton_cdiv(H, block_h), max_parts, sms // rows))
    units = triton_cdiv(triton_cdiv(H, block_h), parts) * block_h
    return rows, triton_cdiv(H, units), units


RESIDENT_BYTES = 64 * 1024  # the most of W_hh one program keeps on chip (in registers) across a sweep


def resident_tiles(H: int, units: int, itemsize: int) -> tuple[int, int, int] | None:
    """A resident sweep's tile for a program's share of `units`: (units rounded up to a power of two,
    which is the program's one tile; H padded to a power of two, the products' inner dimension;
    num_warps), or None where W_hh's rows for it (up to 4 gate blocks) exceed `RESIDENT_BYTES`.

    Example:
        >>> resident_tiles(H=128, units=16, itemsize=4)  # 4 gates × 16 units × 128: 32 KB, 4 warps
        (16, 128, 4)
        >>> resident_tiles(H=200, units=16, itemsize=4)  # 4 × 16 × 256: 64 KB, 8 warps
        (16, 256, 8)
        >>> resident_tiles(H=1024, units=16, itemsize=4) is None
        True
    """
    units = 1 << (units - 1).bit_length()
    hp = max(16, 1 << (H - 1).bit_length())
    size = 4 * units * hp * itemsize
    if size > RESIDENT_BYTES:
        return None
    return units, hp, 4 if size <= 32 * 1024 else 8


def bind(
    blocks: Mapping[str, Any], H: int, units: int, parts: int, itemsize: int
) -> tuple[dict[str, Any], int]:
    """`_blocks` as a launch of `parts` programs a block of rows, each computing `units` units, binds
    them, and its programs a block: a resident sweep one tile a program, a power of two wide, where
    W_hh's rows fit (`resident_tiles`), else not resident."""
    tiles = blocks["TILES"]
    resident = resident_tiles(H, units, itemsize) if tiles.RESIDENT else None
    if resident is not None:
        units, hp, num_warps = resident
        parts = triton_cdiv(H, units)
        backward = tiles.EXCHANGE == "partials"  # the only resident backward
        bound = {
            **blocks,
            "num_warps": _setting("BACKWARD_WARPS" if backward else "WARPS") or num_warps,
            "TILES": tiles._replace(UNITS=units, BLOCK_H=units, HP=hp),
        }
    else:
        bound = {**blocks, "TILES": tiles._replace(UNITS=units, RESIDENT=False, EXCHANGE="gates")}
    return bound, parts


def _persistent(kernel: Any, B: int, H: int, blocks: Mapping[str, Any], like: Tensor) -> Callable[..., None]:
    """A persistent kernel's launch over its `split_grid`, with its tiles, launch options and `sync`
    flags (kernels._sync, `_flags`) bound. Split only on a GPU: Triton's interpreter runs programs one
    after another, so there one program a block computes all its units (unless `_interpreter_sms`).
    A resident sweep whose rows of W_hh do not fit on chip runs split. Split launches are
    cooperative on a GPU (see `check_barriers`)."""
    tiles = blocks["TILES"]
    device = like.device
    on_gpu = device.type == "cuda"
    split = tiles.SPLIT and (on_gpu or _interpreter_sms is not None)
    rows, parts, bound_ = _plan(blocks, B, H, device if split else None, like.element_size())
    barrier = split and parts > 1  # programs that wait on each other every step

    def launch(*args: Any, pending: tuple[Tensor, ...] = (), steps: int | None = None, **kwargs: Any) -> None:
        """Launch; `pending`: the buffers of what the programs share (polled where BARRIER is "data");
        `steps`: T, for a kernel that exchanges partial sums (the LSTM's and GRU's backward sweeps' `part`).
        The host's work before the kernel's launch is what the GPU waits for at the start of a call:
        what can come after it does (the give-up flag's copy, the check of earlier launches')."""
        bound = bound_
        if steps is not None:
            part, slots = _exchange(bound, steps, B, parts, H, like)
            kwargs.update(part=part, slots=slots)
            if bound["TILES"].EXCHANGE == "partials":
                pending = (part,)  # what the programs poll: the partial sums, not ∂L/∂gh_t
                if slots == 2 and bound["TILES"].BARRIER == "data":  # too many steps for a slot each
                    bound = {**bound, "TILES": bound["TILES"]._replace(BARRIER="counter")}
        sync = _flags(device, rows, tiles.SPLIT, bound["TILES"].BARRIER)
        polled = tiles.SPLIT and bound["TILES"].BARRIER == "data"
        for buf in pending if polled else ():  # all ones: not yet written (kernels._shared)
            buf.view(torch.int64 if buf.element_size() == 8 else torch.int32).fill_(-1)
        # where a split launch's barrier gave up, its programs write 1 here (kernels._report): the host's
        # flag, which `check_barriers` reads in place; a flag nothing reads where no barrier can give
        # up, or where a kernel cannot write pinned memory (`_mapped`: the flag in `sync` is copied back)
        mapped = barrier and (not on_gpu or _mapped(device))
        gave_up = _host_flag(device)[0] if mapped else _unused_flags(device)
        global _cooperative
        cooperative = False
        if barrier and _cooperative and on_gpu:
            try:
                kernel[(rows, parts)](
                    *args, sync=sync, gave_up=gave_up, **kwargs, **bound, launch_cooperative_grid=True
                )
                cooperative = True
            except Exception as err:  # a driver without cooperative launches: wait on each launch instead
                _cooperative = False
                warnings.warn(
                    f"a cooperative launch failed ({err}); the split sweeps run without one and wait for "
                    "each launch to check their grid barrier",
                    RuntimeWarning,
                    stacklevel=2,
                )
        if not cooperative:
            kernel[(rows, parts)](*args, sync=sync, gave_up=gave_up, **kwargs, **bound)
        if barrier and on_gpu:
            _launched.add(device)
            if not mapped:  # the flag into pinned host memory, without waiting; read after the event
                stuck = torch.empty(1, dtype=torch.int32, pin_memory=True).copy_(sync[-1:], non_blocking=True)
                event = torch.cuda.Event()  # type: ignore[no-untyped-call]  # unannotated in torch
                event.record(torch.cuda.current_stream(device))  # the device as given: no lookup of it
                _unchecked.append((event, stuck))
        # a split launch that is not cooperative may not have all its programs resident: its numbers
        # wait for its flag
        check_barriers(wait=barrier and not cooperative)

    return launch


def _flags(device: torch.device, rows: int, split: bool, barrier: str) -> Tensor:
    """`sync` for a launch (kernels._sync): rows · MAX_PARTS flags, then the give-up flag; one unused
    flag where the kernel is not split. Shared between launches where each leaves them as it found
    them, so that the host allocates and clears nothing (`_flags_seen`, dropped when one gave up):
    under the data barrier only the give-up flag is read, which stays zero unless a launch gives
    up (one buffer a device); the counter barrier's last program out sets its block's counter back
    to zero (kernels._release; one buffer a stream, whose launches run one after another, and fresh
    zeros while a CUDA graph is captured). Zeros of their own for the flags barrier (each program's
    flag holds its step)."""
    if not split:
        return _unused_flags(device)
    n = rows * kernels().MAX_PARTS.value + 1  # type: ignore[union-attr]
    if barrier == "data":
        key: tuple[Any, ...] = (device, n)
    elif barrier == "counter" and not (device.type == "cuda" and torch.cuda.is_current_stream_capturing()):
        key = (device, n, torch.cuda.current_stream(device).cuda_stream if device.type == "cuda" else None)
    else:
        return torch.zeros(n, dtype=torch.int32, device=device)
    flags = _flags_seen.get(key)
    if flags is None:
        flags = _flags_seen[key] = torch.zeros(n, dtype=torch.int32, device=device)
    return flags


_flags_seen: dict[tuple[Any, ...], Tensor] = {}


def _plan(
    blocks: Mapping[str, Any], B: int, H: int, split_on: torch.device | None, itemsize: int
) -> tuple[int, int, dict[str, Any]]:
    """A persistent launch's blocks of rows, programs a block and bound settings (`split_grid`, `bind`),
    remembered by what they depend on; split over the SMs of `split_on` (a GPU, or the interpreter's
    `_interpreter_sms`), else one program a block."""
    k = kernels()
    assert k is not None
    tiles = blocks["TILES"]
    warps = _setting("BACKWARD_WARPS" if tiles.EXCHANGE == "partials" else "WARPS")
    key: tuple[Any, ...] = (
        tiles,
        blocks["num_warps"],
        blocks["num_stages"],
        B,
        H,
        split_on,
        _interpreter_sms,
    )
    key = (*key, itemsize, warps, RESIDENT_BYTES, k.MAX_PARTS.value, bind)
    plan = _plans.get(key)
    if plan is None:
        sms = None
        if split_on is not None:
            on_gpu = split_on.type == "cuda"
            sms = (
                torch.cuda.get_device_properties(split_on).multi_processor_count
                if on_gpu
                else _interpreter_sms
            )
        rows, parts, units = split_grid(B, H, tiles.BLOCK_B, tiles.BLOCK_H, sms, k.MAX_PARTS.value)
        bound, parts = bind(blocks, H, units, parts, itemsize)
        plan = _plans[key] = (rows, parts, bound)
    return plan


_plans: dict[tuple[Any, ...], tuple[int, int, dict[str, Any]]] = {}


def _exchange(
    bound: dict[str, Any], steps: int, B: int, parts: int, H: int, like: Tensor
) -> tuple[Tensor, int]:
    """The buffer a split LSTM or GRU backward's programs exchange their partial sums of ∂L/∂h_{t−1} in, and
    its slots (BACKWARD_EXCHANGE "partials"): one a step under the data barrier, up to
    EXCHANGE_BYTES (each value is written once a launch), else two (the barrier keeps a step's
    slot from being overwritten before every program has read it). `like` where nothing is exchanged."""
    if bound["TILES"].EXCHANGE != "partials":
        return like, 1
    slots = steps if bound["TILES"].BARRIER == "data" else 2
    if slots * parts * B * H * like.element_size() > EXCHANGE_BYTES:
        slots = 2
    return like.new_empty((slots, parts, B, H)), slots


_STUCK = (
    "a split sweep's programs were not all resident on the GPU at once, so its grid barrier gave up and "
    "its numbers are wrong; run BPTT_TRITON_LOOP=persistent"
)

# Split launches are cooperative: the driver starts all their programs at once or refuses the launch,
# so the grid barrier never waits on a program that is not running. Each barrier still gives up after
# SPIN_LIMIT polls (kernels._sync), a guard against a bug; the launch's programs then write 1 into the
# host's flag (kernels._report, `_host_flag`), which `check_barriers` reads where it lies, without a
# copy or a wait: it raises at the next launch, and when a trace is built (which waits for the GPU).
_cooperative = True
# In Triton's interpreter, the SMs a split launch spreads a block's units over, as on a GPU; None (the
# default) computes a block's units in one program, since the interpreter runs programs one after
# another. Set only where each program runs in a thread of its own (tests/concurrent_programs.py).
_interpreter_sms: int | None = None
_host_flags: dict[torch.device, tuple[Tensor, ctypes.c_int32]] = {}
_launched: set[torch.device] = set()  # GPUs launched on since `check_barriers` last waited
_mapped_on: dict[torch.device, bool] = {}
# where a kernel cannot write pinned memory: each launch's flag copied back, with the event after it
_unchecked: list[tuple[torch.cuda.Event, Tensor]] = []


def _host_flag(device: torch.device) -> tuple[Tensor, ctypes.c_int32]:
    """The give-up flag the split launches on `device` write (kernels._report): one int32 in the host's
    memory, pinned on a GPU (mapped into its address space), and the host's view of it, which reads
    the memory itself each time (no copy, no operator)."""
    flag = _host_flags.get(device)
    if flag is None:
        t = torch.zeros(1, dtype=torch.int32, pin_memory=device.type == "cuda")
        flag = _host_flags[device] = (t, ctypes.c_int32.from_address(t.data_ptr()))
    return flag


def _mapped(device: torch.device) -> bool:
    """Whether a kernel's store on this GPU reaches the host's pinned memory, checked once a device by
    storing into the host's flag and reading it back (so on every 64-bit system with unified
    addressing, where pinned memory is mapped); else each launch's flag is copied back. Not while a
    CUDA graph is captured (no waiting then): the copy, until a launch outside one has checked."""
    seen = _mapped_on.get(device)
    if seen is None:
        if torch.cuda.is_current_stream_capturing():
            return False
        t, view = _host_flag(device)
        try:
            with torch.cuda.device(device):
                kernels().write_flag[(1,)](t, 7)  # type: ignore[union-attr]
            torch.cuda.synchronize(device)
            seen = view.value == 7
        except Exception:  # a pointer Triton refuses (no unified addressing): the copy it is
            seen = False
        view.value = 0
        _mapped_on[device] = seen
    return seen


def check_barriers(wait: bool = False) -> None:
    """Raise if a finished split launch's grid barrier gave up; with `wait`, wait for them all first."""
    if wait:
        while _launched:
            torch.cuda.synchronize(_launched.pop())
    while _unchecked and (wait or _unchecked[0][0].query()):  # type: ignore[no-untyped-call]
        event, stuck = _unchecked.pop(0)
        event.synchronize()
        if bool(stuck):
            _gave_up()
    for _, view in tuple(_host_flags.values()):  # a copy: another thread may add a device's
        if view.value:
            _gave_up()


def _gave_up() -> None:
    """Raise for a split launch whose grid barrier gave up, forgetting the launches not yet checked
    and the shared give-up flags (one that is up stays up: fresh ones from now on); the host's flags
    down again for the launches to come."""
    _unchecked.clear()
    _flags_seen.clear()
    for _, view in _host_flags.values():
        view.value = 0
    raise RuntimeError(_STUCK)


@functools.cache
def _unused_flags(device: torch.device) -> Tensor:
    """`sync` for a kernel that is not split, which never reads it, and `gave_up` where nothing reads
    it (`_persistent`): no allocation per sweep."""
    return torch.zeros(1, dtype=torch.int32, device=device)


def _nbytes(t: Tensor) -> int:
    return t.numel() * t.element_size()


def _blocks(*args: Any, **kwargs: Any) -> Mapping[str, Any]:
    """`_make_blocks(*args, **kwargs)`, remembered by its arguments, the settings in force and the
    interpreter's use: a sweep's launch costs the host less (read-only, the one remembered)."""
    key = (args, tuple(kwargs.items()), _settings(), interpreting(), AUTO_SPLIT_BYTES)
    blocks = _blocks_seen.get(key)
    if blocks is None:
        blocks = _blocks_seen[key] = MappingProxyType(_make_blocks(*args, **kwargs))
    return blocks


_blocks_seen: dict[tuple[Any, ...], Mapping[str, Any]] = {}


def _make_blocks(
    H: int,
    dtype: torch.dtype,
    backward: bool = False,
    gates: bool = True,
    split: bool | None = None,
    resident: bool | None = None,
    weight_bytes: int = 0,
    exchange: bool = False,
) -> dict[str, Any]:
    """Tile sizes and dot precision of the persistent kernels; split or not as `LOOP` says (auto: by the
    size of W_hh, `weight_bytes`).

    tl.dot needs tiles of at least 16 (BPTT_TRITON_LOOP=split takes 16 units a tile, to spread a
    block's units over the most programs). The LSTM's and GRU's forward take all gates of 64 units
    in one product, in chunks of 32 along h_{t−1}; the Elman forward (one gate) and every backward
    product (∂L/∂gh_t W_hh, over G·H) in chunks of 128 (64 in float64; IEEE backward products 256
    split, else 64). Measured on an H200 at B = 32, T = 200, H = 128: the LSTM forward takes 3.4 ms in chunks of 32 and 39.8 ms in chunks of 128
    (a 128 KB tile per step); the Elman forward 1.1 ms in chunks of 128. BPTT_TRITON_CHUNK and
    BPTT_TRITON_BACKWARD_CHUNK set the chunks (16 to 512), BPTT_TRITON_STAGES the chunk loops'
    pipeline stages, to measure others. float32 products forward use three TF32 passes (`tf32x3`),
    which keeps float32 accuracy on tensor cores, and backward plain float32 FMAs (`ieee`), which ran
    faster there on an H100 and an H200 (BPTT_TRITON_PRECISION, BPTT_TRITON_BACKWARD_PRECISION); the
    interpreter and float64 use IEEE products.
    """
    exact = dtype == torch.float64 or interpreting()
    k = kernels()
    assert k is not None
    v = {name: _setting(name) for name in SETTINGS}
    if split is None:
        loop = v["LOOP"]
        split = loop in ("split", "resident") or (loop == "auto" and weight_bytes >= AUTO_SPLIT_BYTES)
    resident = v["LOOP"] in ("resident", "auto") if resident is None else resident
    # `exchange`: the kernel (the LSTM's or GRU's backward) can exchange partial sums (BACKWARD_EXCHANGE)
    partials = backward and exchange and split and resident and v["BACKWARD_EXCHANGE"] == "partials"
    precision = "ieee" if exact else v["BACKWARD_PRECISION"] if backward else v["PRECISION"]
    if gates and not backward:
        chunk = 32
    elif dtype == torch.float64:
        chunk = 64
    elif backward and precision == "ieee":  # FMA products: 256 split; 128 spilled an Elman's registers
        chunk = 256 if split else 64
    else:
        chunk = 128
    chunk = (v["BACKWARD_CHUNK"] if backward else v["CHUNK"]) or chunk
    tiles = k.Tiles(
        BLOCK_B=16,
        # split: tiles of 16 units, the most programs a block of rows can spread over
        BLOCK_H=16 if split else min(64, max(16, 1 << (H - 1).bit_length())),
        BLOCK_K=32 if interpreting() else chunk,
        PRECISION=precision,
        SPLIT=split,
        CACHE=".cg" if split else "",  # L1 is not coherent across the programs of a split block
        UNITS=H,  # one program computes all units; `_persistent` shares them out when split
        # forward, and the LSTM's and GRU's backward partial sums (see kernels._back_product, _from_partials);
        # `_persistent` keeps it where W_hh's rows fit on chip
        RESIDENT=split and resident and (not backward or partials),
        EXCHANGE="partials" if partials else "gates",
        BARRIER=barrier_for(v["BARRIER"], backward),
        # forward where split: a whole block's units a program (4 × 64 wide) spilled 1.1 KB at 8
        ACCUMULATORS=v["BACKWARD_ACCUMULATORS"] if backward else v["ACCUMULATORS"] if split else 1,
    )
    warps = (v["BACKWARD_WARPS"] if backward else v["WARPS"]) or 4
    return {"TILES": tiles, "num_warps": warps, "num_stages": v["STAGES"]}


def _carry(dh_n: Tensor | None, grad_out: Tensor) -> Tensor:
    """A per-step backward loop's ∂L/∂h carry, in place from ∂L/∂h_n: a copy of it, or zeros where
    it is None (neither h_n nor c_n used, `dispatch.Kernel.zero_final_grads`)."""
    return grad_out.new_zeros(grad_out.shape[1:]) if dh_n is None else dh_n.clone()


def _recurrent(h_prev: Tensor, W_hh: Tensor, b_hh: Tensor | None, out: Tensor) -> None:
    """gh_t = W_hh h_{t−1} + b_hh into `out`, one matmul (a per-step sweep: gx holds b_ih alone)."""
    if b_hh is None:
        torch.mm(h_prev, W_hh.T, out=out)
    else:
        torch.addmm(b_hh, h_prev, W_hh.T, out=out)


def lstm_forward_sweep(step: Step, tape: Tape, gx: Tensor, p: Params, outputs: Outputs) -> bool:
    k = kernels()
    assert k is not None and tape.c_buf is not None and tape.gates_buf is not None
    proj = step.proj_size  # type: ignore[attr-defined]
    fgr = step.variant.gate_recurrence  # type: ignore[attr-defined]
    b_hh = p.get("bias_hh")  # gx holds b_ih alone (`dispatch.Kernel.adds_bias_hh`)
    if persistent(step):
        T, B, _ = gx.shape
        H = tape.hidden_size
        blocks = _blocks(H, gx.dtype, weight_bytes=_nbytes(p["weight_hh"]))
        w = [p.get(name, gx) for name in ("weight_ci", "weight_cf", "weight_co")]
        launch = _persistent(k.lstm_forward_sweep, B, H, blocks, gx)
        launch(
            gx,
            p["weight_hh"].contiguous(),
            *w,
            gx if b_hh is None else b_hh,
            tape.h_buf,
            tape.c_buf,
            tape.gates_buf,
            *outputs,
            T,
            B,
            H,
            V=_variant(step),
            HAS_BIAS=b_hh is not None,
            REVERSE=tape.reverse,
            pending=(tape.h,),
        )
        return True
    B, H = gx.shape[1], tape.hidden_size
    n = B * H
    W_hh = p["weight_hh"]
    R = _gate_recurrence_matrix(p["weight_gg"], H) if fgr else None
    w_ci, w_cf, w_co = (p.get(name, gx) for name in ("weight_ci", "weight_cf", "weight_co"))
    m = tape.extras["m"] if proj else tape.h  # m_t = h_t without a projection
    gh = gx.new_empty(gx.shape[1:])  # (B, G·H), reused every step
    variant = _variant(step)
    launch = _launch(k.lstm_forward_step, n)
    # views of the tape by time position t, taken once
    c, c_prev, gates, gates_prev, h, h_prev = (
        tape.c,
        tape.c_prev,
        tape.gates,
        tape.gates_prev,
        tape.h,
        tape.h_prev,
    )
    for t in tape.order:
        _recurrent(h_prev[t], W_hh, b_hh, gh)
        if R is not None:
            gh.addmm_(gates_prev[t], R.T)  # FGR: + R_g [i, f, o]_{t−1}
        launch(
            gx[t],
            gh,
            c_prev[t],
            w_ci,
            w_cf,
            w_co,
            gates[t],
            c[t],
            m[t],
            n,
            H,
            V=variant,
            BLOCK=k.BLOCK,
        )
        if proj:
            torch.mm(m[t], p["weight_hr"].T, out=h[t])  # h_t = W_hr m_t
    return False


def lstm_backward_sweep(
    step: Step, tape: Tape, grad_out: Tensor, dh_n: Tensor | None, dc_n: Tensor | None, p: Params
) -> tuple[Tensor, Carry]:
    k = kernels()
    assert k is not None and tape.dgx is not None and tape.dc is not None and tape.dh is not None
    proj = step.proj_size  # type: ignore[attr-defined]
    fgr = step.variant.gate_recurrence  # type: ignore[attr-defined]
    B, H = grad_out.shape[1], tape.hidden_size
    n = B * H
    W_hh = p["weight_hh"]
    if persistent(step):
        T = grad_out.shape[0]
        blocks = _blocks(H, grad_out.dtype, backward=True, weight_bytes=_nbytes(W_hh), exchange=True)
        # ∂L/∂h_t via step t+1 and ∂L/∂c_t, from ∂L/∂h_n and ∂L/∂c_n (the kernel copies them in); at
        # the end ∂L/∂h_0 and ∂L/∂c_0
        dh_next, dc_carry = grad_out.new_empty((2, B, H)).unbind(0)  # one allocation
        w = [p.get(name, grad_out) for name in ("weight_ci", "weight_cf", "weight_co")]
        launch = _persistent(k.lstm_backward_sweep, B, H, blocks, grad_out)
        given = dh_n is not None  # else neither ∂L/∂h_n nor ∂L/∂c_n: the kernel starts from zeros
        if not given:
            dh_n = dc_n = grad_out  # unread
        elif dc_n is None:  # h_n used, c_n not
            dc_n = grad_out.new_zeros((B, H))
        launch(
            grad_out,
            dh_n,
            dc_n,
            dh_next,
            dc_carry,
            W_hh.contiguous(),
            *w,
            tape.c_buf,
            tape.gates_buf,
            tape.dh,
            tape.dc,
            tape.dgx,
            T,
            B,
            H,
            V=_variant(step),
            REVERSE=tape.reverse,
            HAS_GRAD_N=given,
            pending=(tape.dgx,),
            steps=T,
        )
        return dh_next, (dc_carry,)
    R = _gate_recurrence_matrix(p["weight_gg"], H) if fgr else None
    w_ci, w_cf, w_co = (p.get(name, grad_out) for name in ("weight_ci", "weight_cf", "weight_co"))
    dh_next = _carry(dh_n, grad_out)  # ∂L/∂h_t via step t+1; at the last step, ∂L/∂h_n
    dc_carry = (dc_n if dc_n is not None else grad_out.new_zeros((B, H))).clone()  # ∂L/∂c, in place
    da = grad_out.new_zeros((B, 4 * H)) if fgr else grad_out  # FGR: ∂L/∂[i, f, g, o]_t via step t+1
    dm = grad_out.new_empty((B, H)) if proj else grad_out
    variant = _variant(step)
    launch = _launch(k.lstm_backward_step, n)
    # views of the tape by time position t, taken once
    c, c_prev, dc, dgx, dh, gates = tape.c, tape.c_prev, tape.dc, tape.dgx, tape.dh, tape.gates
    for t in reversed(tape.order):
        if proj:
            dh_t = torch.add(grad_out[t], dh_next, out=dh[t])  # ∂L/∂h_t = ∂ℓ/∂h_t + via step t+1
            torch.mm(dh_t, p["weight_hr"], out=dm)  # ∂L/∂m_t = W_hrᵀ ∂L/∂h_t
        launch(
            grad_out[t],
            dh_next,
            dm,
            dh[t],
            gates[t],
            c[t],
            c_prev[t],
            dc_carry,
            da,
            w_ci,
            w_cf,
            w_co,
            dgx[t],
            dc[t],
            dc_carry,
            n,
            H,
            V=variant,
            GATE_RECURRENCE=fgr,
            PROJECTION=bool(proj),
            BLOCK=k.BLOCK,
        )
        torch.mm(dgx[t], W_hh, out=dh_next)  # ∂L/∂h_{t−1} = W_hhᵀ ∂L/∂gh_t
        if R is not None:
            torch.mm(dgx[t], R, out=da)  # ∂L/∂[i, f, o]_{t−1} = R_gᵀ ∂L/∂z_{i,f,o}
    if R is not None:
        return dh_next, (dc_carry, torch.cat([da[:, : 2 * H], da[:, 3 * H :]], dim=-1))
    return dh_next, (dc_carry,)


# -- GRU and Elman RNN -------------------------------------------------------------------------------


def gru_forward_sweep(step: Step, tape: Tape, gx: Tensor, p: Params, outputs: Outputs) -> bool:
    k = kernels()
    assert k is not None
    B, H = gx.shape[1], tape.hidden_size
    W_hh, b_hh = p["weight_hh"], p.get("bias_hh")
    if persistent(step):
        blocks = _blocks(H, gx.dtype, weight_bytes=_nbytes(p["weight_hh"]))
        launch = _persistent(k.gru_forward_sweep, B, H, blocks, gx)
        launch(
            gx,
            W_hh.contiguous(),
            gx if b_hh is None else b_hh,
            tape.h_buf,
            tape.gates_buf,
            tape.extras["ghn"],
            *outputs,
            gx.shape[0],
            B,
            H,
            HAS_BIAS=b_hh is not None,
            REVERSE=tape.reverse,
            pending=(tape.h,),
        )
        return True
    gh = gx.new_empty(gx.shape[1:])  # (B, 3H)
    launch = _launch(k.gru_forward_step, B * H)
    # views of the tape by time position t, taken once
    gates, h, h_prev, ghn = tape.gates, tape.h, tape.h_prev, tape.extras["ghn"]
    for t in tape.order:
        # gh_t = W_hh h_{t−1} + b_hh (b_hn stays inside r_t ⊙ (·))
        if b_hh is None:
            torch.mm(h_prev[t], W_hh.T, out=gh)
        else:
            torch.addmm(b_hh, h_prev[t], W_hh.T, out=gh)
        launch(
            gx[t],
            gh,
            h_prev[t],
            gates[t],
            ghn[t],
            h[t],
            B * H,
            H,
            BLOCK=k.BLOCK,
        )
    return False


def gru_backward_sweep(
    step: Step, tape: Tape, grad_out: Tensor, dh_n: Tensor | None, dc_n: Tensor | None, p: Params
) -> tuple[Tensor, Carry]:
    k = kernels()
    assert k is not None and tape.dgx is not None and tape.dgh is not None and tape.dh is not None
    B, H = grad_out.shape[1], tape.hidden_size
    W_hh = p["weight_hh"]
    direct = grad_out.new_empty((B, H))  # z_t ⊙ ∂L/∂h_t
    if persistent(step):
        dh_next = grad_out.new_empty((B, H))  # from ∂L/∂h_n (the kernel copies it in); at the end ∂L/∂h_0
        blocks = _blocks(H, grad_out.dtype, backward=True, weight_bytes=_nbytes(W_hh), exchange=True)
        launch = _persistent(k.gru_backward_sweep, B, H, blocks, grad_out)
        launch(
            grad_out,
            grad_out if dh_n is None else dh_n,  # None: zero (`Kernel.zero_final_grads`)
            dh_next,
            direct,
            W_hh.contiguous(),
            tape.h_buf,
            tape.gates_buf,
            tape.extras["ghn"],
            tape.dh,
            tape.dgx,
            tape.dgh,
            grad_out.shape[0],
            B,
            H,
            REVERSE=tape.reverse,
            HAS_GRAD_N=dh_n is not None,
            pending=(tape.dgh,),
            steps=grad_out.shape[0],
        )
        return dh_next, ()
    dh_next = _carry(dh_n, grad_out)  # ∂L/∂h_t via step t+1; at the end ∂L/∂h_0
    launch = _launch(k.gru_backward_step, B * H)
    # views of the tape by time position t, taken once
    dgh, dgx, dh, gates, h_prev, ghn = (
        tape.dgh,
        tape.dgx,
        tape.dh,
        tape.gates,
        tape.h_prev,
        tape.extras["ghn"],
    )
    for t in reversed(tape.order):
        launch(
            grad_out[t],
            dh_next,
            h_prev[t],
            gates[t],
            ghn[t],
            dh[t],
            dgx[t],
            dgh[t],
            direct,
            B * H,
            H,
            BLOCK=k.BLOCK,
        )
        # ∂L/∂h_{t−1} = W_hhᵀ ∂L/∂gh_t + z_t ⊙ ∂L/∂h_t
        torch.addmm(direct, dgh[t], W_hh, out=dh_next)
    return dh_next, ()


def rnn_forward_sweep(step: Step, tape: Tape, gx: Tensor, p: Params, outputs: Outputs) -> bool:
    k = kernels()
    assert k is not None
    B, H = gx.shape[1], tape.hidden_size
    W_hh, b_hh = p["weight_hh"], p.get("bias_hh")  # gx holds b_ih alone (`adds_bias_hh`)
    act = ACTIVATIONS[step.nonlinearity]  # type: ignore[attr-defined]
    if persistent(step):
        blocks = _blocks(H, gx.dtype, gates=False, weight_bytes=_nbytes(W_hh))
        launch = _persistent(k.rnn_forward_sweep, B, H, blocks, gx)
        launch(
            gx,
            W_hh.contiguous(),
            gx if b_hh is None else b_hh,
            tape.h_buf,
            *outputs,
            gx.shape[0],
            B,
            H,
            ACT=act,
            HAS_BIAS=b_hh is not None,
            REVERSE=tape.reverse,
            pending=(tape.h,),
        )
        return True
    gh = gx.new_empty(gx.shape[1:])
    launch = _launch(k.rnn_forward_step, B * H)
    # views of the tape by time position t, taken once
    h, h_prev = tape.h, tape.h_prev
    for t in tape.order:
        _recurrent(h_prev[t], W_hh, b_hh, gh)
        launch(gx[t], gh, h[t], B * H, ACT=act, BLOCK=k.BLOCK)
    return False


def rnn_backward_sweep(
    step: Step, tape: Tape, grad_out: Tensor, dh_n: Tensor | None, dc_n: Tensor | None, p: Params
) -> tuple[Tensor, Carry]:
    k = kernels()
    assert k is not None and tape.dgx is not None and tape.dh is not None
    B, H = grad_out.shape[1], tape.hidden_size
    W_hh = p["weight_hh"]
    act = ACTIVATIONS[step.nonlinearity]  # type: ignore[attr-defined]
    if persistent(step):
        dh_next = grad_out.new_empty((B, H))  # from ∂L/∂h_n (the kernel copies it in); at the end ∂L/∂h_0
        blocks = _blocks(H, grad_out.dtype, backward=True, weight_bytes=_nbytes(W_hh))
        launch = _persistent(k.rnn_backward_sweep, B, H, blocks, grad_out)
        launch(
            grad_out,
            grad_out if dh_n is None else dh_n,  # None: zero (`Kernel.zero_final_grads`)
            dh_next,
            W_hh.contiguous(),
            tape.h_buf,
            tape.dh,
            tape.dgx,
            grad_out.shape[0],
            B,
            H,
            ACT=act,
            REVERSE=tape.reverse,
            HAS_GRAD_N=dh_n is not None,
            pending=(tape.dgx,),
        )
        return dh_next, ()
    dh_next = _carry(dh_n, grad_out)  # ∂L/∂h_t via step t+1; at the end ∂L/∂h_0
    launch = _launch(k.rnn_backward_step, B * H)
    # views of the tape by time position t, taken once
    dgx, dh, h = tape.dgx, tape.dh, tape.h
    for t in reversed(tape.order):
        launch(grad_out[t], dh_next, h[t], dh[t], dgx[t], B * H, ACT=act, BLOCK=k.BLOCK)
        torch.mm(dgx[t], W_hh, out=dh_next)  # ∂L/∂h_{t−1} = W_hhᵀ ∂L/∂z_t
    return dh_next, ()


# -- the sweeps, with engine/sweep.py's signatures --------------------------------------------------

_SWEEPS: dict[type, tuple[Callable[..., bool], Callable[..., tuple[Tensor, Carry]]]] = {}


def register(step_type: type, kind: str, accepts: Callable[[Any], bool] | None = None) -> None:
    """Register the Triton sweeps of `kind` ("rnn", "gru" or "lstm") for one exact step type.

    On CUDA, and on the CPU in the interpreter. `accepts(step)` says which settings of the step the
    kernels implement (default: all); a step it refuses runs on the PyTorch loop.
    """
    _SWEEPS[step_type] = {
        "rnn": (rnn_forward_sweep, rnn_backward_sweep),
        "gru": (gru_forward_sweep, gru_backward_sweep),
        "lstm": (lstm_forward_sweep, lstm_backward_sweep),
    }[kind]
    for device, can_run in (("cpu", available_interpreted), ("cuda", available)):
        dispatch.register(
            dispatch.Kernel(
                "triton",
                step_type,
                device,
                forward_sweep,
                backward_sweep,
                accepts or (lambda step: True),
                can_run,
                fills_outputs=True,
                adds_bias_hh=True,
                zero_final_grads=True,
            )
        )


def _sweeps(step: Step) -> tuple[Callable[..., bool], Callable[..., tuple[Tensor, Carry]]]:
    """The forward and backward sweep registered for this exact step type."""
    return _SWEEPS[type(step)]


def forward_sweep(step: Step, tape: Tape, gx: Tensor, p: Params, outputs: Outputs) -> None:
    """The forward sweep, and the layer's outputs filled (`dispatch.Kernel.fills_outputs`): by the
    persistent kernels as they go, else copied from the tape after the sweep."""
    gx = gx.contiguous()
    with _on(gx):
        sweep = functools.partial(_sweeps(step)[0], step, tape, gx, p, outputs)
        if not _tuned_call("forward", step, sweep, gx, p):
            out, h_n, *c_n = outputs
            out.copy_(tape.h)
            h_n[0].copy_(tape.final(tape.h_buf))
            if c_n:
                assert tape.c_buf is not None
                c_n[0][0].copy_(tape.final(tape.c_buf))


def backward_sweep(
    step: Step, tape: Tape, grad_out: Tensor, dh_n: Tensor | None, dc_n: Tensor | None, p: Params
) -> tuple[Tensor, Carry]:
    allocate_step_grads(step, tape, grad_out)
    grad_out = grad_out.contiguous()
    sweep = functools.partial(
        _sweeps(step)[1],
        step,
        tape,
        grad_out,
        None if dh_n is None else dh_n.contiguous(),  # None: zero, with dc_n (`Kernel.zero_final_grads`)
        None if dc_n is None else dc_n.contiguous(),
        p,
    )
    with _on(grad_out):
        return _tuned_call("backward", step, sweep, grad_out, p)


# -- autotuning ----------------------------------------------------------------------------------------


class Kind(NamedTuple):
    """A kind of sweep, as autotuning tells them apart."""

    direction: str  # "forward" or "backward"
    step: type
    constants: tuple[str, Any]  # the LSTM's variant, the Elman RNN's nonlinearity
    params: tuple[str, ...]  # the parameters' names: biases, peepholes
    batch: int
    hidden: int
    steps: int  # the sequence length rounded up to a power of two
    dtype: torch.dtype
    device: str
    settings: tuple[Any, ...]  # the module's `SETTINGS` as set


class Tuned(NamedTuple):
    """One kind of sweep as autotuning timed it: each candidate's milliseconds or why it failed, and
    the candidate chosen."""

    key: Kind
    times: dict[str, float | str]
    choice: dict[str, Any]
    label: str


_tuned: dict[Kind, Tuned] = {}
R = TypeVar("R")


def autotune(enabled: bool = True) -> None:
    """Time the persistent sweeps' settings on the first sweep of each kind and keep the fastest
    (`AUTOTUNE`, BPTT_TRITON_AUTOTUNE=1), or stop (what was chosen is kept for when it is on again).

    Example:
        >>> from bptt.engine import gpu
        >>> gpu.autotune()
        >>> gpu.AUTOTUNE
        '1'
        >>> gpu.autotune(False)
    """
    global AUTOTUNE
    AUTOTUNE = "1" if enabled else "0"


def tuned() -> list[Tuned]:
    """What autotuning chose in this process so far, one entry per kind of sweep."""
    return list(_tuned.values())


def clear_tuned() -> None:
    """Forget every choice: the next sweep of each kind is timed again."""
    _tuned.clear()


def label(candidate: dict[str, Any]) -> str:
    """A candidate's settings in words, e.g. "loop resident, barrier data, accumulators 8"."""
    return (
        ", ".join(f"{name.lower().replace('_', ' ')} {value}" for name, value in candidate.items())
        or "as set"
    )


def _time_ms(run: Callable[[], Any], like: Tensor) -> float:
    """Milliseconds one sweep takes under the current candidate: after a first run (which compiles),
    the mean of three by CUDA events on a GPU (checking the grid barriers), the wall clock of one in
    the interpreter."""
    run()
    if like.device.type != "cuda":
        start = time.perf_counter()
        run()
        return (time.perf_counter() - start) * 1e3
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
    begin.record()
    for _ in range(3):
        run()
    end.record()
    end.synchronize()
    check_barriers(wait=True)
    return float(begin.elapsed_time(end)) / 3


def _tune(direction: str, run: Callable[[], Any], like: Tensor, key: Kind) -> Tuned:
    """Time every candidate of this direction; the fastest. The settings as set come first and fail as
    they would untuned; another candidate that fails (a kernel that does not compile for this GPU, a
    grid barrier that gave up) is left out, its error kept in `Tuned.times`, and what it changed on
    the way undone: a failed cooperative launch (a kernel too large for one) does not turn cooperative
    launches off for the rest, nor warn that it did."""
    global _cooperative
    times: dict[str, float | str] = {}
    best: tuple[float, dict[str, Any]] | None = None
    for candidate in FORWARD_CANDIDATES if direction == "forward" else BACKWARD_CANDIDATES:
        name = label(candidate)
        token = _chosen.set(candidate)
        cooperative = _cooperative
        try:
            with warnings.catch_warnings(record=True) as said:
                warnings.simplefilter("always")
                ms = _time_ms(run, like)
        except Exception as err:
            if not candidate:
                raise
            times[name] = f"{type(err).__name__}: {err}"[:300]
            _cooperative = cooperative
            continue
        finally:
            _chosen.reset(token)
        for warning in said:  # a candidate that ran says what it has to say
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        times[name] = ms
        if best is None or ms < best[0]:
            best = (ms, candidate)
    assert best is not None
    return Tuned(key, times, best[1], label(best[1]))


def _tuned_call(direction: str, step: Step, run: Callable[[], R], like: Tensor, p: Params) -> R:
    """run() under the settings autotuning chose for this kind of sweep, timing the candidates first
    where it has not chosen yet. Not while a CUDA graph is captured, and not under
    torch.use_deterministic_algorithms (timings differ from run to run, and so could the choice and
    the last bits of the numbers, as with cudnn.benchmark): the settings as set run then. Without
    AUTOTUNE, or for a step without persistent kernels, run() as it is."""
    if AUTOTUNE != "1" or not persistent_kind(step):
        return run()
    T, B = like.shape[0], like.shape[1]
    key = Kind(
        direction,
        type(step),
        (repr(getattr(step, "variant", None)), getattr(step, "nonlinearity", None)),
        tuple(sorted(p)),
        B,
        int(p["weight_hh"].shape[1]),
        1 << max(T - 1, 0).bit_length(),
        like.dtype,
        str(like.device),
        tuple(globals()[name] for name in SETTINGS),
    )
    if key not in _tuned:
        capturing = like.device.type == "cuda" and torch.cuda.is_current_stream_capturing()
        if capturing or torch.are_deterministic_algorithms_enabled():
            return run()
        _tuned[key] = _tune(direction, run, like, key)
    token = _chosen.set(_tuned[key].choice)
    try:
        return run()
    finally:
        _chosen.reset(token)
