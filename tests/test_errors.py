"""Bad input is refused where it enters, with what was expected and what came."""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import bptt


def test_wrong_feature_size() -> None:
    with pytest.raises(ValueError, match="expected input of size 2 in the last dimension, got 3"):
        bptt.RNN(2, 4)(torch.randn(5, 1, 3))


@pytest.mark.parametrize("shape", [(5,), (2, 5, 1, 2)])
def test_wrong_rank(shape) -> None:
    with pytest.raises(ValueError, match=rf"expected input with 2 .* or 3 .* dimensions, got {len(shape)}"):
        bptt.GRU(2, 4)(torch.randn(shape))


def test_empty_sequence() -> None:
    with pytest.raises(ValueError, match=r"at least one time step .* got input of shape \(0, 3, 2\)"):
        bptt.LSTM(2, 4)(torch.randn(0, 3, 2))


@pytest.mark.parametrize(
    ("cls", "hx", "message"),
    [
        (bptt.RNN, torch.zeros(1, 2, 4), r"expected h_0 of shape \(1, 3, 4\), got \(1, 2, 4\)"),
        (bptt.GRU, torch.zeros(2, 3, 4), r"expected h_0 of shape \(1, 3, 4\), got \(2, 3, 4\)"),
        (
            bptt.LSTM,
            (torch.zeros(1, 3, 4), torch.zeros(1, 3, 5)),
            r"expected c_0 of shape \(1, 3, 4\), got \(1, 3, 5\)",
        ),
    ],
)
def test_wrong_hx_shape(cls, hx, message) -> None:
    with pytest.raises(ValueError, match=message):
        cls(2, 4)(torch.randn(6, 3, 2), hx)


def test_unbatched_hx_must_be_two_dimensional() -> None:
    with pytest.raises(ValueError, match=r"expected h_0 of shape \(1, 4\), got \(1, 1, 4\)"):
        bptt.RNN(2, 4)(torch.randn(6, 2), torch.zeros(1, 1, 4))


def test_lstm_hx_must_be_a_pair() -> None:
    with pytest.raises(TypeError, match=r"expected hx to be a tuple \(h_0, c_0\) for the LSTM, got Tensor"):
        bptt.LSTM(2, 4)(torch.randn(6, 3, 2), torch.zeros(1, 3, 4))


def test_gru_hx_must_be_a_tensor() -> None:
    with pytest.raises(TypeError, match="expected hx to be a tensor h_0, got tuple"):
        bptt.GRU(2, 4)(torch.randn(6, 3, 2), (torch.zeros(1, 3, 4), torch.zeros(1, 3, 4)))


def test_dtype_mismatch() -> None:
    with pytest.raises(
        ValueError, match=r"expected input of dtype torch.float32 \(the model's\), got torch.float64"
    ):
        bptt.LSTM(2, 4)(torch.randn(6, 3, 2, dtype=torch.float64))


def test_integer_input() -> None:
    with pytest.raises(TypeError, match=r"expected a floating-point input, got torch\.int64"):
        bptt.RNN(2, 4)(torch.ones(6, 3, 2, dtype=torch.long))


def test_not_a_tensor() -> None:
    with pytest.raises(TypeError, match=r"expected input to be a torch\.Tensor, got list"):
        bptt.RNN(2, 4)([[0.0, 1.0]])


def test_packed_sequences_are_named() -> None:
    packed = pack_padded_sequence(torch.randn(5, 2, 2), [5, 3])
    with pytest.raises(TypeError, match=r"got PackedSequence .*pad the batch"):
        bptt.LSTM(2, 4)(packed)


def test_unknown_variant_lists_the_valid_ones() -> None:
    with pytest.raises(
        ValueError, match=r"unknown variant 'gated'; expected one of 'vanilla', 'np', 'peephole', .*'fgr'"
    ):
        bptt.LSTM(2, 4, variant="gated")


def test_unknown_nonlinearity_lists_the_valid_ones() -> None:
    with pytest.raises(
        ValueError, match=r"unknown nonlinearity 'gelu'; expected one of 'tanh', 'relu', 'sigmoid', 'linear'"
    ):
        bptt.RNN(2, 4, nonlinearity="gelu")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(input_size=0, hidden_size=4), "expected input_size ≥ 1, got 0"),
        (dict(input_size=2, hidden_size=-1), "expected hidden_size ≥ 1, got -1"),
        (dict(input_size=2, hidden_size=4, num_layers=0), "expected num_layers ≥ 1, got 0"),
        (
            dict(input_size=2, hidden_size=4, proj_size=4),
            r"expected proj_size in \[0, hidden_size = 4\), got 4",
        ),
        (
            dict(input_size=2, hidden_size=4, dropout=1.5),
            r"expected dropout to be a probability in \[0, 1\], got 1.5",
        ),
    ],
)
def test_bad_sizes(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        bptt.LSTM(**kwargs)


def test_non_integer_size() -> None:
    with pytest.raises(TypeError, match="expected hidden_size to be an int, got float"):
        bptt.GRU(2, 4.0)


def test_loss_must_be_a_scalar() -> None:
    with pytest.raises(
        ValueError, match=r"expected loss_fn to return a scalar tensor, got a tensor of shape \(3, 4\)"
    ):
        bptt.trace(bptt.RNN(2, 4), torch.randn(5, 3, 2), lambda out, h: out[-1])


def test_loss_must_depend_on_the_model() -> None:
    with pytest.raises(ValueError, match="depend on the model's output or state"):
        bptt.trace(bptt.RNN(2, 4), torch.randn(5, 3, 2), lambda out, h: torch.tensor(1.0))


def test_loss_fn_must_be_callable() -> None:
    with pytest.raises(TypeError, match="expected loss_fn to be callable"):
        bptt.trace(bptt.RNN(2, 4), torch.randn(5, 3, 2), "mse")


@pytest.mark.parametrize(
    ("module", "name"),
    [
        (torch.nn.Linear(2, 3), "torch.nn.modules.linear.Linear"),
        (torch.nn.LSTMCell(2, 3), "torch.nn.modules.rnn.LSTMCell"),
    ],
)
def test_trace_names_a_module_it_cannot_handle(module, name) -> None:
    with pytest.raises(TypeError, match=f"got {name}"):
        bptt.trace(module, torch.randn(5, 3, 2), lambda out, h: out.sum())


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_trace_refuses_non_finite_input_naming_the_position(bad: float) -> None:
    x = torch.randn(3, 7, 2)  # batch_first: (B, T, I)
    x[1, 4, 1] = bad
    x[2, 5, 0] = bad  # a later one is not reported
    model = bptt.LSTM(2, 4, batch_first=True)
    with pytest.raises(ValueError, match=rf"got {bad} at time step t=4, batch index b=1, feature 1"):
        bptt.trace(model, x, lambda out, state: out.sum())


def test_contribution_step_out_of_range() -> None:
    tr = bptt.trace(bptt.RNN(2, 4), torch.randn(5, 3, 2), lambda out, h: out.sum())
    with pytest.raises(ValueError, match=r"expected a time step k in \[0, 5\), got 5"):
        tr.contribution(5)


def test_from_torch_names_what_it_got() -> None:
    with pytest.raises(
        TypeError,
        match=re.escape(
            "expected one of torch.nn.GRU, torch.nn.LSTM, torch.nn.RNN, got torch.nn.modules.rnn.RNNCell"
        ),
    ):
        bptt.from_torch(torch.nn.RNNCell(2, 3))
