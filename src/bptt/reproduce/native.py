"""csrc/hs97.c, built on first use: HS97's online learning at C speed, PyTorch as the fallback.

Why: one online step of the 93-weight network is about a hundred tiny operations per time step;
from Python each costs microseconds of dispatch, so 74,000 sequences of length 100 take hours
through PyTorch and a minute or two in a plain C loop. The C file repeats the closed form of
`bptt.cells.hs97.truncated_grad`, and the tests hold it to the PyTorch code.

Built with the system's C compiler (`$CC`, else cc or gcc) into the same cache as the engine's
native library (`$BPTT_CACHE`, default ~/.cache/bptt), keyed by the source; no compiler, no
library: `step` returns None and the PyTorch path runs.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

SOURCE = Path(__file__).parent / "csrc" / "hs97.c"
_lib: ctypes.CDLL | None = None
_tried = False


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc"):
        if name and shutil.which(name):
            return name
    return None


def library() -> ctypes.CDLL | None:
    """The built library (built now if need be), or None when no C compiler can build it."""
    global _lib, _tried
    if _tried:
        return _lib
    _tried = True
    from ..engine.native import _cache_dir

    cc = _compiler()
    if cc is None:
        return None
    key = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    cache = _cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"hs97-{key}.so"
    with open(cache / f"hs97-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache)
            os.close(fd)
            done = subprocess.run(
                [cc, "-O2", "-shared", "-fPIC", "-o", tmp, str(SOURCE), "-lm"], capture_output=True, text=True
            )
            if done.returncode != 0:
                os.unlink(tmp)
                return None
            os.replace(tmp, path)
    lib = ctypes.CDLL(str(path))
    dp, ip = ctypes.POINTER(ctypes.c_double), ctypes.c_int
    lib.hs97_online_step.argtypes = [
        dp,
        dp,
        ip,
        ip,
        ip,
        ip,
        ip,
        ip,
        dp,
        dp,
        ctypes.c_char_p,
        ctypes.c_double,
        dp,
    ]
    lib.hs97_online_step.restype = ctypes.c_int
    _lib = lib
    return lib


def _ptr(a: np.ndarray) -> ctypes._Pointer[ctypes.c_double]:
    assert a.dtype == np.float64 and a.flags["C_CONTIGUOUS"]
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_double))


def step(
    x: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray,
    weight_out: np.ndarray,
    learning: np.ndarray,
    lr: float,
    blocks: int,
    cells_per_block: int,
) -> np.ndarray | None:
    """One online step of K networks in place (weights (K, N, M), (K, O, C + 1)); returns E (K,), or None without C.

    x (T, K, I) and target (K, O) float64; learning (K,) bool: which networks update.
    """
    lib = library()
    if lib is None:
        return None
    T, K, I = x.shape
    E = np.zeros(K)
    flags = np.ascontiguousarray(learning, dtype=np.uint8).tobytes()
    status = lib.hs97_online_step(
        _ptr(np.ascontiguousarray(x)),
        _ptr(np.ascontiguousarray(target)),
        T,
        K,
        I,
        blocks,
        cells_per_block,
        target.shape[1],
        _ptr(weight),
        _ptr(weight_out),
        flags,
        lr,
        _ptr(E),
    )
    if status != 0:
        raise MemoryError("hs97_online_step could not allocate its buffers")
    return E
