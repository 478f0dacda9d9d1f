"""The worker of test_dropin's DistributedDataParallel test, in a module of its own so that each
spawned process imports only torch and bptt."""

from __future__ import annotations

import faulthandler
import os
from datetime import timedelta

import torch
import torch.distributed as dist

import bptt


def data() -> torch.Tensor:
    return torch.randn(5, 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


def model() -> bptt.LSTM:
    torch.manual_seed(0)
    return bptt.LSTM(3, 4, num_layers=2, dtype=torch.float64)


def run(rank: int, world: int, store: str, path: str) -> None:
    """Each of `world` processes takes its share of the batch; rank 0 saves the averaged gradients.

    They meet through a file (`store`), not a TCP port that another process could take between its
    choice and its use; a wait longer than a minute is an error, not a hang.
    """
    # a process that hangs writes every thread's stack beside the store and exits: the test says where
    stacks = open(os.path.join(os.path.dirname(store), f"stacks-{rank}.txt"), "w")
    faulthandler.dump_traceback_later(120, exit=True, file=stacks)
    torch.set_num_threads(1)
    bptt.engine.native.set_engine("python")  # the PyTorch loop: no wait on a first native build
    dist.init_process_group(
        "gloo", init_method=f"file://{store}", rank=rank, world_size=world, timeout=timedelta(seconds=60)
    )
    ddp = torch.nn.parallel.DistributedDataParallel(model())
    share = data().shape[1] // world
    out, _ = ddp(data()[:, rank * share : (rank + 1) * share])
    out.pow(2).sum().backward()
    if rank == 0:
        torch.save({n: p.grad for n, p in ddp.module.named_parameters()}, path)
    del ddp, out  # the reducer before its process group
    dist.destroy_process_group()
    faulthandler.cancel_dump_traceback_later()
    stacks.close()
    # No teardown: a worker that hung did so after this function had returned (its stack ended in
    # torch's spawn wrapper, with a thread outside Python), while the locals' gloo objects went away.
    os._exit(0)
