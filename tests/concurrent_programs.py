"""Triton's interpreter with every program of a launch running at once, each in a thread of its own.

The interpreter runs a launch's programs one after another, so a split sweep, whose programs wait
for each other every step (a grid barrier, or polling what the others wrote), cannot run there: the
first program would wait for a second that has not started. `concurrent_programs(sms)` runs each
program in its own thread, all started before any is waited for, as a cooperative launch starts
them on a GPU, and lets `gpu._persistent` split a block's units over up to `sms` programs in the
interpreter (`gpu._interpreter_sms`): the split sweeps' exchange between programs then runs on the
CPU, in the test suite, instead of only on a GPU.

Threads share the interpreter's one builder; the program a thread runs (`tl.program_id`) is made
per-thread, and the builder's other state is set once a launch. The interpreter's atomics are
C++ atomics on the tensors' memory; volatile loads read it afresh. A program sleeps briefly before
each poll (a volatile load, an atomic) and Python's switch interval is shortened, so that a program
polling for another's values leaves it the interpreter, and a barrier gives up after `spin_limit`
polls instead of the GPU's millions (a hung test would otherwise poll for hours). Pinned to the GridExecutor of triton==3.6.0 (constraints.txt).
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import sys
import threading
import time
from collections.abc import Iterator

import triton
import triton.language as tl
from triton.runtime import interpreter

from bptt.engine import gpu, kernels

_local = threading.local()
POLL_PAUSE = 1e-4  # seconds a program sleeps before each poll, leaving the interpreter to the others


class _Builder(interpreter.InterpreterBuilder):
    """The interpreter's builder with the running program's index per thread, and the stores of every
    other program of a block (odd index along the grid's axis 1), and its loads past L1 (".cg": what
    the other programs wrote, read after a barrier), made late by `lag` seconds each."""

    lag = 0.0

    @property  # type: ignore[override]
    def grid_idx(self) -> tuple[int, int, int] | None:
        return getattr(_local, "grid_idx", None)

    @grid_idx.setter
    def grid_idx(self, idx: tuple[int, int, int] | None) -> None:
        _local.grid_idx = idx

    # a program that polls (a volatile load, an atomic) lets the others have the interpreter first
    def create_masked_load(self, ptrs, mask, other, cache_modifier, eviction_policy, is_volatile):  # type: ignore[no-untyped-def]
        if is_volatile:
            time.sleep(POLL_PAUSE)
        elif getattr(cache_modifier, "name", "") == "CG" and self._lagging():  # after a barrier
            time.sleep(self.lag)
        return super().create_masked_load(ptrs, mask, other, cache_modifier, eviction_policy, is_volatile)

    def create_atomic_rmw(self, rmwOp, ptr, val, mask, sem, scope):  # type: ignore[no-untyped-def]
        time.sleep(POLL_PAUSE)
        return super().create_atomic_rmw(rmwOp, ptr, val, mask, sem, scope)

    def create_masked_store(self, ptrs, value, mask, cache_modifier, eviction_policy):  # type: ignore[no-untyped-def]
        if self._lagging():
            time.sleep(self.lag)
        return super().create_masked_store(ptrs, value, mask, cache_modifier, eviction_policy)

    def _lagging(self) -> bool:
        idx = self.grid_idx
        return bool(self.lag) and idx is not None and idx[1] % 2 == 1


class _ConcurrentGrid(interpreter.GridExecutor):
    """interpreter.GridExecutor.__call__ with the loop over the grid replaced by one thread a program."""

    most_at_once = 0  # the most programs of one launch seen running at once, over the context

    def __call__(self, *args_dev, **kwargs):  # type: ignore[no-untyped-def]
        argspec = inspect.getfullargspec(self.fn)
        kwargs = {k: v for k, v in kwargs.items() if k in argspec.args}
        args_hst, kwargs_hst = self._init_args_hst(args_dev, kwargs)
        for hook in self.pre_run_hooks:
            hook(*args_hst, **kwargs_hst)
        patch_scope = interpreter._patch_lang(self.fn)
        try:
            args = inspect.getcallargs(self.fn, *args_hst, **kwargs_hst)
            args = {
                name: arg if name in self.constexprs else interpreter._implicit_cvt(arg)
                for name, arg in args.items()
            }
            grid = self.grid(args) if callable(self.grid) else self.grid
            grid = tuple(grid) + (1,) * (3 - len(grid))
            interpreter.interpreter_builder.set_grid_dim(*grid)
            errors: list[BaseException] = []
            alive = [0]
            lock = threading.Lock()

            def program(idx: tuple[int, int, int]) -> None:
                interpreter.interpreter_builder.grid_idx = idx
                with lock:
                    alive[0] += 1
                    _ConcurrentGrid.most_at_once = max(_ConcurrentGrid.most_at_once, alive[0])
                try:
                    self.fn(**args)
                except BaseException as err:  # re-raised by the launching thread
                    errors.append(err)
                finally:
                    with lock:
                        alive[0] -= 1

            threads = [
                threading.Thread(target=program, args=(idx,), daemon=True)
                for idx in itertools.product(*(range(n) for n in grid))
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if errors:
                raise interpreter.InterpreterError(repr(errors[0])) from errors[0]
        finally:
            patch_scope.restore()
        self._restore_args_dev(args_dev, args_hst, kwargs, kwargs_hst)


_rewriting = threading.RLock()


def _one_at_a_time(rewrite):  # type: ignore[no-untyped-def]
    """interpreter.InterpretedFunction.rewrite under a lock: the interpreter rewrites a device function
    from its source (ast.parse) the first time it is called, and Python's ast is not safe to run in
    two threads at once (3.11: "AST constructor recursion depth mismatch"), which programs that
    call a function for the first time together would do."""

    def locked(self):  # type: ignore[no-untyped-def]
        with _rewriting:
            return rewrite(self)

    return locked


@contextlib.contextmanager
def concurrent_programs(
    sms: int = 8, spin_limit: int = 100_000, lag: float = 0.05
) -> Iterator[type[_ConcurrentGrid]]:
    """Within: each launch's programs run at once, one thread each, and the split sweeps spread a
    block's units over up to `sms` programs in the interpreter; yields the executor class, whose
    `most_at_once` counts the most programs seen running together.

    Every other program of a block stores each value, and reads each value the others wrote after
    a barrier, `lag` seconds late, so that a program that reads another's values before they are
    written (a barrier that let it pass too early), or overwrites them before the other has read
    them, makes the numbers come out wrong, rather than by luck of the threads' timing right."""
    if not gpu.interpreting():
        raise RuntimeError("concurrent_programs runs Triton's interpreter (TRITON_INTERPRET=1)")
    if triton.__version__ != "3.6.0":
        raise RuntimeError(
            f"concurrent_programs copies triton 3.6.0's GridExecutor, found {triton.__version__}"
        )
    builder = interpreter.interpreter_builder
    saved = (builder.__class__, interpreter.GridExecutor, gpu._interpreter_sms, kernels.SPIN_LIMIT)
    rewrite = interpreter.InterpretedFunction.rewrite
    switch = sys.getswitchinterval()
    builder.__class__ = _Builder
    interpreter.GridExecutor = _ConcurrentGrid
    interpreter.InterpretedFunction.rewrite = _one_at_a_time(rewrite)  # type: ignore[method-assign]
    gpu._interpreter_sms = sms
    kernels.SPIN_LIMIT = tl.constexpr(spin_limit)  # the interpreter reads it at run time
    _ConcurrentGrid.most_at_once = 0
    _Builder.lag = lag
    sys.setswitchinterval(1e-4)
    try:
        yield _ConcurrentGrid
    finally:
        sys.setswitchinterval(switch)
        builder.__class__, interpreter.GridExecutor, gpu._interpreter_sms, kernels.SPIN_LIMIT = saved
        interpreter.InterpretedFunction.rewrite = rewrite  # type: ignore[method-assign]
