"""What `bptt train` uses for the flags not given: settings that solve the task at its default T.

PyTorch-like defaults (`TrainConfig`: 128 units, Adam at 1e-3, no clipping, batch 32, 2000 steps)
leave the LSTM on the adding problem at T = 100 short of the criterion (test MSE 0.032 after
3000 steps). The command line instead starts from a recipe that solves it, for every cell alike,
so that a tanh RNN trained the same way shows the vanishing gradient rather than a bad setting:

    hidden_size 64, Adam lr 0.01, norm clipping at 1, batch 50, 3000 steps (early stop when solved),
    and for an LSTM with a forget gate, forget-gate bias 1 (Jozefowicz et al. 2015).

Every flag given on the command line wins; the library's `TrainConfig` keeps its own defaults.
"""

from __future__ import annotations

from typing import Any

SOLVING: dict[str, Any] = {
    "hidden_size": 64,
    "lr": 0.01,
    "clip": "norm",
    "clip_threshold": 1.0,
    "batch_size": 50,
    "steps": 3000,
}


def cli_defaults(cell: str, variant: str, chrono: bool) -> dict[str, Any]:
    """The settings `bptt train` uses for a cell when the flags do not say otherwise.

    Example:
        >>> cli_defaults("lstm", "vanilla", chrono=False)["forget_bias"], "forget_bias" in cli_defaults("gru", "vanilla", False)
        (1.0, False)
    """
    from ..cells import VARIANTS

    settings = dict(SOLVING)
    if cell == "lstm" and not chrono and variant in VARIANTS and "f" in VARIANTS[variant].gates:
        settings["forget_bias"] = 1.0
    return settings
