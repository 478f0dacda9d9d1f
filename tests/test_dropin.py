"""bptt's modules as drop-ins for torch.nn: second derivatives, packed sequences, parametrizations,
empty batches, saving whole modules, torch.compile, autocast and DistributedDataParallel."""

from __future__ import annotations

import io
import time
import warnings

import pytest
import torch
import torch.multiprocessing as mp
from torch.nn.utils import parametrizations, parametrize
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pack_sequence

import bptt
import ddp_worker

from helpers import rel_err
from reference import unroll

TORCH = {
    "rnn_tanh": lambda **kw: torch.nn.RNN(nonlinearity="tanh", **kw),
    "rnn_relu": lambda **kw: torch.nn.RNN(nonlinearity="relu", **kw),
    "lstm": lambda **kw: torch.nn.LSTM(**kw),
    "lstm_proj": lambda **kw: torch.nn.LSTM(proj_size=2, **kw),
    "gru": lambda **kw: torch.nn.GRU(**kw),
}
F64 = torch.float64


def _pair(kind: str, **kw: object) -> tuple[torch.nn.Module, bptt.cells.RecurrentBase]:
    torch.manual_seed(0)
    ref = TORCH[kind](input_size=3, hidden_size=4, dtype=F64, **kw)
    return ref, bptt.from_torch(ref)


def _states(state: object) -> tuple[torch.Tensor, ...]:
    return state if isinstance(state, tuple) else (state,)  # type: ignore[return-value]


def _penalty_grads(model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Gradient of a gradient penalty: ∂/∂θ ‖∂loss/∂θ‖² + ‖∂loss/∂x‖², through create_graph=True."""
    model.zero_grad()
    x = x.detach().requires_grad_(True)
    out, state = model(x)
    loss = out.pow(2).sum() + sum(s.sin().sum() for s in _states(state))
    params = list(model.parameters())
    grads = torch.autograd.grad(loss, [*params, x], create_graph=True)
    sum(g.pow(2).sum() for g in grads).backward()
    return [p.grad.clone() for p in params]


# -- exact second derivatives ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(TORCH))
def test_gradient_penalty_equals_torch(kind: str) -> None:
    ref, ours = _pair(kind, num_layers=2, bidirectional=True)
    x = torch.randn(5, 3, 3, dtype=F64)
    for a, b in zip(_penalty_grads(ours, x), _penalty_grads(ref, x), strict=True):
        assert rel_err(a, b) < 1e-10


@pytest.mark.parametrize(
    ("cls", "kw"),
    [(bptt.RNN, {"nonlinearity": nl}) for nl in bptt.NONLINEARITIES]
    + [(bptt.GRU, {})]
    + [(bptt.LSTM, {"variant": v}) for v in bptt.lstm_variants()]
    + [(bptt.LSTM, {"proj_size": 1})],
)
def test_gradgradcheck_every_cell_and_variant(cls: type, kw: dict) -> None:
    torch.manual_seed(0)
    model = cls(2, 2, dtype=F64, **kw)
    names = [n for n, _ in model.named_parameters()]
    x = torch.randn(3, 2, 2, dtype=F64, requires_grad=True)

    def f(x: torch.Tensor, *weights: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out, state = model.run(x, params=dict(zip(names, weights, strict=True)))
        return (out, *_states(state))

    weights = tuple(p.detach().clone().requires_grad_(True) for p in model.parameters())
    assert torch.autograd.gradcheck(f, (x, *weights), fast_mode=True)
    assert torch.autograd.gradgradcheck(f, (x, *weights), fast_mode=True)


@pytest.mark.parametrize("variant", ["peephole", "cifg", "fgr"])
def test_gradient_penalty_of_a_variant_equals_the_unrolled_reference(variant: str) -> None:
    torch.manual_seed(0)
    model = bptt.LSTM(3, 4, num_layers=2, bidirectional=True, variant=variant, dtype=F64)
    x = torch.randn(5, 2, 3, dtype=F64)
    ours = _penalty_grads(model, x)
    params = {n: p.detach().clone().requires_grad_(True) for n, p in model.named_parameters()}
    xr = x.clone().requires_grad_(True)
    r = unroll("lstm", params, xr, None, 2, True, variant=variant)
    loss = r["output"].pow(2).sum() + r["h_n"].sin().sum() + r["c_n"].sin().sum()
    grads = torch.autograd.grad(loss, [*params.values(), xr], create_graph=True)
    expected = torch.autograd.grad(sum(g.pow(2).sum() for g in grads), list(params.values()))
    for a, b in zip(ours, expected, strict=True):
        assert rel_err(a, b) < 1e-10


def test_create_graph_gives_the_explicit_first_derivative() -> None:
    torch.manual_seed(0)
    model = bptt.LSTM(3, 4, num_layers=2, dtype=F64)
    x = torch.randn(6, 2, 3, dtype=F64)
    explicit = torch.autograd.grad(model(x)[0].pow(2).sum(), list(model.parameters()))
    graph = torch.autograd.grad(model(x)[0].pow(2).sum(), list(model.parameters()), create_graph=True)
    assert all(g.requires_grad for g in graph)
    for a, b in zip(graph, explicit, strict=True):
        assert rel_err(a, b) < 1e-12


def test_create_graph_still_fills_the_tapes() -> None:
    torch.manual_seed(0)
    model = bptt.GRU(3, 4, dtype=F64)
    x = torch.randn(6, 2, 3, dtype=F64)
    tapes: list = []
    out, _ = model.run(x, recorder=tapes)
    torch.autograd.grad(out[-1].sum(), list(model.parameters()), create_graph=True)
    expected = bptt.trace(model, x, lambda out, h: out[-1].sum()).dh[0]
    assert tapes[0].dh is not None and rel_err(tapes[0].dh, expected) < 1e-12


# -- packed sequences ------------------------------------------------------------------------------


def _packed_case(enforce_sorted: bool) -> tuple[PackedSequence, torch.Tensor]:
    lengths = torch.tensor([6, 4, 4, 1]) if enforce_sorted else torch.tensor([4, 6, 1, 4])
    x = torch.randn(6, 4, 3, dtype=F64)
    return pack_padded_sequence(x, lengths, enforce_sorted=enforce_sorted), lengths


@pytest.mark.parametrize("kind", list(TORCH))
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("enforce_sorted", [False, True])
def test_packed_sequence_equals_torch(kind: str, bidirectional: bool, enforce_sorted: bool) -> None:
    ref, ours = _pair(kind, num_layers=2, bidirectional=bidirectional, batch_first=True)
    packed, _ = _packed_case(enforce_sorted)
    P = 2 if kind == "lstm_proj" else 4
    D = 2 if bidirectional else 1
    hx = torch.randn(2 * D, 4, P, dtype=F64)
    if kind.startswith("lstm"):
        hx = (hx, torch.randn(2 * D, 4, 4, dtype=F64))
    results = []
    for model in (ours, ref):
        data = packed.data.detach().requires_grad_(True)
        given = PackedSequence(data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)
        h0 = tuple(h.clone().requires_grad_(True) for h in _states(hx))
        out, state = model(given, h0 if len(h0) == 2 else h0[0])
        assert isinstance(out, PackedSequence)
        assert torch.equal(out.batch_sizes, packed.batch_sizes)
        loss = (out.data * torch.linspace(-1, 1, out.data.numel(), dtype=F64).view_as(out.data)).sum()
        loss = loss + sum(s.pow(2).sum() for s in _states(state))
        loss.backward()
        results.append(
            [
                out.data,
                *_states(state),
                data.grad,
                *(h.grad for h in h0),
                *(p.grad for p in model.parameters()),
            ]
        )
    for a, b in zip(*results, strict=True):
        assert rel_err(a, b) < 1e-10


@pytest.mark.parametrize("variant", ["peephole", "fgr", "cifg"])
def test_packed_equals_each_sequence_on_its_own(variant: str) -> None:
    """Packing changes nothing for any variant: each sequence run alone gives its outputs and states."""
    torch.manual_seed(0)
    model = bptt.LSTM(3, 4, num_layers=2, bidirectional=True, variant=variant, dtype=F64)
    seqs = [torch.randn(n, 3, dtype=F64) for n in (3, 5, 1)]
    out, (h_n, c_n) = model(pack_sequence(seqs, enforce_sorted=False))
    padded, lengths = torch.nn.utils.rnn.pad_packed_sequence(out)
    assert lengths.tolist() == [3, 5, 1]
    for b, seq in enumerate(seqs):
        alone, (h1, c1) = model(seq.unsqueeze(1))
        assert rel_err(padded[: len(seq), b], alone[:, 0]) < 1e-12
        assert rel_err(h_n[:, b], h1[:, 0]) < 1e-12 and rel_err(c_n[:, b], c1[:, 0]) < 1e-12


def test_packed_tapes_carry_the_lengths_and_hold_ended_sequences() -> None:
    torch.manual_seed(0)
    model = bptt.GRU(3, 4, bidirectional=True, dtype=F64)
    packed, lengths = _packed_case(enforce_sorted=False)
    tapes: list = []
    out, h_n = model.run(packed, recorder=tapes)
    (out.data.sum() + h_n.sum()).backward()
    for tape in tapes:
        assert torch.equal(tape.lengths, lengths)
    forward, reverse = tapes
    b, n = 0, int(lengths[0])  # sequence 0 ends after 4 of 6 steps
    assert torch.equal(forward.h[n:, b], forward.h[n - 1, b].expand(6 - n, 4))  # held after its end
    assert torch.equal(reverse.h[n:, b], torch.zeros(6 - n, 4, dtype=F64))  # the reverse starts at its end
    assert forward.dgx[n:, b].abs().max() == 0 and reverse.dgx[n:, b].abs().max() == 0


def test_packed_input_must_have_two_dimensional_data() -> None:
    packed = pack_padded_sequence(torch.randn(4, 2, 3, 1), torch.tensor([4, 2]))
    for model in (torch.nn.LSTM(3, 4), bptt.LSTM(3, 4)):
        with pytest.raises(RuntimeError):
            model(packed)


# -- parametrizations, flatten_parameters, empty batches ----------------------------------------------


@pytest.mark.parametrize(
    "parametrize_with",
    [
        lambda m: parametrizations.weight_norm(m, name="weight_hh_l0"),
        lambda m: parametrizations.spectral_norm(m, name="weight_hh_l0"),
        lambda m: parametrizations.orthogonal(m, name="weight_hh_l0"),
    ],
    ids=["weight_norm", "spectral_norm", "orthogonal"],
)
def test_parametrized_weight_hh_equals_torch(parametrize_with: object) -> None:
    ref, ours = _pair("lstm", num_layers=2)
    for model in (ref, ours):
        # eval: spectral_norm's power iteration steps on every read in training mode, and torch.nn
        # reads its weights more than once per forward pass
        model.eval()
        torch.manual_seed(1)  # spectral_norm starts its power iteration from a random vector
        parametrize_with(model)  # type: ignore[operator]
        assert parametrize.is_parametrized(model, "weight_hh_l0")
    x = torch.randn(5, 2, 3, dtype=F64)
    results = []
    for model in (ours, ref):
        out, (_, c) = model(x)
        (out.pow(2).sum() + c.sum()).backward()
        grads = {n: p.grad for n, p in model.named_parameters()}
        results.append((out, grads))
    assert rel_err(results[0][0], results[1][0]) < 1e-10
    assert results[0][1].keys() == results[1][1].keys()
    assert "parametrizations.weight_hh_l0.original" in results[0][1] or any(
        n.startswith("parametrizations.weight_hh_l0.original") for n in results[0][1]
    )
    for name, g in results[0][1].items():
        assert rel_err(g, results[1][1][name]) < 1e-10, name


def test_flatten_parameters_is_a_no_op() -> None:
    model = bptt.GRU(3, 4, num_layers=2)
    x = torch.randn(5, 2, 3)
    before = model(x)[0]
    pointers = [p.data_ptr() for p in model.parameters()]
    assert model.flatten_parameters() is None
    assert pointers == [p.data_ptr() for p in model.parameters()]
    assert torch.equal(model(x)[0], before)


@pytest.mark.parametrize("kind", list(TORCH))
def test_empty_batch_returns_empty_outputs_like_torch(kind: str) -> None:
    ref, ours = _pair(kind, num_layers=2, bidirectional=True)
    x = torch.randn(5, 0, 3, dtype=F64)
    results = []
    for model in (ours, ref):
        out, state = model(x)
        (out.sum() + sum(s.sum() for s in _states(state))).backward()
        results.append((out.shape, [s.shape for s in _states(state)], [p.grad for p in model.parameters()]))
    assert results[0][:2] == results[1][:2]
    for g in results[0][2]:
        assert g is not None and g.abs().max() == 0


# -- saving, compiling, reduced precision ----------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: bptt.LSTM(3, 4, num_layers=2, variant="fgr", bidirectional=True),
        lambda: bptt.GRU(3, 4, batch_first=True),
        lambda: bptt.RNN(3, 4, nonlinearity="relu"),
        *[
            lambda name=name: bptt.cells.registry.get(name).build(3, 4)
            for name in bptt.cells.registry.names()
        ],
    ],
    ids=["lstm-fgr", "gru-batch-first", "rnn-relu", *bptt.cells.registry.names()],
)
def test_save_whole_module_and_load_with_weights_only(make: object) -> None:
    model = make()  # type: ignore[operator]
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer)  # torch's default: weights_only=True
    assert type(loaded) is type(model) and repr(loaded) == repr(model)
    x = torch.randn(2, 5, 3) if model.batch_first else torch.randn(5, 2, 3)
    assert torch.equal(loaded(x)[0], model(x)[0])


class WordModel(torch.nn.Module):
    """Embedding → 2-layer bptt.LSTM → linear, as a word-level language model."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(10, 4)
        self.rnn = bptt.LSTM(4, 5, num_layers=2, dropout=0.2)
        self.out = torch.nn.Linear(5, 10)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.out(self.rnn(self.embed(tokens))[0])


def test_save_a_whole_model_holding_a_bptt_module() -> None:
    model = WordModel().eval()
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    # The user allows their own classes and torch.nn's; bptt's are allowed on import.
    with torch.serialization.safe_globals([WordModel, torch.nn.Embedding, torch.nn.Linear]):
        loaded = torch.load(buffer)
    tokens = torch.randint(0, 10, (6, 2))
    assert torch.equal(loaded(tokens), model(tokens))


# Dynamo reads .grad of the tensors it resumes with after the graph break; torch hides that warning
# itself unless warnings are errors, as they are here.
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf")
def test_torch_compile_gives_the_same_numbers() -> None:
    torch.manual_seed(0)
    model = WordModel().train()
    tokens = torch.randint(0, 10, (6, 3))
    torch.manual_seed(5)
    expected = model(tokens)
    expected.pow(2).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    compiled = torch.compile(model, backend="eager")
    torch.manual_seed(5)  # the same dropout masks
    got = compiled(tokens)
    got.pow(2).sum().backward()
    assert torch.equal(got, expected)
    for p, g in zip(model.parameters(), grads, strict=True):
        assert torch.allclose(p.grad, g, rtol=0, atol=1e-7)


@pytest.mark.parametrize("kind", ["rnn_tanh", "lstm", "gru"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_runs_in_the_autocast_dtype(kind: str, dtype: torch.dtype) -> None:
    """Under autocast the layers run in the autocast dtype, as torch.nn.RNN and torch.nn.LSTM do;
    the parameters stay float32 and get float32 gradients."""
    torch.manual_seed(0)
    ref = TORCH[kind](input_size=3, hidden_size=4)
    ours = bptt.from_torch(ref)
    x = torch.randn(6, 2, 3)
    full = ours(x)[0]
    with torch.autocast("cpu", dtype=dtype):
        out, _ = ours(x)
        low_input, _ = ours(x.to(dtype))  # an input already in the autocast dtype is taken too
        torch_out, _ = ref(x.to(dtype))
    assert out.dtype == dtype and torch.equal(out, low_input)
    assert torch_out.dtype in (dtype, torch.float32)
    tol = 0.05 if dtype == torch.bfloat16 else 0.005
    assert rel_err(out.float(), full) < tol and rel_err(out.float(), torch_out.float()) < tol
    out.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in ours.parameters())


# -- DistributedDataParallel ----------------------------------------------------------------------------


def run_ddp(folder) -> str:
    """Run ddp_worker in two spawned processes; the path of the gradients rank 0 saved.

    Raises TimeoutError where the processes have not finished after 180 s, and
    ProcessExitedException where one exited without a Python error (a worker that hangs prints its
    threads' stacks after 120 s and exits).
    """
    folder.mkdir()
    path, store = str(folder / "grads.pt"), str(folder / "store")
    # spawn, not fork: a forked process can inherit a lock another thread held and wait on it forever
    context = mp.start_processes(
        ddp_worker.run, args=(2, store, path), nprocs=2, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + 180
    while not context.join(timeout=5):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            raise TimeoutError("the two DistributedDataParallel processes did not finish within 180 s")
    return path


def test_distributed_data_parallel_averages_the_gradients(tmp_path) -> None:
    try:
        path = run_ddp(tmp_path / "first")
    except (TimeoutError, mp.ProcessExitedException) as err:
        # once in several runs on a loaded machine the two processes hung before they finished (see
        # ddp_worker); a second hang fails the test
        stacks = "".join(f.read_text()[-3000:] for f in sorted((tmp_path / "first").glob("stacks-*.txt")))
        warnings.warn(
            f"DistributedDataParallel processes hung ({err}); running them once more. Where:\n{stacks}",
            stacklevel=1,
        )
        path = run_ddp(tmp_path / "second")
    ddp = torch.load(path)
    model = ddp_worker.model()
    (model(ddp_worker.data())[0].pow(2).sum() / 2).backward()  # DDP averages the two halves' gradients
    for name, p in model.named_parameters():
        assert rel_err(ddp[name], p.grad) < 1e-12, name
