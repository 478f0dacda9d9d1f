"""Which sweeps run a layer: a kernel registered for the step's exact type and settings, or the Python loop.

A kernel (the native C++ sweeps, a GPU kernel) implements the equations of one step type. It is
chosen only when the step's type *is* that type — never a subclass, whose equations may differ —,
its settings are ones the kernel implements (`accepts`), the input is on the kernel's device, and
the kernel can run now (`available`: built, the dtype supported). Anything else runs the Python
time loop of engine/sweep.py over the step's own `forward` and `backward`, which is exact for any
step. So a kernel can be slower than it might be, never wrong.

Example:
    >>> import torch, bptt
    >>> from bptt.engine import dispatch
    >>> rnn = bptt.RNN(2, 3, dtype=torch.float64)
    >>> k = dispatch.select(rnn.step, torch.zeros(1, 1, 2, dtype=torch.float64))
    >>> k.name in ("native", "python")
    True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from . import sweep
from .sweep import Carry, Params
from .tape import Tape


def _always(_: Any) -> bool:
    return True


@dataclass(frozen=True)
class Kernel:
    """The forward and backward sweeps of one step type on one device, with engine/sweep.py's signatures.

    Arguments:
        name: shown in benches and errors (`"native"`, `"triton"`).
        step: the exact step type it implements.
        device: the device type of the inputs it takes (`"cpu"`, `"cuda"`).
        forward_sweep: `(step, tape, gx, params) -> None`, filling the tape.
        backward_sweep: `(step, tape, grad_out, dh_n, dc_n, params) -> (dh_0, carry_0)`.
        accepts: whether it implements this step's settings (a variant, a nonlinearity).
        available: whether it can run for this layer input now (built, dtype, engine setting).
        fills_outputs: whether `forward_sweep` takes the layer's outputs too (`sweep.Outputs`: empty
            tensors after `params`) and fills them with copies of the tape's output, h_n and c_n,
            which `LayerSweep` otherwise copies after the sweep (the GPU's kernels write them as
            they go: no copies launched after the sweep).
        adds_bias_hh: whether `forward_sweep` adds b_hh itself, so that the input projection leaves
            it out where the step would fold it in (`Step.fold_bias_hh`): no sum of the biases
            launched before the sweep.
        zero_final_grads: whether `backward_sweep` takes dh_n = dc_n = None where neither h_n nor
            c_n was used, and starts its carries from zeros itself: nothing allocated or filled for
            them before the sweep (the GPU's kernels; `LayerSweep` passes zeros to the others).
    """

    name: str
    step: type
    device: str
    forward_sweep: Callable[..., None]  # (step, tape, gx, params[, outputs])
    backward_sweep: Callable[[Any, Tape, Tensor, Tensor, Tensor | None, Params], tuple[Tensor, Carry]]
    accepts: Callable[[Any], bool] = _always
    available: Callable[[Tensor], bool] = _always
    fills_outputs: bool = False
    adds_bias_hh: bool = False
    zero_final_grads: bool = False


PYTHON = Kernel("python", object, "any", sweep.forward_sweep, sweep.backward_sweep)
_KERNELS: list[Kernel] = []


def register(kernel: Kernel) -> Kernel:
    """Add a kernel; later registrations for the same step type and device are tried first."""
    _KERNELS.insert(0, kernel)
    return kernel


def unregister(kernel: Kernel) -> None:
    if kernel in _KERNELS:
        _KERNELS.remove(kernel)


def kernels() -> tuple[Kernel, ...]:
    return tuple(_KERNELS)


def select(step: object, x: Tensor) -> Kernel:
    """The kernel for this step and layer input: an exact match, else the Python loop."""
    for k in _KERNELS:
        if type(step) is k.step and x.device.type == k.device and k.accepts(step) and k.available(x):
            return k
    return PYTHON
