"""From `torch.nn.RNN`/`LSTM`/`GRU` to their bptt twins, weights copied."""

from __future__ import annotations

from typing import Any

from torch import nn

from ._checks import InputTypeError
from .cells.base import RecurrentBase
from .cells.gru import GRU
from .cells.lstm import LSTM
from .cells.rnn import RNN

TORCH_RECURRENT = (nn.RNN, nn.LSTM, nn.GRU)


def from_torch(module: nn.Module) -> RecurrentBase:
    """The bptt module equivalent to a `torch.nn.RNN`, `LSTM` or `GRU`, with its weights copied.

    Same configuration (layers, directions, bias, batch_first, dropout, proj_size), device, dtype
    and training mode; parameter names are identical, so gradients line up name by name.

    Example:
        >>> import torch, bptt
        >>> lstm = torch.nn.LSTM(3, 5, num_layers=2)
        >>> twin = bptt.from_torch(lstm)
        >>> x = torch.randn(7, 2, 3)
        >>> torch.allclose(twin(x)[0], lstm(x)[0], atol=1e-6)
        True
    """
    if not isinstance(module, TORCH_RECURRENT):
        raise InputTypeError(
            f"expected a torch.nn.RNN, torch.nn.LSTM or torch.nn.GRU, got {type(module).__module__}.{type(module).__name__}"
        )
    weight = next(module.parameters())
    common: dict[str, Any] = dict(
        num_layers=module.num_layers,
        bias=module.bias,
        batch_first=module.batch_first,
        dropout=module.dropout,
        bidirectional=module.bidirectional,
        device=weight.device,
        dtype=weight.dtype,
    )
    twin: RecurrentBase
    if isinstance(module, nn.LSTM):
        twin = LSTM(module.input_size, module.hidden_size, proj_size=module.proj_size, **common)
    elif isinstance(module, nn.GRU):
        twin = GRU(module.input_size, module.hidden_size, **common)
    else:
        twin = RNN(module.input_size, module.hidden_size, nonlinearity=module.nonlinearity, **common)
    twin.load_state_dict(module.state_dict())
    twin.train(module.training)
    return twin
