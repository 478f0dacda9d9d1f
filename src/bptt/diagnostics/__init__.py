"""Gradient-flow diagnostics on a `bptt.Trace`: where and why gradients vanish or explode.

One module per question: `distance` (how far back does the gradient reach), `jacobian` (the
products ∂s_{T−1}/∂s_k), `decomposition` (diag(f) against the rest), `bounds` (γ·λ1), `lyapunov`
(the QR spectrum), `gates` (saturation), `monitor` (all of it in a user's own training loop).
"""

from ..cells.rnn import GAMMA
from .bounds import LayerBound, bounds, verdict
from .decomposition import ForgetSplit, forget_split
from .distance import GradientProfile, LagProfile, gradient_profile, horizon, lag_profile
from .gates import GateStats, forget_histogram, gate_stats
from .jacobian import decay_slope, distances, jacobian_norms, probe_confidence, step_jacobian
from .lyapunov import LyapunovSpectrum, lyapunov
from .monitor import Monitor, MonitorConfig
from .summary import summarize

__all__ = [
    "GAMMA",
    "ForgetSplit",
    "GateStats",
    "GradientProfile",
    "LagProfile",
    "LayerBound",
    "LyapunovSpectrum",
    "Monitor",
    "MonitorConfig",
    "bounds",
    "decay_slope",
    "distances",
    "forget_histogram",
    "forget_split",
    "gate_stats",
    "gradient_profile",
    "horizon",
    "jacobian_norms",
    "lag_profile",
    "lyapunov",
    "probe_confidence",
    "step_jacobian",
    "summarize",
    "verdict",
]
