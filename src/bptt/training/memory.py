"""A lower bound on the memory a training run needs, to refuse sizes that cannot fit before allocating.

Only what is certainly allocated is counted: the parameters with their gradients and two optimiser
buffers (4 floats per parameter), and the gate activations and states the backward pass keeps for
every step, layer and sequence. A run under this bound may still not fit; one over it never does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .trainer import TrainConfig

GATES = {"rnn": 1, "gru": 3, "lstm": 4}


def estimate(cfg: TrainConfig) -> int:
    """Bytes a run of `cfg` needs at least (float32).

    Example:
        >>> from bptt.training import TrainConfig
        >>> estimate(TrainConfig(hidden_size=1024, batch_size=1, seq_len=1)) > 4 * 4 * 1024 * 1024 * 4
        True
    """
    G, H, L, B = GATES.get(cfg.cell, 4), cfg.hidden_size, cfg.num_layers, cfg.batch_size
    T = cfg.seq_len or 1
    params = L * G * H * (2 * H + 2)  # W_ih (at least H wide above the first layer), W_hh, biases
    activations = T * B * L * H * (G + 1)  # the gates and the state of every step
    test_set = cfg.test_size * T  # the held-out inputs, at least one feature each
    return 4 * (4 * params + activations + test_set)


def physical() -> int | None:
    """This machine's memory in bytes (or its control group's limit, if lower); None if unknown."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            total = min(total, int(limit))
    except OSError:
        pass
    return int(total)
