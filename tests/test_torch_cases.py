"""PyTorch's own test cases for nn.RNN, nn.LSTM and nn.GRU, run against bptt's modules.

Written from PyTorch's public tests, not copied: the ModuleInfo samples and error inputs of
`torch/testing/_internal/common_modules.py` (no-batch-dim inputs with and without hx, packed
sequences, constructor and forward errors) with the checks `test/test_modules.py` runs on them, and
the RNN cases of `test/test_nn.py` (argument checks, dropout, variable-length sequences,
projections, retained graphs, weight norm). Where a case compares with torch, both modules run.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

import bptt

from helpers import rel_err

F64 = torch.float64
PAIRS = {"RNN": (torch.nn.RNN, bptt.RNN), "GRU": (torch.nn.GRU, bptt.GRU), "LSTM": (torch.nn.LSTM, bptt.LSTM)}


def _states(state: Any) -> tuple[torch.Tensor, ...]:
    return state if isinstance(state, tuple) else (state,)


def _twins(name: str, *args: Any, **kwargs: Any) -> tuple[torch.nn.Module, torch.nn.Module]:
    """torch.nn's module and bptt's, built with the same arguments and the same weights."""
    ref_cls, our_cls = PAIRS[name]
    torch.manual_seed(0)
    ref = ref_cls(*args, dtype=F64, **kwargs)
    ours = our_cls(*args, dtype=F64, **kwargs)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


# -- ModuleInfo samples ------------------------------------------------------------------------------


def _module_inputs() -> list[tuple[str, dict[str, Any], tuple[Any, ...]]]:
    """(module, constructor kwargs, forward args), as module_inputs_torch_nn_RNN_GRU / _LSTM make them."""
    g = torch.Generator().manual_seed(0)

    def make(*shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=g, dtype=F64) * 18 - 9  # make_tensor's default range

    samples = []
    for name in ("RNN", "GRU"):
        nls = ("relu", "tanh") if name == "RNN" else (None,)
        for nl, bias, batch_first, bidir in itertools.product(
            nls, (False, True), (False, True), (False, True)
        ):
            extra = {"nonlinearity": nl} if nl else {}
            cons = dict(
                input_size=2, hidden_size=2, num_layers=2, batch_first=batch_first, bias=bias, **extra
            )
            cons["bidirectional"] = bidir
            samples.append((name, cons, (make(3, 2),)))
            samples.append((name, {**cons, "hidden_size": 3}, (make(3, 2), make(4 if bidir else 2, 3))))
            samples.append((name, cons, (pack_padded_sequence(make(5, 2, 2), torch.tensor([5, 3])),)))
            packed = pack_padded_sequence(make(5, 5, 2), torch.tensor([5, 3, 3, 2, 2]))
            samples.append((name, cons, (packed,)))
    for bias, batch_first, bidir, proj in itertools.product(
        (False, True), (False, True), (False, True), (0, 2)
    ):
        cons = dict(
            input_size=2, hidden_size=3, num_layers=2, proj_size=proj, batch_first=batch_first, bias=bias
        )
        cons["bidirectional"] = bidir
        D = 4 if bidir else 2
        samples.append(("LSTM", cons, (make(2, 2),)))
        samples.append(("LSTM", cons, (make(3, 2), (make(D, proj or 3), make(D, 3)))))
    return samples


SAMPLES = _module_inputs()


def _sample_id(sample: tuple[str, dict[str, Any], tuple[Any, ...]]) -> str:
    name, cons, args = sample
    kind = "packed" if isinstance(args[0], PackedSequence) else ("hx" if len(args) == 2 else "no_hx")
    flags = "-".join(f"{k}={v}" for k, v in cons.items() if k not in ("input_size", "num_layers"))
    return f"{name}-{kind}-{flags}"


def _requiring_grad(args: tuple[Any, ...]) -> tuple[tuple[Any, ...], list[torch.Tensor]]:
    """Fresh leaves for every tensor in the forward args (packed data included)."""
    leaves: list[torch.Tensor] = []

    def leaf(t: torch.Tensor) -> torch.Tensor:
        t = t.detach().clone().requires_grad_(True)
        leaves.append(t)
        return t

    out: list[Any] = []
    for a in args:
        if isinstance(a, PackedSequence):
            out.append(PackedSequence(leaf(a.data), a.batch_sizes, a.sorted_indices, a.unsorted_indices))
        elif isinstance(a, tuple):
            out.append(tuple(leaf(t) for t in a))
        else:
            out.append(leaf(a))
    return tuple(out), leaves


def _flat(output: Any) -> list[torch.Tensor]:
    out, state = output
    return [out.data if isinstance(out, PackedSequence) else out, *_states(state)]


@pytest.mark.parametrize("sample", SAMPLES, ids=[_sample_id(s) for s in SAMPLES])
def test_module_info_sample_forward_and_backward_equal_torch(sample: Any) -> None:
    """test_forward (with the no-batch-dim reference) and test_grad: outputs and every gradient."""
    name, cons, args = sample
    ref, ours = _twins(name, **cons)
    results = []
    for model in (ours, ref):
        given, leaves = _requiring_grad(args)
        flat = _flat(model(*given))
        w = torch.Generator().manual_seed(1)
        sum((t * torch.randn(t.shape, generator=w, dtype=F64)).sum() for t in flat).backward()
        results.append(flat + [t.grad for t in leaves] + [p.grad for p in model.parameters()])
    for a, b in zip(*results, strict=True):
        assert a.shape == b.shape and rel_err(a, b) < 1e-10
    if not isinstance(args[0], PackedSequence):  # no_batch_dim_reference_*: the batch of one, squeezed
        x = args[0].unsqueeze(0 if cons["batch_first"] else 1)
        hx = None if len(args) == 1 else tuple(h.unsqueeze(1) for h in _states(args[1]))
        batched = _flat(ours(x, hx if hx is None or name == "LSTM" else hx[0]))
        unbatched = _flat(ours(*args))
        assert torch.equal(batched[0].squeeze(0 if cons["batch_first"] else 1), unbatched[0])
        for a, b in zip(batched[1:], unbatched[1:], strict=True):
            assert torch.equal(a.squeeze(1), b)


# One sample of each kind per module (bidirectional, with biases; the smaller packed batch) keeps it fast.
GRADGRAD = [
    s
    for s in SAMPLES
    if s[1]["bidirectional"]
    and s[1]["bias"]
    and not s[1]["batch_first"]
    and s[1].get("nonlinearity") != "relu"
    and not (
        isinstance(s[2][0], PackedSequence) and len(s[2][0].batch_sizes) == 5 and s[2][0].batch_sizes[0] == 5
    )
    and not (s[0] == "LSTM" and (len(s[2]) == 2) != bool(s[1]["proj_size"]))
]


# In the default suite: RNN packed, GRU with hx, LSTM with hx and projections; the rest with -m slow.
FAST_GRADGRAD = {2, 4, 7}


@pytest.mark.parametrize(
    "sample",
    [pytest.param(s, marks=() if k in FAST_GRADGRAD else pytest.mark.slow) for k, s in enumerate(GRADGRAD)],
    ids=[_sample_id(s) for s in GRADGRAD],
)
def test_module_info_sample_gradgrad(sample: Any) -> None:
    """test_gradgrad: gradcheck and gradgradcheck over the inputs and the parameters, in float64."""
    name, cons, args = sample
    _, ours = _twins(name, **cons)
    names = [n for n, _ in ours.named_parameters()]
    given, leaves = _requiring_grad(args)
    packed = given[0] if isinstance(given[0], PackedSequence) else None

    def f(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        k = len(leaves)
        params = dict(zip(names, tensors[k:], strict=True))
        if packed is not None:
            inputs: tuple[Any, ...] = (PackedSequence(tensors[0], *list(packed)[1:]),)
        elif len(args) == 2:
            hx = tensors[1:k] if name == "LSTM" else tensors[1]
            inputs = (tensors[0], hx)
        else:
            inputs = (tensors[0],)
        return tuple(_flat(ours.run(*inputs, params=params)))

    weights = [p.detach().clone().requires_grad_(True) for p in ours.parameters()]
    assert torch.autograd.gradcheck(f, (*leaves, *weights), fast_mode=True)
    assert torch.autograd.gradgradcheck(f, (*leaves, *weights), fast_mode=True)


@pytest.mark.parametrize("name", list(PAIRS))
def test_module_info_pickle_repr_factory_kwargs_and_to(name: str) -> None:
    """test_pickle, test_repr, test_factory_kwargs, test_to."""
    ref, ours = _twins(
        name, 2, 3, num_layers=2, bias=False, batch_first=True, dropout=0.5, bidirectional=True
    )
    assert repr(ours) == repr(ref)
    assert all(p.dtype == F64 for p in ours.parameters())
    buffer = io.BytesIO()
    torch.save(ours, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer).eval()
    x = torch.randn(2, 4, 2, dtype=F64)
    assert torch.equal(loaded(x)[0], ours.eval()(x)[0])
    single = ours.to(torch.float32)
    assert all(p.dtype == torch.float32 for p in single.parameters())
    assert rel_err(single(x.float())[0], ref.eval()(x)[0]) < 1e-5


@pytest.mark.parametrize("name", list(PAIRS))
def test_module_info_non_contiguous_input(name: str) -> None:
    """test_non_contiguous_tensors: a strided input gives the same outputs and gradients."""
    _, ours = _twins(name, 2, 3, num_layers=2, bidirectional=True)
    base = torch.randn(5, 3, 4, dtype=F64)
    results = []
    for x in (base[..., ::2], base[..., ::2].contiguous()):
        x = x.detach().requires_grad_(True)
        ours.zero_grad()
        out, _ = ours(x)
        out.pow(2).sum().backward()
        results.append([out, x.grad, *(p.grad.clone() for p in ours.parameters())])
    assert not base[..., ::2].is_contiguous()
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", list(PAIRS))
def test_module_info_train_and_eval_differ(name: str) -> None:
    """train_and_eval_differ=True: dropout between layers in training mode only."""
    _, ours = _twins(name, 2, 3, num_layers=2, dropout=0.5)
    x = torch.randn(5, 3, 2, dtype=F64)
    torch.manual_seed(1)
    train = ours.train()(x)[0]
    ev = ours.eval()(x)[0]
    assert not torch.equal(train, ev)
    assert torch.equal(ev, ours(x)[0])


# Constructor and forward errors: module_error_inputs_torch_nn_RNN_GRU (error type; bptt's messages are its own).
ERROR_INPUTS: list[tuple[tuple[Any, ...], dict[str, Any], type[Exception]]] = [
    ((10, 0, 1), {}, ValueError),  # hidden_size must be greater than zero
    ((10, 10, 0), {}, ValueError),  # num_layers must be greater than zero
    ((3, 5), {"bias": 0}, TypeError),
    ((3, 5), {"bias": 1}, TypeError),
    ((3, 5), {"bias": "True"}, TypeError),
    ((3, 5), {"batch_first": 0}, TypeError),
    ((3, 5), {"batch_first": 1}, TypeError),
    ((3, 5), {"batch_first": "False"}, TypeError),
    ((3.0, 5), {}, TypeError),
    (("10", 5), {}, TypeError),
    ((0, 5), {}, ValueError),
    ((-1, 5), {}, ValueError),
    ((3, 5.0), {}, TypeError),
    ((3, -1), {}, ValueError),
    ((3, 5), {"dropout": 1.5}, ValueError),
    ((3, 5), {"dropout": True}, ValueError),
]


@pytest.mark.parametrize("name", list(PAIRS))
@pytest.mark.parametrize(("args", "kwargs", "error"), ERROR_INPUTS)
def test_module_info_construction_errors(name: str, args: tuple, kwargs: dict, error: type) -> None:
    for cls in PAIRS[name]:
        with pytest.raises(error):
            cls(*args, **kwargs)


@pytest.mark.parametrize("name", list(PAIRS))
def test_module_info_dtype_mismatch_is_a_value_error(name: str) -> None:
    for cls in PAIRS[name]:
        with pytest.raises(ValueError, match=r"float64"):
            cls(3, 5)(torch.randn(2, 4, 3, dtype=F64))


# -- test_nn.py's RNN cases -----------------------------------------------------------------------------


def _hidden(name: str, shape: tuple[int, ...], proj: int = 0) -> Any:
    h = torch.randn(*shape, dtype=F64)
    if name != "LSTM":
        return h
    return (h, torch.randn(*shape[:-1], shape[-1] if not proj else shape[-1] + 1, dtype=F64))


@pytest.mark.parametrize("name", list(PAIRS))
def test_rnn_args_check(name: str) -> None:
    """Wrong input size or hidden size: RuntimeError from torch.nn and bptt alike."""
    I, H, L, B, T = 3, 5, 2, 6, 4
    for model in _twins(name, I, H, L):
        with pytest.raises(RuntimeError):
            model(torch.randn(T, B, I + 1, dtype=F64))
        for shape in [(L + 1, B, H), (L, B + 1, H), (L, B, H + 1)]:
            with pytest.raises(RuntimeError):
                model(torch.randn(T, B, I, dtype=F64), _hidden(name, shape))
        with pytest.raises(RuntimeError):  # batched input, unbatched hidden state
            model(torch.randn(T, B, I, dtype=F64), _hidden(name, (L, H)))


def test_projections_lstm_args_check() -> None:
    I, H, P, L, B, T = 3, 5, 2, 2, 6, 4
    for model in _twins("LSTM", I, H, L, proj_size=P):
        x = torch.randn(T, B, I, dtype=F64)
        for h_shape, c_shape in [((L, B, H), (L, B, H)), ((L, B, P), (L, B, P)), ((L + 1, B, P), (L, B, H))]:
            with pytest.raises(RuntimeError):
                model(x, (torch.randn(h_shape, dtype=F64), torch.randn(c_shape, dtype=F64)))
        out, (h, c) = model(x, (torch.randn(L, B, P, dtype=F64), torch.randn(L, B, H, dtype=F64)))
        assert out.shape == (T, B, P) and h.shape == (L, B, P) and c.shape == (L, B, H)


@pytest.mark.parametrize("name", ["RNN", "GRU"])
def test_projections_errors_on_gru_and_rnn(name: str) -> None:
    for cls in PAIRS[name]:
        for proj_size in (0, 3):
            with pytest.raises(ValueError, match="proj_size argument is only supported for LSTM"):
                cls(4, 6, 2, proj_size=proj_size)


@pytest.mark.parametrize("proj_size", [-1, 6, 7])
def test_lstm_proj_size_out_of_range(proj_size: int) -> None:
    for cls in PAIRS["LSTM"]:
        with pytest.raises(ValueError):
            cls(4, 6, proj_size=proj_size)


@pytest.mark.parametrize("name", list(PAIRS))
def test_rnn_initial_hidden_state(name: str) -> None:
    _, ours = _twins(name, 3, 4, 2, proj_size=2) if name == "LSTM" else _twins(name, 3, 4, 2)
    x = torch.randn(5, 6, 3, dtype=F64)
    P = 2 if name == "LSTM" else 4
    zeros = torch.zeros(2, 6, P, dtype=F64)
    hx = (zeros, torch.zeros(2, 6, 4, dtype=F64)) if name == "LSTM" else zeros
    a, b = ours(x), ours(x, hx)
    for u, v in zip(_flat(a), _flat(b), strict=True):
        assert torch.equal(u, v)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("p", [0.0, 0.276, 0.731, 1.0])
def test_rnn_dropout(p: float, train: bool) -> None:
    """Ones everywhere, relu: layer 1 gives 10, layer 2 gives 1000·10 unless dropped (then scaled by 1/(1−p))."""
    model = bptt.RNN(10, 1000, 2, bias=False, dropout=p, nonlinearity="relu").train(train)
    with torch.no_grad():
        for w in model.parameters():
            w.fill_(1)
    out, h_n = model(torch.ones(1, 1, 10), torch.zeros(2, 1, 1000))
    values = out.flatten()
    if p == 0 or not train:
        assert torch.equal(values, torch.full_like(values, 10000))
    elif p == 1:
        assert torch.equal(values, torch.zeros_like(values))
    else:  # layer 2 sums the kept units of layer 1, each 10/(1 − p): a multiple of 10 once rescaled
        assert values.min() > 0 and torch.equal(values, values[:1].expand_as(values))
        kept = float(values[0].detach()) * (1 - p) / 10
        assert abs(kept - round(kept)) < 1e-2 and 0 < round(kept) < 1000
    assert h_n[0].min() == 10 and h_n[0].max() == 10
    assert torch.equal(h_n[1], out[0])


@pytest.mark.parametrize("name", list(PAIRS))
def test_rnn_dropout_state_and_change_dropout(name: str) -> None:
    _, ours = _twins(name, 3, 8, 2, dropout=0.0)
    x = torch.randn(4, 2, 3, dtype=F64)
    ours.train()
    assert torch.equal(ours(x)[0], ours(x)[0])  # no dropout: the same twice
    ours.dropout = 0.5  # changing the attribute takes effect, as in torch.nn
    assert not torch.equal(ours(x)[0], ours(x)[0])
    ours.eval()
    assert torch.equal(ours(x)[0], ours(x)[0])


def test_rnn_dropout_warning() -> None:
    for cls in PAIRS["LSTM"]:
        with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
            cls(3, 4, num_layers=1, dropout=0.5)


@pytest.mark.parametrize("name", list(PAIRS))
def test_error_rnn_seq_len_zero(name: str) -> None:
    for model in _twins(name, 3, 4):
        with pytest.raises(RuntimeError):
            model(torch.randn(0, 2, 3, dtype=F64))


def test_rnn_nonlinearity() -> None:
    assert bptt.RNN(1, 10).nonlinearity == "tanh"
    assert bptt.RNN(1, 10, nonlinearity="relu").nonlinearity == "relu"
    assert bptt.RNN(1, 10, 1, "relu").nonlinearity == "relu"  # passed as a positional argument
    for cls in PAIRS["RNN"]:
        with pytest.raises(ValueError):
            cls(1, 10, nonlinearity="garbage")


@pytest.mark.parametrize("name", list(PAIRS))
@pytest.mark.parametrize("bidirectional", [False, True])
def test_variable_sequence(name: str, bidirectional: bool) -> None:
    """Packed output and final states equal each sequence run alone; so do the input gradients."""
    _, ours = _twins(name, 3, 4, 2, bidirectional=bidirectional)
    lengths = [10, 10, 6, 2, 2, 1, 1]
    x = torch.randn(max(lengths), len(lengths), 3, dtype=F64, requires_grad=True)
    out, state = ours(pack_padded_sequence(x, lengths))
    padded, _ = pad_packed_sequence(out)
    w = torch.randn(padded.shape, dtype=F64)
    (padded * w).sum().backward()
    packed_grad = x.grad.clone()
    for b, n in enumerate(lengths):
        seq = x[:n, b : b + 1].detach().requires_grad_(True)
        alone, alone_state = ours(seq)
        assert rel_err(padded[:n, b], alone[:, 0]) < 1e-12
        assert padded[n:, b].abs().max() == 0 if n < max(lengths) else True
        for s, t in zip(_states(state), _states(alone_state), strict=True):
            assert rel_err(s[:, b], t[:, 0]) < 1e-12
        (alone[:, 0] * w[:n, b]).sum().backward()
        assert rel_err(packed_grad[:n, b], seq.grad[:, 0]) < 1e-12
        assert packed_grad[n:, b].abs().max() == 0 if n < max(lengths) else True


@pytest.mark.parametrize("name", list(PAIRS))
def test_rnn_retain_variables(name: str) -> None:
    _, ours = _twins(name, 3, 4, 2)
    x = torch.randn(5, 2, 3, dtype=F64)
    out = ours(x)[0].sum()
    grads = []
    for _ in range(3):
        ours.zero_grad()
        out.backward(retain_graph=True)
        grads.append([p.grad.clone() for p in ours.parameters()])
    for later in grads[1:]:
        for a, b in zip(grads[0], later, strict=True):
            assert torch.equal(a, b)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.nn.utils.weight_norm is deprecated
@pytest.mark.parametrize(
    "apply",
    [
        lambda m: torch.nn.utils.weight_norm(m, name="weight_hh_l0"),
        lambda m: torch.nn.utils.spectral_norm(m, name="weight_hh_l0"),
    ],
    ids=["weight_norm", "spectral_norm"],
)
def test_rnn_hook_based_weight_norms(apply: Callable[[torch.nn.Module], Any]) -> None:
    """The older hook-based weight_norm and spectral_norm replace a weight by an attribute."""
    ref, ours = _twins("LSTM", 3, 4, 2)
    x = torch.randn(5, 2, 3, dtype=F64)
    outs = []
    for model in (ours, ref):
        torch.manual_seed(1)
        apply(model.eval())
        assert "weight_hh_l0" not in dict(model.named_parameters())
        out = model(x)[0]
        out.sum().backward()
        outs.append((out, {n: p.grad for n, p in model.named_parameters()}))
    assert rel_err(outs[0][0], outs[1][0]) < 1e-10
    for n, g in outs[0][1].items():
        assert rel_err(g, outs[1][1][n]) < 1e-10, n
