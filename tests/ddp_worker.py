"""The worker of test_dropin's DistributedDataParallel test, in a module of its own so that each
spawned process imports only torch and bptt."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

import bptt


def data() -> torch.Tensor:
    return torch.randn(5, 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


def model() -> bptt.LSTM:
    torch.manual_seed(0)
    return bptt.LSTM(3, 4, num_layers=2, dtype=torch.float64)


def run(rank: int, world: int, port: int, path: str) -> None:
    """Each of `world` processes takes its share of the batch; rank 0 saves the averaged gradients."""
    torch.set_num_threads(1)
    bptt.engine.native.set_engine("python")  # the PyTorch loop: no wait on a first native build
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    ddp = torch.nn.parallel.DistributedDataParallel(model())
    share = data().shape[1] // world
    out, _ = ddp(data()[:, rank * share : (rank + 1) * share])
    out.pow(2).sum().backward()
    if rank == 0:
        torch.save({n: p.grad for n, p in ddp.module.named_parameters()}, path)
    dist.destroy_process_group()
