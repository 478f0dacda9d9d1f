"""The papers' experiments, reproduced with their own protocols: `bptt reproduce NAME`.

`hs97` — Hochreiter & Schmidhuber 1997, Exp. 4 (adding, Table 7) with memory blocks and the
truncated gradient; `curves` — the seeds' vanishing curve and Arjovsky et al.'s copy baseline,
as sweeps.
"""

from .curves import copy_baseline, copy_chance, success_table, vanishing
from .hs97 import HS97Config, HS97Result, run

__all__ = ["HS97Config", "HS97Result", "copy_baseline", "copy_chance", "run", "success_table", "vanishing"]
