"""From `torch.nn.RNN`/`LSTM`/`GRU` to their bptt twins, weights copied."""

from __future__ import annotations

import torch
from torch import nn

from ._checks import InputTypeError
from .cells import registry
from .cells.base import RecurrentBase


def torch_recurrent() -> tuple[type[nn.Module], ...]:
    """The torch.nn modules that registered cells are twins of (`torch.nn.RNN`, `LSTM`, `GRU`)."""
    return tuple(s.torch_twin for s in registry.specs() if s.torch_twin is not None)


def from_torch(module: nn.Module) -> RecurrentBase:
    """The bptt module equivalent to a `torch.nn.RNN`, `LSTM` or `GRU`, with its weights copied.

    Same configuration (layers, directions, bias, batch_first, dropout, proj_size), device, dtype
    and training mode; parameter names are identical, so gradients line up name by name. The twin
    is the registered cell whose `CellSpec.torch_twin` the module is. It is built on the meta device
    and its storage filled from `module` (parametrized weights as the module computes them), so the
    global random number generator is not touched: looking at a model does not change its later
    dropout masks or data order.

    Example:
        >>> import torch, bptt
        >>> lstm = torch.nn.LSTM(3, 5, num_layers=2)
        >>> twin = bptt.from_torch(lstm)
        >>> x = torch.randn(7, 2, 3)
        >>> torch.allclose(twin(x)[0], lstm(x)[0], atol=1e-6)
        True
    """
    spec = registry.spec_of(module) if isinstance(module, nn.Module) else None
    if spec is None or spec.torch_twin is None or not isinstance(module, spec.torch_twin):
        names = ", ".join(f"torch.nn.{t.__name__}" for t in torch_recurrent())
        raise InputTypeError(
            f"expected one of {names}, got {type(module).__module__}.{type(module).__name__}"
        )
    weight = next(module.parameters())
    twin = spec.module(
        module.input_size,
        module.hidden_size,
        num_layers=module.num_layers,
        bias=module.bias,
        batch_first=module.batch_first,
        dropout=module.dropout,
        bidirectional=module.bidirectional,
        device="meta",  # no random initialisation: the weights come from `module`
        dtype=weight.dtype,
        **(spec.twin_options(module) if spec.twin_options is not None else {}),
    )
    assert isinstance(twin, RecurrentBase)
    twin.to_empty(device=weight.device)
    with torch.no_grad():
        for name, p in twin.named_parameters():
            p.copy_(getattr(module, name))
    twin.train(module.training)
    return twin
