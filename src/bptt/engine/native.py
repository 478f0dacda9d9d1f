"""The native sweeps: csrc/sweeps.cpp, built on first use, with the PyTorch loop as the fallback.

Why a small C++ file, chosen by measurement (2 cores, B = 16, T = 1000, H = 64): per step the LSTM
does one matmul and about a dozen elementwise operations forward and as many backward. From Python
each costs a few microseconds of dispatch, several times the arithmetic: the PyTorch loop runs the
forward at 30 µs per step and forward + backward at 4× torch.nn.LSTM. `torch.compile` of the step
took 17.6 s to compile the forward alone and ran it at 31 µs per step (its per-call guards cost what
the fusion saves). One fused pass per step in C++ (SIMD exp and tanh from glibc's libmvec) runs the
forward at 11 µs per step and forward + backward at 0.9× torch.nn.LSTM.

Per step, the recurrent product goes straight to the BLAS PyTorch links (MKL in the x86 wheels),
and the rows of the elementwise pass run on PyTorch's OpenMP threads when a step is large enough.

The file includes only per-operator ATen headers and registers its ops with TORCH_LIBRARY, so it
builds with g++ in seconds. The library is cached per source, torch version and CPU in
`$BPTT_CACHE` (default `~/.cache/bptt`), built under a file lock and moved into place atomically.

`BPTT_ENGINE=python` (or `use_engine("python")`) forces the PyTorch loop; `auto` (the default) uses
the native sweeps for float32/float64 CPU tensors when the build succeeds, and falls back with a
warning when it does not. Packed batches (sequences of several lengths) and empty batches run the
PyTorch loop (engine/function.py).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sysconfig
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor

from .._checks import InputError
from . import matmul
from .sweep import Carry, Params, allocate_grads
from .tape import Tape

SOURCE = Path(__file__).parent / "csrc" / "sweeps.cpp"
ENGINES = ("auto", "native", "python", "triton")


@dataclass
class BuildInfo:
    """How the native library came to be: built now, found in the cache, or failed."""

    ok: bool
    path: Path | None
    seconds: float  # compile time in this process; 0 when taken from the cache
    cached: bool
    error: str = ""
    first_build_seconds: float | None = None  # how long the first build of this library took


_build: BuildInfo | None = None
_engine: str = os.environ.get("BPTT_ENGINE", "auto")


def _cpu_signature() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor()


def _flags() -> list[str]:
    torch_dir = Path(torch.__file__).parent
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    return [
        "-O3",
        "-march=native",
        "-fno-math-errno",  # lets the exp/tanh calls vectorise; NaN and Inf keep their IEEE meaning
        "-fopenmp",  # batch rows in parallel, on the OpenMP runtime (libgomp) PyTorch itself loads
        "-std=c++17",
        "-Wno-c++20-extensions",  # PyTorch's own headers
        "-fPIC",
        "-shared",
        f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
        f"-I{torch_dir / 'include'}",
        f"-I{sysconfig.get_paths()['include']}",
        f"-L{torch_dir / 'lib'}",
        f"-Wl,-rpath,{torch_dir / 'lib'}",
    ]


def _library_path() -> Path:
    key = hashlib.sha256()
    for part in (
        SOURCE.read_bytes(),
        torch.__version__.encode(),
        _cpu_signature().encode(),
        " ".join(_flags()).encode(),
    ):
        key.update(part)
    return _cache_dir() / f"sweeps-{key.hexdigest()[:16]}.so"


def _cache_dir() -> Path:
    """$BPTT_CACHE, else ~/.cache/bptt, else (a home that cannot be written) a folder in the temp directory."""
    if "BPTT_CACHE" in os.environ:
        return Path(os.environ["BPTT_CACHE"])
    home = Path.home() / ".cache" / "bptt"
    try:
        home.mkdir(parents=True, exist_ok=True)
        if os.access(home, os.W_OK):
            return home
    except OSError:
        pass
    return Path(tempfile.gettempdir()) / f"bptt-cache-{os.getuid() if hasattr(os, 'getuid') else 'user'}"


def _record_build_time(path: Path, seconds: float) -> None:
    tmp = path.with_suffix(".seconds.tmp")
    tmp.write_text(f"{seconds:.3f}\n")
    os.replace(tmp, path.with_suffix(".seconds"))


def _read_build_time(path: Path) -> float | None:
    try:
        return float(path.with_suffix(".seconds").read_text())
    except (OSError, ValueError):
        return None


def build() -> BuildInfo:
    """Build (or find) and load the native library once per process."""
    global _build
    if _build is not None:
        return _build
    try:
        path = _library_path()
        seconds, cached = 0.0, True
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            from filelock import FileLock  # a dependency of torch

            with FileLock(str(path) + ".lock", timeout=600):
                if not path.exists():  # another process may have built it meanwhile
                    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
                    if compiler is None:
                        raise RuntimeError("no C++ compiler (g++) found")
                    fd, tmp = tempfile.mkstemp(suffix=".so", dir=path.parent)
                    os.close(fd)
                    start = time.perf_counter()
                    cmd = [
                        compiler,
                        *_flags(),
                        str(SOURCE),
                        "-o",
                        tmp,
                        "-ltorch_cpu",
                        "-lc10",
                        "-lmvec",
                        "-lm",
                    ]
                    proc = subprocess.run(cmd, capture_output=True, text=True)
                    if proc.returncode != 0:
                        os.unlink(tmp)
                        errors = [line for line in proc.stderr.splitlines() if "error" in line]
                        raise RuntimeError("g++ failed: " + "\n".join(errors[:10] or [proc.stderr[-2000:]]))
                    os.replace(tmp, path)  # atomic: a half-written library is never loaded
                    seconds, cached = time.perf_counter() - start, False
                    _record_build_time(path, seconds)
        torch.ops.load_library(str(path))  # type: ignore[no-untyped-call]  # unannotated in torch
        _build = BuildInfo(True, path, seconds, cached, first_build_seconds=_read_build_time(path))
    except Exception as err:  # any failure leaves the PyTorch loop in charge
        _build = BuildInfo(False, None, 0.0, False, str(err))
        warnings.warn(
            f"bptt: native sweeps unavailable ({err}); using the PyTorch loop", RuntimeWarning, stacklevel=3
        )
    return _build


def engine() -> str:
    return _engine


def set_engine(name: str) -> None:
    """`auto` (native on CPU, Triton on CUDA, where possible), `native` or `triton` (error if it cannot
    run), or `python` (the PyTorch loop everywhere)."""
    global _engine
    if name not in ENGINES:
        raise InputError(f"unknown engine {name!r}; expected one of {', '.join(map(repr, ENGINES))}")
    _engine = name


@contextlib.contextmanager
def use_engine(name: str) -> Iterator[None]:
    """Run a block with the given engine, e.g. `with use_engine("python"): ...`."""
    previous = _engine
    set_engine(name)
    try:
        yield
    finally:
        set_engine(previous)


def usable(x: Tensor) -> bool:
    """Whether the native sweeps will run for this layer input."""
    if (
        _engine in ("python", "triton")
        or x.device.type != "cpu"
        or x.dtype not in (torch.float32, torch.float64)
    ):
        return False
    info = build()
    if not info.ok and _engine == "native":
        raise RuntimeError(f"BPTT_ENGINE=native, but the native sweeps could not be built: {info.error}")
    return info.ok


# -- the sweeps, with engine/sweep.py's signatures ------------------------------------------------
#
# Each family's pair is registered for its exact step type by the family's module (cells/*.py); the
# step types are duck-typed here so that the engine does not import the cells above it.

_LSTM_FLAGS = {"i": 1, "f": 2, "o": 4}
ACTIVATIONS = {"tanh": 0, "relu": 1, "sigmoid": 2, "linear": 3}  # the Elman activations rnn_* implement


class ElmanSettings(Protocol):
    @property
    def nonlinearity(self) -> str: ...


class LSTMSettings(Protocol):
    @property
    def gates(self) -> str: ...
    @property
    def peephole(self) -> bool: ...
    @property
    def coupled(self) -> bool: ...
    @property
    def input_activation(self) -> bool: ...
    @property
    def output_activation(self) -> bool: ...
    @property
    def gate_recurrence(self) -> bool: ...


class LSTMStepSettings(Protocol):
    @property
    def variant(self) -> LSTMSettings: ...


def lstm_flags(v: LSTMSettings) -> int:
    """The variant's bits, as csrc/sweeps.cpp's BPTT_LSTM_VARIANTS spells them."""
    flags = sum(bit for gate, bit in _LSTM_FLAGS.items() if gate in v.gates)
    flags |= 8 * v.peephole | 16 * v.coupled | 32 * v.input_activation | 64 * v.output_activation
    return flags | 128 * v.gate_recurrence


@functools.cache
def lstm_compiled_flags() -> frozenset[int]:
    """The LSTM flag sets the library was compiled for (empty when it is not built)."""
    if not build().ok:
        return frozenset()
    return frozenset(int(f) for f in torch.ops.bptt_native.lstm_variant_flags())


def _onednn_steps(tape: Tape, G_H: int) -> bool:
    """Whether the per-step recurrent products go to oneDNN (large float32 steps)."""
    B, P = tape.h.shape[1:]
    return matmul.onednn(tape.x, B * P * G_H, matmul.STEP_MIN_MACS)


def _opt(p: Params, name: str, like: Tensor) -> Tensor:
    value = p.get(name)
    return value.contiguous() if value is not None else like.new_empty(0)


def _lstm_extras(p: Params, like: Tensor) -> tuple[Tensor, ...]:
    """The LSTM's optional weights in the native ops' order; empty tensors where a variant has none."""
    return tuple(
        _opt(p, name, like) for name in ("weight_hr", "weight_gg", "weight_ci", "weight_cf", "weight_co")
    )


def _backward_inputs(
    tape: Tape, grad_out: Tensor, dh_n: Tensor, gates: int, separate_dgh: bool, has_cell: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """What every native backward sweep starts from: contiguous ∂ℓ/∂h and ∂L/∂h_n, the tape's gradient
    buffers allocated, and an empty ∂L/∂h_0 for the op to fill."""
    grad_out, dh_n = grad_out.contiguous(), dh_n.contiguous()
    allocate_grads(tape, grad_out, gates=gates, separate_dgh=separate_dgh, has_cell=has_cell)
    return grad_out, dh_n, torch.empty_like(dh_n)


def rnn_forward_sweep(step: ElmanSettings, tape: Tape, gx: Tensor, p: Params) -> None:
    W_hh = p["weight_hh"].contiguous()
    torch.ops.bptt_native.rnn_forward(
        gx.contiguous(), W_hh, tape.h_buf, ACTIVATIONS[step.nonlinearity], tape.reverse
    )


def rnn_backward_sweep(
    step: ElmanSettings, tape: Tape, grad_out: Tensor, dh_n: Tensor, dc_n: Tensor | None, p: Params
) -> tuple[Tensor, Carry]:
    grad_out, dh_n, dh0 = _backward_inputs(tape, grad_out, dh_n, 1, False, False)
    torch.ops.bptt_native.rnn_backward(
        grad_out,
        dh_n,
        p["weight_hh"].contiguous(),
        tape.h_buf,
        tape.dh,
        tape.dgx,
        dh0,
        ACTIVATIONS[step.nonlinearity],
        tape.reverse,
    )
    return dh0, ()


def gru_forward_sweep(step: object, tape: Tape, gx: Tensor, p: Params) -> None:
    gx = gx.contiguous()
    torch.ops.bptt_native.gru_forward(
        gx,
        p["weight_hh"].contiguous(),
        _opt(p, "bias_hh", gx),
        tape.h_buf,
        tape.gates_buf,
        tape.extras["ghn"],
        tape.reverse,
    )


def gru_backward_sweep(
    step: object, tape: Tape, grad_out: Tensor, dh_n: Tensor, dc_n: Tensor | None, p: Params
) -> tuple[Tensor, Carry]:
    grad_out, dh_n, dh0 = _backward_inputs(tape, grad_out, dh_n, 3, True, False)
    torch.ops.bptt_native.gru_backward(
        grad_out,
        dh_n,
        p["weight_hh"].contiguous(),
        tape.h_buf,
        tape.gates_buf,
        tape.extras["ghn"],
        tape.dh,
        tape.dgx,
        tape.dgh,
        dh0,
        tape.reverse,
    )
    return dh0, ()


def lstm_forward_sweep(step: LSTMStepSettings, tape: Tape, gx: Tensor, p: Params) -> None:
    gx = gx.contiguous()
    torch.ops.bptt_native.lstm_forward(
        gx,
        p["weight_hh"].contiguous(),
        *_lstm_extras(p, gx),
        tape.h_buf,
        tape.c_buf,
        tape.gates_buf,
        tape.extras.get("m", gx.new_empty(0)),
        lstm_flags(step.variant),
        _onednn_steps(tape, gx.shape[-1]),
        tape.reverse,
    )


def lstm_backward_sweep(
    step: LSTMStepSettings, tape: Tape, grad_out: Tensor, dh_n: Tensor, dc_n: Tensor | None, p: Params
) -> tuple[Tensor, Carry]:
    assert dc_n is not None
    grad_out, dh_n, dh0 = _backward_inputs(tape, grad_out, dh_n, len(step.variant.gates), False, True)
    assert tape.dgx is not None
    dc0 = torch.empty_like(dc_n)
    torch.ops.bptt_native.lstm_backward(
        grad_out,
        dh_n,
        dc_n.contiguous(),
        p["weight_hh"].contiguous(),
        *_lstm_extras(p, grad_out),
        tape.c_buf,
        tape.gates_buf,
        tape.dh,
        tape.dc,
        tape.dgx,
        dh0,
        dc0,
        lstm_flags(step.variant),
        _onednn_steps(tape, tape.dgx.shape[-1]),
        tape.reverse,
    )
    return dh0, (dc0,)


def recurrent_floor(h: Tensor, W_hh: Tensor, steps: int) -> None:
    """Run only the recurrent products of a sweep (forward and backward), as the backward sweep would."""
    B, P = h.shape
    use = matmul.onednn(h, B * P * W_hh.shape[0], matmul.STEP_MIN_MACS)
    torch.ops.bptt_native.recurrent_products(h.contiguous(), W_hh.contiguous(), steps, use)
