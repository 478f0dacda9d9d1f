"""The time engine: the forward and backward sweeps, the autograd node, the tape and gradient terms."""

from .function import LayerPlan, LayerSweep
from .sweep import Step, backward_sweep, forward_sweep
from .tape import Tape
from .terms import Outer, Sum

__all__ = ["LayerPlan", "LayerSweep", "Outer", "Step", "Sum", "Tape", "backward_sweep", "forward_sweep"]
