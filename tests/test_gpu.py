"""The Triton sweeps: every cell and variant against the PyTorch loop, in Triton's interpreter and on CUDA.

`gpu_interpret` tests run the kernels under TRITON_INTERPRET=1 (set by conftest.py when no GPU is
present) on CPU tensors at tiny sizes; `cuda` tests run them on a GPU against the float64 PyTorch
loop on the CPU and skip without one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import bptt
from bptt.cells.lstm import LSTMStep
from bptt.engine import dispatch, gpu, native

from helpers import TOL, rel_err, weighted_loss
from reference import LSTM_VARIANTS

CELLS = (
    [("rnn", {"nonlinearity": n}) for n in bptt.NONLINEARITIES]
    + [("gru", {}), ("gru", {"bias": False})]
    + [("lstm", {"variant": v}) for v in LSTM_VARIANTS]
    + [("lstm", {"variant": v, "proj_size": 3}) for v in ("vanilla", "peephole", "fgr")]
)


# the GPU's time loops, the split loop with each of its other grid barriers, and the resident loop
# with the LSTM backward's partial sums (`use_loop`)
LOOPS = [loop for loop in gpu.LOOPS if loop != "auto"] + [
    f"split+{barrier}" for barrier in gpu.BARRIERS if barrier not in ("flags", "auto")
]
LOOPS.append("resident+partials")


def with_loops(cells: list[tuple[str, dict]], persistent: set[str] | None = None) -> list:
    """Each cell in each of the GPU's time loops (the LSTM's FGR and projections have only the
    per-step one); with `persistent`, only the cells of those ids in the persistent loops."""
    out = []
    for kind, cfg in cells:
        ident = f"{kind}-{'-'.join(str(v) for v in cfg.values())}".rstrip("-")
        both = not cfg.get("proj_size") and cfg.get("variant") != "fgr"
        both = both and (persistent is None or ident in persistent)
        for loop in LOOPS if both else ("per-step",):
            out.append(pytest.param(kind, cfg, loop, id=f"{ident}-{loop}"))
    return out


CELL_LOOPS = with_loops(CELLS)
# In the interpreter, which is slow, the persistent kernels run for the cells whose indexing differs
# (G = 1, 3, 4 gate blocks, a missing output gate, CIFG's coupling); the equations are shared with
# the per-step kernels, which run for every cell.
INTERPRETED_LOOPS = with_loops(
    CELLS, persistent={"rnn-relu", "gru", "lstm-vanilla", "lstm-original", "lstm-nog", "lstm-cifg"}
)

each_cell = pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
needs_triton = pytest.mark.skipif(gpu.kernels() is None, reason=f"{gpu.import_error()}")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def make(kind: str, cfg: dict, dtype: torch.dtype, num_layers: int = 2, **kw):
    cls = {"rnn": bptt.RNN, "gru": bptt.GRU, "lstm": bptt.LSTM}[kind]
    torch.manual_seed(0)
    return cls(3, 5, dtype=dtype, num_layers=num_layers, bidirectional=True, **cfg, **kw)


@pytest.fixture(autouse=True)
def _loop_setting(monkeypatch):
    monkeypatch.setattr(gpu, "LOOP", gpu.LOOP)  # restored after each test
    monkeypatch.setattr(gpu, "BARRIER", gpu.BARRIER)
    monkeypatch.setattr(gpu, "ACCUMULATORS", gpu.ACCUMULATORS)
    monkeypatch.setattr(gpu, "BACKWARD_ACCUMULATORS", gpu.BACKWARD_ACCUMULATORS)
    monkeypatch.setattr(gpu, "BACKWARD_EXCHANGE", gpu.BACKWARD_EXCHANGE)
    monkeypatch.setattr(gpu, "AUTOTUNE", gpu.AUTOTUNE)
    monkeypatch.setattr(gpu, "_tuned", {})
    monkeypatch.setattr(gpu, "_blocks_seen", {})  # what was bound under another test's settings
    monkeypatch.setattr(gpu, "_plans", {})
    monkeypatch.setattr(gpu, "_flags_seen", {})
    monkeypatch.setattr(gpu, "_host_flags", {})  # give-up flags a test raised stay with it
    monkeypatch.setattr(gpu, "_launched", set())
    monkeypatch.setattr(gpu, "_unchecked", [])


def use_loop(loop: str) -> None:
    """The time loop on the GPU: one launch per sweep (persistent, split over programs or not), or two
    per step; "split+counter" and "split+data": split, with that grid barrier; "resident+partials":
    the defaults (the barrier auto: data forward, counter backward; the LSTM backward exchanging
    partial sums of ∂L/∂h_{t−1}); a loop alone: the flags barrier, ∂L/∂gh_t exchanged."""
    gpu.LOOP, _, barrier = loop.partition("+")
    gpu.BACKWARD_EXCHANGE = "partials" if barrier == "partials" else "gates"
    gpu.BARRIER = "auto" if barrier == "partials" else barrier or "flags"


def traced(model, x, engine: str, hx=None):
    with native.use_engine(engine):
        return bptt.trace(model, x, weighted_loss, hx=hx)


def assert_same_trace(fast, slow, tol: float) -> None:
    """Output, every gradient, the states, their gradients, the gates and the contribution norms."""
    assert rel_err(fast.output, slow.output.to(fast.output)) < tol
    for name, g in slow.grads.items():
        assert rel_err(fast.grads[name], g.to(fast.grads[name])) < tol, name
    for field in ("h", "dh", "c", "dc"):
        if getattr(slow, field) is not None:
            a, b = getattr(fast, field), getattr(slow, field)
            assert rel_err(a, b.to(a)) < tol, field
    for name, gate in slow.gates.items():
        assert rel_err(fast.gates[name], gate.to(fast.gates[name])) < tol, name
    norms = slow.contribution_norms()
    assert rel_err(fast.contribution_norms(), norms.to(fast.output)) < tol


def interpreted(model, x: torch.Tensor, dtype: torch.dtype) -> None:
    """The Triton sweeps in the interpreter against the PyTorch loop, from a given initial state."""
    if not gpu.interpreting():
        pytest.skip("runs Triton's interpreter on CPU tensors (TRITON_INTERPRET=1)")
    LD, B = model.num_layers * 2, x.shape[1]
    hx = torch.randn(LD, B, model.proj_size or model.hidden_size, dtype=dtype)
    if isinstance(model, bptt.LSTM):
        hx = (hx, torch.randn(LD, B, model.hidden_size, dtype=dtype))
    with native.use_engine("triton"):
        assert dispatch.select(model.step, x).name == "triton"
    assert_same_trace(traced(model, x, "triton", hx), traced(model, x, "python", hx), TOL[dtype])


def interpreted_cell(kind: str, hidden: int, steps: int, batch: int) -> None:
    """`interpreted` for a bidirectional float64 layer of the cell, 2 inputs wide."""
    torch.manual_seed(0)
    cls = {"rnn": bptt.RNN, "gru": bptt.GRU, "lstm": bptt.LSTM}[kind]
    model = cls(2, hidden, bidirectional=True, dtype=torch.float64)
    interpreted(model, torch.randn(steps, batch, 2, dtype=torch.float64), torch.float64)


@pytest.mark.gpu_interpret
@needs_triton
@pytest.mark.parametrize(("kind", "cfg", "loop"), INTERPRETED_LOOPS)
def test_triton_kernels_equal_the_python_steps(kind: str, cfg: dict, loop: str) -> None:
    """float64, both directions, the whole tape and every gradient, in both time loops."""
    use_loop(loop)
    model = make(kind, cfg, torch.float64, num_layers=1)
    interpreted(model, torch.randn(3, 2, 3, dtype=torch.float64), torch.float64)


@pytest.mark.gpu_interpret
@needs_triton
@pytest.mark.parametrize("loop", ["persistent", "resident", "per-step"])
@pytest.mark.parametrize("kind", ["lstm", "rnn"])
@pytest.mark.parametrize("bias", [True, False])
def test_the_sweeps_add_b_hh_the_projection_left_out(kind: str, loop: str, bias: bool) -> None:
    """`adds_bias_hh`: the input projection gives the Triton sweeps W_ih x + b_ih and each of their
    loops adds b_hh (the persistent kernels in one tile or several, the per-step ones in gh's
    matmul), or nothing without biases; b_hh set apart from b_ih, so that a sweep that dropped it
    or added it twice would differ."""
    use_loop(loop)
    model = make(kind, {"bias": bias}, torch.float64, num_layers=1)
    if bias:
        with torch.no_grad():
            model.bias_hh_l0.add_(1.0)
            model.bias_hh_l0_reverse.sub_(1.0)
    interpreted(model, torch.randn(3, 2, 3, dtype=torch.float64), torch.float64)


@pytest.mark.gpu_interpret
@needs_triton
@pytest.mark.parametrize(("kind", "cfg", "loop"), with_loops([("lstm", {}), ("gru", {}), ("rnn", {})]))
def test_triton_kernels_in_float32_and_two_layers(kind: str, cfg: dict, loop: str) -> None:
    use_loop(loop)
    model = make(kind, {}, torch.float32)
    interpreted(model, torch.randn(3, 2, 3), torch.float32)


@pytest.mark.gpu_interpret
@needs_triton
def test_persistent_tiles_cover_batch_and_units_past_one_block() -> None:
    """B = 17 and H = 65: two programs of 16 rows, two tiles of 64 units, three chunks of 32 in the products."""
    use_loop("persistent")
    torch.manual_seed(0)
    model = bptt.LSTM(2, 65, variant="peephole", bidirectional=True, dtype=torch.float64)
    interpreted(model, torch.randn(2, 17, 2, dtype=torch.float64), torch.float64)


@pytest.mark.gpu_interpret
@needs_triton
@pytest.mark.parametrize("barrier", ["counter", "data"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_the_other_barriers_give_the_same_numbers(barrier: str, dtype: torch.dtype) -> None:
    """BPTT_TRITON_BARRIER=counter: the split sweeps meet at one counter per block of rows; =data: they
    poll what the other programs wrote, the buffers filled with all-ones bits before each launch."""
    use_loop(f"split+{barrier}")
    assert gpu._blocks(8, dtype)["TILES"].BARRIER == barrier
    torch.manual_seed(0)
    model = bptt.LSTM(2, 20, bidirectional=True, dtype=dtype)
    interpreted(model, torch.randn(3, 17, 2, dtype=dtype), dtype)


# (cell, loop+barrier, dtype, other settings): each barrier in the split loop, the resident loop (W_hh's
# rows on chip) with the two the default picks between, each cell's own exchange of h_t and ∂L/∂gh_t,
# and the LSTM backward's partial sums of ∂L/∂h_{t−1} (a slot a step, two slots, two for want of room)
PARTIALS = {"BACKWARD_EXCHANGE": "partials"}
CONCURRENT = [
    ("lstm", "split+counter", torch.float64, {}),
    ("lstm", "split+flags", torch.float64, {}),
    ("lstm", "split+data", torch.float32, {}),
    ("lstm", "resident+counter", torch.float64, {}),
    ("lstm", "resident+data", torch.float64, {"ACCUMULATORS": 4, "BACKWARD_ACCUMULATORS": 4}),
    ("lstm", "resident+data", torch.float32, PARTIALS),
    ("lstm", "resident+flags", torch.float64, PARTIALS),
    ("lstm", "resident+data", torch.float64, {**PARTIALS, "EXCHANGE_BYTES": 0}),
    ("lstm", "resident+partials", torch.float32, PARTIALS),  # the defaults
    ("gru", "split+counter", torch.float64, {}),
    ("gru", "resident+data", torch.float64, {}),
    ("gru", "resident+data", torch.float64, PARTIALS),
    ("gru", "resident+partials", torch.float32, PARTIALS),  # the defaults
    ("rnn", "split+flags", torch.float64, {}),
    ("rnn", "resident+data", torch.float64, {}),
]


def _concurrent_id(kind: str, loop: str, dtype: torch.dtype, settings: dict) -> str:
    extra = "-".join(f"{k.lower()}={v}" for k, v in settings.items())
    return f"{kind}-{loop}-{str(dtype)[6:]}" + (f"-{extra}" if extra else "")


@pytest.mark.gpu_interpret
@needs_triton
@pytest.mark.parametrize(
    ("kind", "loop", "dtype", "settings"), [pytest.param(*c, id=_concurrent_id(*c)) for c in CONCURRENT]
)
def test_split_sweeps_with_their_programs_running_at_once(kind, loop, dtype, settings, monkeypatch) -> None:
    """The split sweeps as on a GPU: each block of rows' units spread over 3 programs (H = 40, tiles of
    16) that exchange h_t and ∂L/∂gh_t (or partial sums of ∂L/∂h_{t−1}, in two slots or one a step)
    every step through a grid barrier or by polling, all 6 programs (B = 17: two blocks) running at once in threads
    (tests/concurrent_programs.py), the odd ones' stores late; both directions against the PyTorch
    loop. Sabotaged, a barrier that lets a program pass early, or polled buffers not filled
    beforehand, fail these."""
    if not gpu.interpreting():
        pytest.skip("runs Triton's interpreter on CPU tensors (TRITON_INTERPRET=1)")
    from concurrent_programs import concurrent_programs

    use_loop(loop)
    for name, value in settings.items():
        monkeypatch.setattr(gpu, name, value)
    exchanged = _record_exchanges(monkeypatch)
    torch.manual_seed(0)
    cls = {"rnn": bptt.RNN, "gru": bptt.GRU, "lstm": bptt.LSTM}[kind]
    model = cls(2, 40, bidirectional=True, dtype=dtype)
    steps = 4 if settings.get("BACKWARD_EXCHANGE") == "partials" else 3  # 4: a slot of two used again
    with concurrent_programs(sms=8) as grid:
        interpreted(model, torch.randn(steps, 17, 2, dtype=dtype), dtype)
    assert grid.most_at_once == 2 * 3
    if settings.get("BACKWARD_EXCHANGE") == "partials":  # every backward sweep exchanged partial sums
        slots = steps if loop.endswith("data") and settings.get("EXCHANGE_BYTES") != 0 else 2
        assert exchanged == [("partials", slots, 3)] * 2  # the two directions
    else:
        assert {e[0] for e in exchanged} <= {"gates"}


@pytest.mark.gpu_interpret
@needs_triton
@each_cell
def test_counter_barrier_launches_share_flags_they_leave_at_zero(kind: str, monkeypatch) -> None:
    """Under the counter barrier the last program of a block out sets its counter back to zero
    (kernels._release), so every launch of a stream shares one `sync` (gpu._flags): four forward and
    four backward sweeps here (two directions, twice), their programs at once, the odd ones' stores
    late, all through one buffer that is all zeros after each; the gradients torch.nn's. Without the
    reset the second launch's barriers would let its programs pass at once."""
    if not gpu.interpreting():
        pytest.skip("runs Triton's interpreter on CPU tensors (TRITON_INTERPRET=1)")
    from concurrent_programs import concurrent_programs

    use_loop("split+counter")
    syncs: list[torch.Tensor] = []
    _on_launch(monkeypatch, lambda kwargs: syncs.append(kwargs["sync"]))
    torch.manual_seed(0)
    cls = {"rnn": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[kind]
    reference = cls(2, 40, bidirectional=True).double()
    model = bptt.from_torch(reference)
    x = torch.randn(3, 17, 2, dtype=torch.float64)
    for _ in range(2):
        model.zero_grad()
        with native.use_engine("triton"), concurrent_programs(sms=8):
            out = model(x)[0]
            assert syncs and not syncs[-1].any()  # the forward's counters back to zero
            out.sum().backward()
        assert not syncs[-1].any()
    assert len(syncs) == 8 and len({s.data_ptr() for s in syncs}) == 1
    reference(x)[0].sum().backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(
            p.grad, dict(reference.named_parameters())[name].grad, rtol=1e-10, atol=1e-12
        )


@pytest.mark.gpu_interpret
@needs_triton
@pytest.mark.parametrize(("kind", "exchanges"), [("lstm", "partials"), ("gru", "partials"), ("rnn", "gates")])
def test_the_lstm_and_gru_backward_exchange_partial_sums(kind: str, exchanges: str, monkeypatch) -> None:
    """BPTT_TRITON_BACKWARD_EXCHANGE=partials (the default): the LSTM's and the GRU's backward sweeps
    exchange partial sums of ∂L/∂h_{t−1}, resident; the Elman RNN's stays as it is (its kernel
    exchanges ∂L/∂gh_t), bound as split, not resident."""
    use_loop("resident+partials")
    tiles = _record_launches(monkeypatch)
    interpreted_cell(kind, hidden=20, steps=2, batch=3)
    forward, backward = tiles[:2], tiles[2:]
    assert len(tiles) == 4 and {t.EXCHANGE for t in forward} == {"gates"}
    assert {t.EXCHANGE for t in backward} == {exchanges}
    assert all(t.RESIDENT for t in forward) and all(t.RESIDENT == (exchanges == "partials") for t in backward)


def _on_launch(monkeypatch, callback) -> None:
    """From here on, `callback(kwargs)` just before each persistent launch, with the launch's kwargs."""
    persistent = gpu._persistent

    class Watched:
        def __init__(self, kernel):
            self.kernel = kernel

        def __getitem__(self, grid):
            run = self.kernel[grid]

            def call(*args, **kwargs):
                callback(kwargs)
                return run(*args, **kwargs)

            return call

    monkeypatch.setattr(gpu, "_persistent", lambda kernel, *args: persistent(Watched(kernel), *args))


def _record_launches(monkeypatch) -> list:
    """The tiles (TILES, as bound) of each persistent launch from here on, in order."""
    tiles = []
    _on_launch(monkeypatch, lambda kwargs: tiles.append(kwargs["TILES"]))
    return tiles


def _record_exchanges(monkeypatch) -> list[tuple[str, int, int]]:
    """What each LSTM or GRU backward launch exchanges: (TILES.EXCHANGE, slots, programs a block)."""
    seen = []
    exchange = gpu._exchange

    def recorded(bound, steps, B, parts, H, like):
        part, slots = exchange(bound, steps, B, parts, H, like)
        seen.append((bound["TILES"].EXCHANGE, slots, parts))
        return part, slots

    monkeypatch.setattr(gpu, "_exchange", recorded)
    return seen


@pytest.mark.gpu_interpret
@needs_triton
@pytest.mark.parametrize("variant", [v for v in LSTM_VARIANTS if v != "fgr"])
def test_partial_sums_of_the_backward_give_the_same_numbers(variant: str, monkeypatch) -> None:
    """BPTT_TRITON_BACKWARD_EXCHANGE=partials in the resident loop: each program's ∂L/∂z_t (its units,
    every gate block of the variant) times its rows of W_hh, summed, is ∂L/∂h_{t−1}; B = 17, H = 20
    (one program a block here, the tile padded to 32 units)."""
    use_loop("resident+data")
    gpu.BACKWARD_EXCHANGE = "partials"
    exchanged = _record_exchanges(monkeypatch)
    torch.manual_seed(0)
    model = bptt.LSTM(2, 20, variant=variant, bidirectional=True, dtype=torch.float64)
    interpreted(model, torch.randn(3, 17, 2, dtype=torch.float64), torch.float64)
    assert exchanged == [("partials", 3, 1)] * 2  # the two directions


@pytest.mark.gpu_interpret
@needs_triton
@pytest.mark.parametrize("state_used", [True, False])
def test_the_gru_backward_partial_sums_give_the_same_numbers(state_used: bool, monkeypatch) -> None:
    """The GRU's backward sweep exchanging partial sums (kernels._gru_backward_tile): each program's
    ∂L/∂gh_t (its units, the three gate blocks, ∂L/∂z_n ⊙ r_t for n's) times its rows of W_hh,
    summed, plus the direct path z_t ⊙ ∂L/∂h_t, is ∂L/∂h_{t−1}; with and without ∂L/∂h_n (the
    state used or not); B = 17, H = 20, float64, two layers, both directions."""
    if not gpu.interpreting():
        pytest.skip("runs Triton's interpreter on CPU tensors (TRITON_INTERPRET=1)")
    use_loop("resident+data")
    gpu.BACKWARD_EXCHANGE = "partials"
    exchanged = _record_exchanges(monkeypatch)
    torch.manual_seed(0)
    model = bptt.GRU(2, 20, num_layers=2, bidirectional=True, dtype=torch.float64)
    x = torch.randn(3, 17, 2, dtype=torch.float64)
    if state_used:
        interpreted(model, x, torch.float64)
    else:  # the output alone: the sweeps start from zeros (HAS_GRAD_N False)
        with native.use_engine("triton"):
            out = model(x)[0]
            fast = torch.autograd.grad(out.pow(2).sum(), list(model.parameters()))
        with native.use_engine("python"):
            out = model(x)[0]
            slow = torch.autograd.grad(out.pow(2).sum(), list(model.parameters()))
        for a, b in zip(fast, slow, strict=True):
            assert rel_err(a, b) < TOL[torch.float64]
    assert exchanged == [("partials", 3, 1)] * 4  # two layers, two directions


if gpu.kernels() is not None:
    import triton
    import triton.language as tl

    from bptt.engine import kernels

    @triton.jit
    def shared_copy(src, dst, sync, B, H, TILES: tl.constexpr):
        """Copy a (B, H) tile (16 × 16 at most) through kernels._shared."""
        rows = tl.arange(0, 16)
        cols = tl.arange(0, 16)
        x = kernels._shared(src, rows, cols, H, rows < B, cols < H, sync, TILES)
        tl.store(dst + rows[:, None] * H + cols[None, :], x, mask=(rows < B)[:, None] & (cols < H)[None, :])


@pytest.mark.gpu_interpret
@needs_triton
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_polling_reads_what_was_written_and_gives_up_on_what_was_not(dtype: torch.dtype, monkeypatch) -> None:
    """kernels._shared under BARRIER "data": a tile already written comes back as it is; a tile still
    all ones (never written) comes back after the give-up flag is raised, without waiting once it is."""
    if not gpu.interpreting():
        pytest.skip("runs Triton's interpreter on CPU tensors (TRITON_INTERPRET=1)")
    k = gpu.kernels()
    tiles = k.Tiles(BLOCK_B=16, BLOCK_H=16, BLOCK_K=16, PRECISION="ieee", SPLIT=True, BARRIER="data")
    written = torch.randn(3, 5, dtype=dtype)
    written[1, 2] = float("nan")  # a canonical NaN is a value like any other
    out = torch.empty_like(written)
    sync = torch.zeros(k.MAX_PARTS.value + 1, dtype=torch.int32)
    shared_copy[(1,)](written, out, sync, 3, 5, TILES=tiles)
    assert torch.equal(out.nan_to_num(7.0), written.nan_to_num(7.0)) and int(sync[-1]) == 0
    unwritten = torch.empty_like(written)
    unwritten.view(torch.int64 if dtype == torch.float64 else torch.int32).fill_(-1)
    monkeypatch.setattr(kernels, "SPIN_LIMIT", tl.constexpr(5))  # the interpreter reads it at run time
    shared_copy[(1,)](unwritten, out, sync, 3, 5, TILES=tiles)
    assert int(sync[-1]) == 1 and torch.isnan(out).all()  # gave up after 5 polls
    monkeypatch.setattr(kernels, "SPIN_LIMIT", tl.constexpr(1000))
    monkeypatch.setattr(kernels, "STUCK_EVERY", tl.constexpr(3))
    shared_copy[(1,)](unwritten, out, sync, 3, 5, TILES=tiles)  # already stuck: returns after 3 polls
    assert int(sync[-1]) == 1


if gpu.kernels() is not None:

    @triton.jit
    def meet(sync, done, TILES: tl.constexpr):
        kernels._sync(sync, done, TILES)

    @triton.jit
    def absent(sync, gave_up, TILES: tl.constexpr):
        """Program 0 of two meets the other at the grid barrier, which the other never comes to."""
        if tl.program_id(1) == 0:
            kernels._sync(sync, 1, TILES)
        kernels._report(sync, gave_up, TILES)

    @triton.jit
    def count_polls(stuck, out, n):
        polls = tl.load(out) * 0
        i = n * 0
        while i < n:
            polls = kernels._polled(polls, stuck)
            i += 1
        tl.store(out, polls)


@pytest.mark.gpu_interpret
@needs_triton
@pytest.mark.parametrize("barrier", ["counter", "flags"])
def test_a_barrier_passes_once_all_arrived_and_gives_up_on_one_that_never_comes(barrier, monkeypatch) -> None:
    """kernels._sync: one program alone meets step 1 at once; of two, run one after the other by the
    interpreter, the first gives up on the second after SPIN_LIMIT polls and raises the flag; once the
    flag is up, a barrier waits STUCK_EVERY polls at most (`kernels._polled`, counted below)."""
    if not gpu.interpreting():
        pytest.skip("runs Triton's interpreter on CPU tensors (TRITON_INTERPRET=1)")
    k = gpu.kernels()
    tiles = k.Tiles(BLOCK_B=16, BLOCK_H=16, BLOCK_K=16, PRECISION="ieee", SPLIT=True, BARRIER=barrier)
    sync = torch.zeros(k.MAX_PARTS.value + 1, dtype=torch.int32)
    meet[(1, 1)](sync, 1, TILES=tiles)
    assert int(sync[-1]) == 0
    monkeypatch.setattr(kernels, "SPIN_LIMIT", tl.constexpr(5))
    meet[(1, 2)](sync, 2, TILES=tiles)
    assert int(sync[-1]) == 1
    monkeypatch.setattr(kernels, "SPIN_LIMIT", tl.constexpr(1000))
    monkeypatch.setattr(kernels, "STUCK_EVERY", tl.constexpr(3))
    meet[(1, 2)](sync, 5, TILES=tiles)
    assert int(sync[-1]) == 1
    # the flag is looked at every third poll, not before: a barrier passed at once never reads it
    out, flag = torch.zeros(1, dtype=torch.int32), torch.ones(1, dtype=torch.int32)
    for n, polls in ((2, 2), (3, 1003), (4, 1004)):
        count_polls[(1,)](flag, out, n)
        assert int(out) == polls
    count_polls[(1,)](flag * 0, out, 7)
    assert int(out) == 7


@pytest.mark.parametrize(
    "device",
    [pytest.param("cpu", marks=pytest.mark.gpu_interpret), pytest.param("cuda", marks=pytest.mark.cuda)],
)
@needs_triton
def test_a_program_that_gave_up_writes_the_hosts_flag(device: str, monkeypatch) -> None:
    """kernels._report: at a split kernel's end a program that gave up on its grid barrier writes 1 into
    the host's flag (pinned on a GPU, the store going through its mapping), which the host reads in
    place; the next check raises and puts it down. A program that found the barrier passed writes
    nothing. (On a GPU the barrier waits its SPIN_LIMIT polls, about a second.)"""
    if device == "cpu" and not gpu.interpreting():
        pytest.skip("runs Triton's interpreter on CPU tensors (TRITON_INTERPRET=1)")
    if device == "cuda" and (gpu.interpreting() or not torch.cuda.is_available()):
        pytest.skip("no CUDA device")
    if device == "cpu":
        monkeypatch.setattr(kernels, "SPIN_LIMIT", tl.constexpr(5))
    k = gpu.kernels()
    tiles = k.Tiles(BLOCK_B=16, BLOCK_H=16, BLOCK_K=16, PRECISION="ieee", SPLIT=True, BARRIER="counter")
    flag, view = gpu._host_flag(torch.device(device))
    assert flag.device.type == "cpu" and flag.is_pinned() == (device == "cuda") and view.value == 0
    sync = torch.zeros(k.MAX_PARTS.value + 1, dtype=torch.int32, device=device)
    meet[(1, 1)](sync, 1, TILES=tiles)  # one program alone passes
    absent[(1, 1)](sync, flag, TILES=tiles)
    if device == "cuda":
        torch.cuda.synchronize()
    assert view.value == 0 and int(sync[-1]) == 0
    gpu.check_barriers()  # nothing to say
    sync.zero_()  # the block's counter afresh
    absent[(1, 2)](sync, flag, TILES=tiles)
    if device == "cuda":
        torch.cuda.synchronize()
    assert int(sync[-1]) == 1 and view.value == 1
    with pytest.raises(RuntimeError, match="grid barrier gave up"):
        gpu.check_barriers()
    assert view.value == 0
    gpu.check_barriers()


@pytest.mark.gpu_interpret
@needs_triton
@each_cell
def test_a_split_sweep_whose_programs_cannot_meet_raises(kind: str, monkeypatch) -> None:
    """A split sweep whose programs are not all running at once (the interpreter runs them one after
    another, as a GPU would where they were not all resident) gives up on its grid barrier after
    SPIN_LIMIT polls; its programs write the host's flag (kernels._report) and the launch raises, the
    flag down again after: the forward, then the backward of a forward that ran with its programs at
    once (tests/concurrent_programs.py)."""
    if not gpu.interpreting():
        pytest.skip("runs Triton's interpreter on CPU tensors (TRITON_INTERPRET=1)")
    from concurrent_programs import concurrent_programs

    use_loop("split+data")
    monkeypatch.setattr(gpu, "_interpreter_sms", 2)  # H = 32: two programs a block of rows
    monkeypatch.setattr(kernels, "SPIN_LIMIT", tl.constexpr(5))
    torch.manual_seed(0)
    model = {"rnn": bptt.RNN, "gru": bptt.GRU, "lstm": bptt.LSTM}[kind](2, 32, dtype=torch.float64)
    x = torch.randn(2, 1, 2, dtype=torch.float64)
    _, view = gpu._host_flag(torch.device("cpu"))
    with native.use_engine("triton"), pytest.raises(RuntimeError, match="grid barrier gave up"):
        model(x)
    assert view.value == 0
    with native.use_engine("triton"):
        with concurrent_programs(sms=2):
            out, _ = model(x)
        assert view.value == 0
        with pytest.raises(RuntimeError, match="grid barrier gave up"):
            out.sum().backward()
    assert view.value == 0


@pytest.mark.gpu_interpret
@needs_triton
@each_cell
def test_resident_tiles_pad_the_units_and_the_inner_dimension(kind: str) -> None:
    """B = 17 and H = 20: two blocks of rows; the forward's resident tile is 32 units wide and its
    product runs over h_{t−1} padded to 32, the padding masked to zeros."""
    use_loop("resident")
    assert gpu.resident_tiles(20, 32, 8) == (32, 32, 4)
    interpreted_cell(kind, hidden=20, steps=2, batch=17)


@pytest.mark.gpu_interpret
@needs_triton
@pytest.mark.parametrize("loop", ["persistent", "split", "resident"])
@each_cell
def test_products_as_independent_partial_sums_give_the_same_numbers(kind: str, loop: str) -> None:
    """BPTT_TRITON_ACCUMULATORS: each product as partial sums over parts of its inner dimension (the
    interpreter's chunks of 32 in two, the resident forward's 64 in four), summed."""
    use_loop(loop)
    gpu.ACCUMULATORS, gpu.BACKWARD_ACCUMULATORS = 4, 8
    assert gpu._blocks(40, torch.float64)["TILES"].ACCUMULATORS == (1 if loop == "persistent" else 4)
    assert gpu._blocks(40, torch.float64, backward=True)["TILES"].ACCUMULATORS == 8
    interpreted_cell(kind, hidden=40, steps=2, batch=3)


@pytest.mark.gpu_interpret
@needs_triton
@pytest.mark.parametrize("loop", ["persistent", "split", "per-step"])
@each_cell
def test_gradients_reach_the_initial_state_from_the_final_one(kind: str, loop: str) -> None:
    """∂L/∂h_0 (and ∂L/∂c_0): the backward sweeps start from ∂L/∂h_n and ∂L/∂c_n, which the
    persistent kernels copy into buffers of their own, and end where hx's gradient is read. At H = 5
    a program computes one tile of units (the LSTM's carries stay on chip), at H = 65 two."""
    if not gpu.interpreting():
        pytest.skip("runs Triton's interpreter on CPU tensors (TRITON_INTERPRET=1)")
    use_loop(loop)
    cls = {"rnn": bptt.RNN, "gru": bptt.GRU, "lstm": bptt.LSTM}[kind]
    for H in (5, 65):
        torch.manual_seed(0)
        model = cls(2, H, num_layers=2, dtype=torch.float64)
        x = torch.randn(2, 3, 2, dtype=torch.float64)
        hx = [
            torch.randn(2, 3, H, dtype=torch.float64, requires_grad=True)
            for _ in range(2 if kind == "lstm" else 1)
        ]
        grads = []
        for engine in ("triton", "python"):
            with native.use_engine(engine):
                out, state = model(x, tuple(hx) if kind == "lstm" else hx[0])
                grads.append(torch.autograd.grad(weighted_loss(out, state), hx))
        for fast, slow in zip(*grads, strict=True):
            assert rel_err(fast, slow) < TOL[torch.float64]


def test_every_autotuning_candidate_sets_real_settings_to_valid_values(monkeypatch) -> None:
    """gpu.FORWARD_CANDIDATES and BACKWARD_CANDIDATES: each name a setting of the persistent sweeps,
    each value one `gpu.available` accepts, no two candidates alike."""
    for candidates in (gpu.FORWARD_CANDIDATES, gpu.BACKWARD_CANDIDATES):
        assert len({gpu.label(c) for c in candidates}) == len(candidates)
        for candidate in candidates:
            with monkeypatch.context() as m:
                for key, value in candidate.items():
                    assert key in gpu.SETTINGS, (candidate, key)
                    m.setattr(gpu, key, value)
                with native.use_engine("auto"):  # checks each setting (without Triton, returns False)
                    gpu.available(torch.zeros(1))


@needs_triton
def test_accumulators_halve_until_each_part_is_16_deep() -> None:
    from bptt.engine import kernels

    parts = kernels._accumulators
    assert [parts(K, 8) for K in (16, 32, 64, 128, 256)] == [1, 2, 4, 8, 8]
    assert parts(512, 1) == 1 and parts(512, 32) == 32 and parts(32, 32) == 2


@needs_triton
def test_auto_splits_where_w_hh_is_large() -> None:
    use_loop("auto")

    def split(G: int, H: int, dtype: torch.dtype = torch.float32) -> bool:
        weight = torch.empty(G * H, H, dtype=dtype)
        return gpu._blocks(H, dtype, weight_bytes=gpu._nbytes(weight))["TILES"].SPLIT

    assert split(4, 64) and split(3, 74) and split(1, 128) and split(4, 200)  # LSTM, GRU, Elman
    assert not split(4, 63) and not split(3, 73) and not split(1, 127)
    assert split(4, 48, torch.float64) and not split(4, 48)  # 72 KB of W_hh in float64, 36 KB in float32
    # auto keeps W_hh on chip forward where it splits
    assert gpu._blocks(128, torch.float32, weight_bytes=1 << 18)["TILES"].RESIDENT
    use_loop("persistent")
    assert not gpu._blocks(256, torch.float32, weight_bytes=1 << 20)["TILES"].SPLIT


def fake_times(times: dict[str, float | Exception], calls: list[str]):
    """`gpu._time_ms` that runs the sweep once and says the candidate took `times[label]` ms (or raises it)."""

    def time_ms(run, like) -> float:
        name = gpu.label(gpu._chosen.get() or {})
        calls.append(name)
        run()
        taken = times[name]
        if isinstance(taken, Exception):
            raise taken
        return taken

    return time_ms


def lstm_run(model, x: torch.Tensor) -> list[torch.Tensor]:
    with native.use_engine("triton"):
        out, _ = model(x)
        return [out.detach(), *torch.autograd.grad(out.square().sum(), list(model.parameters()))]


@pytest.mark.gpu_interpret
@needs_triton
def test_autotuning_times_each_candidate_once_and_runs_the_fastest(monkeypatch) -> None:
    """BPTT_TRITON_AUTOTUNE=1: the first sweep of a kind times every candidate, forward and backward
    apart, and it and every later sweep of that kind run the fastest; another batch is another kind."""
    if not gpu.interpreting():
        pytest.skip("runs Triton's interpreter on CPU tensors (TRITON_INTERPRET=1)")
    fast_forward = {"LOOP": "split", "ACCUMULATORS": 2}
    fast_backward = {"LOOP": "split", "BACKWARD_ACCUMULATORS": 2}
    monkeypatch.setattr(gpu, "FORWARD_CANDIDATES", ({}, {"LOOP": "persistent"}, fast_forward))
    monkeypatch.setattr(gpu, "BACKWARD_CANDIDATES", ({}, fast_backward))
    times: dict[str, float | Exception] = {
        "as set": 3.0,
        "loop persistent": 2.0,
        "loop split, accumulators 2": 1.0,
        "loop split, backward accumulators 2": 0.5,
    }
    calls: list[str] = []
    monkeypatch.setattr(gpu, "_time_ms", fake_times(times, calls))
    torch.manual_seed(0)
    model = bptt.LSTM(2, 40)  # float32, so that the settings' sums round apart
    x = torch.randn(3, 2, 2)
    untuned = lstm_run(model, x)
    gpu.autotune()
    tuned = lstm_run(model, x)
    assert calls == [
        "as set",
        "loop persistent",
        "loop split, accumulators 2",
        "as set",
        "loop split, backward accumulators 2",
    ]
    (forward, backward) = gpu.tuned()
    assert forward.key.direction == "forward" and forward.choice == fast_forward
    assert forward.times == {name: times[name] for name in calls[:3]}
    assert backward.key.direction == "backward" and backward.label == "loop split, backward accumulators 2"
    # what ran is the fastest candidate's sweep, bit for bit
    gpu.autotune(False)
    gpu.LOOP, gpu.ACCUMULATORS, gpu.BACKWARD_ACCUMULATORS = "split", 2, 2
    chosen = lstm_run(model, x)
    assert all(torch.equal(a, b) for a, b in zip(tuned, chosen, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(untuned, chosen, strict=True))  # it could tell
    gpu.LOOP, gpu.ACCUMULATORS, gpu.BACKWARD_ACCUMULATORS = "auto", 1, 1
    gpu.autotune()
    again = lstm_run(model, x)
    assert len(calls) == 5 and all(torch.equal(a, b) for a, b in zip(tuned, again, strict=True))
    lstm_run(model, torch.randn(3, 5, 2))  # another batch: timed again
    assert len(calls) == 10 and len(gpu.tuned()) == 4
    x7 = torch.randn(3, 7, 2)
    with monkeypatch.context() as m:  # deterministic algorithms: no timing, the settings as set
        m.setattr(torch, "are_deterministic_algorithms_enabled", lambda: True)
        deterministic = lstm_run(model, x7)
    assert len(calls) == 10 and len(gpu.tuned()) == 4
    gpu.autotune(False)
    assert all(torch.equal(a, b) for a, b in zip(deterministic, lstm_run(model, x7), strict=True))
    gpu.autotune()
    gpu.clear_tuned()
    assert gpu.tuned() == []


@pytest.mark.gpu_interpret
@needs_triton
def test_a_candidate_that_fails_is_left_out_and_its_error_kept(monkeypatch) -> None:
    if not gpu.interpreting():
        pytest.skip("runs Triton's interpreter on CPU tensors (TRITON_INTERPRET=1)")
    monkeypatch.setattr(gpu, "FORWARD_CANDIDATES", ({}, {"LOOP": "persistent"}))
    monkeypatch.setattr(gpu, "BACKWARD_CANDIDATES", ({},))
    failing = RuntimeError("out of resources: shared memory")
    calls: list[str] = []
    monkeypatch.setattr(gpu, "_time_ms", fake_times({"as set": 2.0, "loop persistent": failing}, calls))
    gpu.autotune()
    model = bptt.RNN(2, 8)
    lstm_run(model, torch.randn(3, 2, 2))
    forward = gpu.tuned()[0]
    assert forward.label == "as set"
    assert forward.times["loop persistent"] == "RuntimeError: out of resources: shared memory"
    # a cooperative launch that failed on the way: cooperative launches stay on, and nothing is said
    gpu.clear_tuned()
    monkeypatch.setattr(gpu, "_cooperative", True)

    def refused(run, like) -> float:
        if gpu._chosen.get():
            gpu._cooperative = False
            warnings.warn("a cooperative launch failed", RuntimeWarning, stacklevel=1)
            raise failing
        return 1.0

    monkeypatch.setattr(gpu, "_time_ms", refused)
    lstm_run(model, torch.randn(3, 2, 2))  # warnings are errors here
    assert gpu._cooperative and "RuntimeError" in gpu.tuned()[0].times["loop persistent"]
    # one that ran says what it said
    gpu.clear_tuned()

    def noisy(run, like) -> float:
        warnings.warn("a cooperative launch failed", RuntimeWarning, stacklevel=1)
        return 1.0

    monkeypatch.setattr(gpu, "_time_ms", noisy)
    with pytest.warns(RuntimeWarning, match="a cooperative launch failed"):
        lstm_run(model, torch.randn(3, 2, 2))
    # the settings as set fail as they would untuned
    gpu.clear_tuned()
    monkeypatch.setattr(gpu, "_time_ms", fake_times({"as set": failing}, calls))
    with pytest.raises(RuntimeError, match="out of resources"):
        lstm_run(model, torch.randn(3, 2, 2))


class FinishedLaunch:
    """A CUDA event of a launch that has finished (no GPU needed)."""

    def __init__(self, done: bool = True) -> None:
        self.done = done

    def query(self) -> bool:
        return self.done

    def synchronize(self) -> None:
        self.done = True


def test_a_grid_barrier_that_gave_up_raises_on_the_next_check(monkeypatch) -> None:
    """Split launches do not wait for their barrier flag; the next launch's check raises if it was set:
    the host's flag the kernels write (`gpu._host_flag`), or where a GPU's kernels cannot write pinned
    memory, each launch's flag copied back once its event has passed."""
    _, view = gpu._host_flag(torch.device("cpu"))
    view.value = 1
    with pytest.raises(RuntimeError, match="grid barrier gave up"):
        gpu.check_barriers()
    assert view.value == 0
    gpu.check_barriers()
    view.value = 1  # a trace waits for them: its numbers are never handed out unchecked
    with pytest.raises(RuntimeError, match="grid barrier gave up"):
        bptt.trace(bptt.RNN(2, 3), torch.randn(4, 1, 2), lambda out, state: out.sum())
    monkeypatch.setattr(gpu, "_unchecked", [(FinishedLaunch(), torch.tensor([0], dtype=torch.int32))])
    gpu.check_barriers()
    assert gpu._unchecked == []
    running = (FinishedLaunch(done=False), torch.tensor([1], dtype=torch.int32))
    gpu._unchecked.append(running)
    gpu.check_barriers()  # still running: not read yet
    assert gpu._unchecked == [running]
    with pytest.raises(RuntimeError, match="grid barrier gave up"):
        gpu.check_barriers(wait=True)
    assert gpu._unchecked == []
    # a trace waits for them: its numbers are never handed out unchecked
    gpu._unchecked.append((FinishedLaunch(done=False), torch.tensor([1], dtype=torch.int32)))
    with pytest.raises(RuntimeError, match="grid barrier gave up"):
        bptt.trace(bptt.RNN(2, 3), torch.randn(4, 1, 2), lambda out, state: out.sum())


@needs_triton
def test_data_and_counter_barrier_launches_share_their_flags_and_the_flags_barrier_gets_zeros(
    monkeypatch,
) -> None:
    """`sync` (gpu._flags): under the data barrier only its give-up flag is read, which stays zero
    unless a launch gives up, so those launches share one buffer a device; the counter barrier's
    last program out sets its counter back to zero (kernels._release), so its launches share one a
    stream, apart from the data barrier's; the flags barrier counts in each program's flag, so each
    of its launches gets zeros of its own; a kernel not split, one unused flag. Once a launch gave
    up, the shared buffers are dropped for fresh ones."""
    cpu = torch.device("cpu")
    n = 2 * gpu.kernels().MAX_PARTS.value + 1
    shared = gpu._flags(cpu, 2, True, "data")
    assert shared.shape == (n,) and shared.dtype == torch.int32 and not shared.any()
    assert gpu._flags(cpu, 2, True, "data") is shared
    assert gpu._flags(cpu, 3, True, "data").shape == (n + gpu.kernels().MAX_PARTS.value,)
    counter = gpu._flags(cpu, 2, True, "counter")
    assert counter.shape == (n,) and not counter.any() and counter is not shared
    assert gpu._flags(cpu, 2, True, "counter") is counter
    fresh = [gpu._flags(cpu, 2, True, "flags") for _ in range(2)]
    assert len({flags.data_ptr() for flags in (shared, counter, *fresh)}) == 4
    assert all(flags.shape == (n,) and not flags.any() for flags in fresh)
    assert gpu._flags(cpu, 2, False, "counter") is gpu._unused_flags(cpu)
    monkeypatch.setattr(gpu, "_unchecked", [(FinishedLaunch(), torch.tensor([1], dtype=torch.int32))])
    with pytest.raises(RuntimeError, match="grid barrier gave up"):
        gpu.check_barriers()
    assert gpu._flags(cpu, 2, True, "data") is not shared
    assert gpu._flags(cpu, 2, True, "counter") is not counter


@pytest.mark.cuda
@needs_cuda
@needs_triton
def test_cuda_counter_barrier_flags_are_one_a_stream_and_fresh_in_a_graph() -> None:
    """On a GPU the counter barrier's shared `sync` is the current stream's: another stream's launches,
    which may run alongside, get one of their own, and a launch captured in a CUDA graph (replayed on
    any stream) fresh zeros."""
    if gpu.interpreting():
        pytest.skip("needs the compiled kernels")
    device = torch.device("cuda")
    mine = gpu._flags(device, 2, True, "counter")
    assert gpu._flags(device, 2, True, "counter") is mine
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        theirs = gpu._flags(device, 2, True, "counter")
    assert theirs is not mine and gpu._flags(device, 2, True, "counter") is mine
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = gpu._flags(device, 2, True, "counter")
    assert captured is not mine and captured is not theirs


@needs_triton
def test_a_launch_checks_the_earlier_ones_after_its_own(monkeypatch) -> None:
    """The host's work before a sweep's launch is what the GPU waits for at the start of a call: the
    check of earlier launches' give-up flags comes after the launch, and still raises before the
    sweep's numbers are handed out."""
    order = []

    class Kernel:
        def __getitem__(self, grid):
            return lambda *args, **kwargs: order.append("launch")

    monkeypatch.setattr(gpu, "_unchecked", [(FinishedLaunch(), torch.tensor([1], dtype=torch.int32))])
    blocks = gpu._blocks(64, torch.float32, split=True)
    with pytest.raises(RuntimeError, match="grid barrier gave up"):
        gpu._persistent(Kernel(), 2, 64, blocks, torch.zeros(3, 2, 2))()
    assert order == ["launch"]
    gpu._persistent(Kernel(), 2, 64, blocks, torch.zeros(3, 2, 2))()  # checked and cleared: no error
    assert order == ["launch", "launch"]


@needs_triton
def test_launches_meet_at_a_resolved_barrier(monkeypatch) -> None:
    """BPTT_TRITON_BARRIER=auto reaches no kernel: a forward sweep meets at the data barrier, a backward
    sweep at the counter (as measured fastest on an H100), and a barrier set by name is taken as it is."""
    got = []

    class Kernel:
        def __getitem__(self, grid):
            return lambda *args, **kwargs: got.append(kwargs["TILES"].BARRIER)

    x = torch.zeros(3, 2, 2)
    cases = [("auto", False, "data"), ("auto", True, "counter"), ("counter", False, "counter")]
    cases += [("flags", True, "flags"), ("data", True, "data")]
    for barrier, backward, resolved in cases:
        monkeypatch.setattr(gpu, "BARRIER", barrier)
        blocks = gpu._blocks(64, torch.float32, backward=backward, split=True)
        assert blocks["TILES"].BARRIER == resolved
        gpu._persistent(Kernel(), 2, 64, blocks, x)()
        assert got[-1] == resolved
    assert gpu.barrier_for("auto", backward=False) == "data"


@needs_triton
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_a_zero_state_forward_launches_its_sweep_after_two_operators(kind: str, monkeypatch) -> None:
    """hx=None: before the forward sweep's launch (the host's time the GPU waits for) the only operators
    that launch anything are the tape allocated zeroed in one piece and the input projection (W_ih x
    + b_ih: the kernel adds b_hh, so no sum of the biases); besides them the outputs' empty
    allocations, which the kernel fills, so that nothing is copied after it. The output is that of
    hx = zeros, exactly."""
    Count, seen, launched = _counted_launches(monkeypatch)
    torch.manual_seed(0)
    model = {"rnn": bptt.RNN, "gru": bptt.GRU, "lstm": bptt.LSTM}[kind](2, 8, dtype=torch.float64)
    x = torch.randn(3, 2, 2, dtype=torch.float64)
    with native.use_engine("triton"):
        if not dispatch.select(model.step, x).name == "triton":
            pytest.skip("runs the Triton sweeps in the interpreter (TRITON_INTERPRET=1)")
        model(x)  # once before: what is allocated once a process (the unused flags) is not counted
        launched.clear()
        with Count():
            out = model(x)[0]
        zero_hx = torch.zeros(1, 2, 8, dtype=torch.float64)
        out_0 = model(x, (zero_hx, zero_hx) if kind == "lstm" else zero_hx)[0]
    views = ("view", "select", "slice", "permute", "unsqueeze", "squeeze", "detach", "expand", "alias")
    views += ("transpose", "t.default", "as_strided", "unbind", "split", "lift_fresh", "_unsafe_view")
    before = [op for op in seen[: launched[0]] if not any(v in op for v in views)]
    expected = [
        "aten.new_zeros.default",
        "aten.addmm.default",  # one call of F.linear (its view, t, addmm and view below it)
        "aten.new_empty.default",
        "aten.new_empty.default",
        *(["aten.new_empty.default"] if kind == "lstm" else []),
    ]
    assert before == expected
    assert not [op for op in seen if "clone" in op or "copy" in op]
    assert torch.equal(out, out_0)


def _counted_launches(monkeypatch):
    """From here on, a dispatch mode that records the operators outside the persistent sweeps'
    launches (`seen`, as str(func)), and, at each launch's start and end, how many it had seen
    (`launched`)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    seen: list[str] = []
    launched: list[int] = []

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if len(launched) % 2 == 0:  # not within a launch (the interpreter copies its arguments)
                seen.append(str(func))
            return func(*args, **(kwargs or {}))

    persistent = gpu._persistent

    def watched(kernel, *args):
        launch = persistent(kernel, *args)

        def counted(*a, **kw):
            launched.append(len(seen))
            try:
                return launch(*a, **kw)
            finally:
                launched.append(len(seen))

        return counted

    monkeypatch.setattr(gpu, "_persistent", watched)
    return Count, seen, launched


def _backward_ops(model, out, grad, monkeypatch) -> list[str]:
    """The operators (views too) from a backward's call to its sweep's launch, by name."""
    Count, seen, launched = _counted_launches(monkeypatch)
    with Count():
        torch.autograd.backward(out, grad)
    return [op.removeprefix("aten.").split(".")[0] for op in seen[: launched[0]]]


USES = {  # what a loss reads of (output, (h_n, c_n)) or (output, h_n)
    "output": lambda out, state: [out],
    "h_n": lambda out, state: [out, state[0] if isinstance(state, tuple) else state],
    "state": lambda out, state: [out, *(state if isinstance(state, tuple) else (state,))],
}


@needs_triton
@pytest.mark.parametrize("use", ["output", "h_n"])
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_a_backward_launches_its_sweep_after_its_buffers_alone(kind: str, use: str, monkeypatch) -> None:
    """Before the backward sweep's launch, nothing but its gradient buffers (one block, one view each:
    no slice of the tape's) and each cell's carries; where neither h_n nor c_n is used, no zeros for
    their gradients (the kernel starts from zeros, `dispatch.Kernel.zero_final_grads`); where h_n is
    and c_n not, h_n's (B, P) row and c_n's zeros alone, already (B, H); the gradients those of torch.nn."""
    torch.manual_seed(0)
    reference = {"rnn": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[kind](2, 8).double()
    model = bptt.from_torch(reference)
    x = torch.randn(3, 2, 2, dtype=torch.float64)
    with native.use_engine("triton"):
        if not dispatch.select(model.step, x).name == "triton":
            pytest.skip("runs the Triton sweeps in the interpreter (TRITON_INTERPRET=1)")
        outs = USES[use](*model(x))
        grads = [torch.randn_like(o) for o in outs]
        ops = _backward_ops(model, outs, grads, monkeypatch)
    carries = {"lstm": ["new_empty", "unbind"], "gru": ["new_empty", "new_empty"], "rnn": ["new_empty"]}
    buffers = {"lstm": 3, "gru": 3, "rnn": 2}[kind]  # dh, dgx (dgh: the GRU's), dc (the LSTM's)
    given = ["select"] if use == "h_n" else []  # ∂L/∂h_n's (B, P) row of (1, B, P)
    zeros = ["new_zeros"] if use == "h_n" and kind == "lstm" else []  # ∂L/∂c_n
    assert ops == [*given, *zeros, "new_empty", *["as_strided"] * buffers, *carries[kind]]
    torch.autograd.backward(USES[use](*reference(x)), grads)
    for name, p in model.named_parameters():
        torch.testing.assert_close(
            p.grad, dict(reference.named_parameters())[name].grad, rtol=1e-10, atol=1e-12
        )


@needs_triton
@each_cell
def test_a_trace_whose_loss_reads_the_output_alone_starts_from_zeros_and_keeps_none(
    kind: str, monkeypatch
) -> None:
    """A trace's (recorded) tape too: where the loss reads neither h_n nor c_n, no zeros before the
    backward's launch, None for them on the tape, and the same trace, gradients and lag profile as
    the native engine's (whose tape holds their zeros)."""
    from bptt.diagnostics import lag_profile

    torch.manual_seed(0)
    model = {"rnn": bptt.RNN, "gru": bptt.GRU, "lstm": bptt.LSTM}[kind](2, 8, dtype=torch.float64)
    x, w = torch.randn(5, 2, 2, dtype=torch.float64), torch.randn(5, 2, 8, dtype=torch.float64)

    def loss(out, state):
        return (out * w).sum()

    with native.use_engine("triton"):
        if not dispatch.select(model.step, x).name == "triton":
            pytest.skip("runs the Triton sweeps in the interpreter (TRITON_INTERPRET=1)")
        Count, seen, launched = _counted_launches(monkeypatch)
        with Count():
            ours = bptt.trace(model, x, loss)
    before = [op.removeprefix("aten.").split(".")[0] for op in seen[launched[1] : launched[2]]]
    assert "new_zeros" not in before and "zeros" not in before
    assert ours.tapes[0].dh_n is None and ours.tapes[0].dc_n is None
    with native.use_engine("python"):
        theirs = bptt.trace(model, x, loss)
    assert torch.count_nonzero(theirs.tapes[0].dh_n) == 0
    for name in ("h", "c", "dh", "dc"):
        if getattr(theirs, name) is not None:
            torch.testing.assert_close(getattr(ours, name), getattr(theirs, name), rtol=1e-10, atol=1e-12)
    for name, g in theirs.grads.items():
        torch.testing.assert_close(ours.grads[name], g, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ours.contribution_norms(), theirs.contribution_norms(), rtol=1e-10, atol=0)
    for a, b in zip(
        dataclasses.astuple(lag_profile(ours)), dataclasses.astuple(lag_profile(theirs)), strict=True
    ):
        if isinstance(a, torch.Tensor):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-300)
        else:
            assert a == b


@pytest.mark.gpu_interpret
@needs_triton
@pytest.mark.parametrize("loop", ["persistent", "per-step", "resident+partials", "split+counter"])
@pytest.mark.parametrize("use", ["output", "h_n", "state"])
@each_cell
def test_the_backward_sweeps_start_from_zeros_where_the_state_is_unused(kind, use, loop) -> None:
    """∂L/∂h_n and ∂L/∂c_n None (neither used: zeros the kernel starts from), one of them (the other's
    zeros from the host) or both given: the gradients of the weights and of x equal torch.nn's in
    float64, in each time loop, the split ones with their programs running at once."""
    if not gpu.interpreting():
        pytest.skip("runs Triton's interpreter on CPU tensors (TRITON_INTERPRET=1)")
    from concurrent_programs import concurrent_programs

    use_loop(loop)
    torch.manual_seed(0)
    H = 40 if loop.startswith(("split", "resident")) else 8  # split: 3 programs a block of rows
    reference = {"rnn": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[kind](2, H).double()
    model = bptt.from_torch(reference)
    x = torch.randn(3, 2, 2, dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    split = contextlib.nullcontext() if H == 8 else concurrent_programs(sms=8)
    with native.use_engine("triton"), split:
        assert dispatch.select(model.step, x).name == "triton"
        outs = USES[use](*model(x))
        grads = [torch.randn_like(o) for o in outs]
        torch.autograd.backward(outs, grads)
    torch.autograd.backward(USES[use](*reference(x_ref)), grads)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-10, atol=1e-12)
    for name, p in model.named_parameters():
        torch.testing.assert_close(
            p.grad, dict(reference.named_parameters())[name].grad, rtol=1e-10, atol=1e-12
        )


@pytest.mark.parametrize(
    "device",
    [pytest.param("cpu", marks=pytest.mark.gpu_interpret), pytest.param("cuda", marks=pytest.mark.cuda)],
)
@needs_triton
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_outputs_the_kernels_wrote_are_the_users_to_change(kind: str, device: str) -> None:
    """The outputs the persistent kernels write are tensors of their own, not the tape: changed in place
    (and h_n detached in place, the old truncated-BPTT idiom), the gradients stay torch.nn's."""
    if device == "cpu" and not gpu.interpreting():
        pytest.skip("runs Triton's interpreter on CPU tensors (TRITON_INTERPRET=1)")
    if device == "cuda" and (gpu.interpreting() or not torch.cuda.is_available()):
        pytest.skip("no CUDA device")
    torch.manual_seed(0)
    ref = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[kind](2, 16, dtype=torch.float64)
    ours = bptt.from_torch(ref).to(device=device, dtype=torch.float64 if device == "cpu" else torch.float32)
    x = torch.randn(4, 3, 2, dtype=torch.float64)
    with native.use_engine("triton"):
        out, state = ours(x.to(device=device, dtype=ours.weight_hh_l0.dtype))
    h = state[0] if kind == "lstm" else state
    out_r, state_r = ref(x)
    for a, b in zip(
        (out, *(state if kind == "lstm" else [state])),
        (out_r, *(state_r if kind == "lstm" else [state_r])),
        strict=True,
    ):
        assert rel_err(a.double().cpu(), b) < 1e-5  # h_n and c_n as written too
    out.mul_(2.0)
    h.detach_()
    g_r = torch.autograd.grad((2.0 * out_r).pow(2).sum(), ref.weight_hh_l0)[0]
    g = torch.autograd.grad(out.pow(2).sum(), ours.weight_hh_l0)[0]
    assert rel_err(g.double().cpu(), g_r) < (1e-10 if device == "cpu" else 1e-4)


def test_resident_tiles_fall_back_to_split_where_w_hh_does_not_fit() -> None:
    assert gpu.resident_tiles(128, 16, 4) == (16, 128, 4)
    assert gpu.resident_tiles(128, 24, 4) == (32, 128, 8)  # a share of 24 units: one tile of 32
    assert gpu.resident_tiles(128, 16, 8) == (16, 128, 8)  # float64: 64 KB
    assert gpu.resident_tiles(256, 32, 4) is None  # 4 × 32 × 256 × 4 B = 128 KB
    assert gpu.resident_tiles(3, 16, 4) == (16, 16, 4)  # tl.dot's inner dimension is at least 16


@pytest.mark.gpu_interpret
@needs_triton
@pytest.mark.parametrize("loop", ["auto", "split+data"])
def test_triton_keeps_nan_where_the_python_steps_do(loop: str) -> None:
    """A NaN in the input stays in its own sequence, also where the programs poll h_{t−1} (NaNs are
    stored canonical, never the bits that mark an element not yet written)."""
    if not gpu.interpreting():
        pytest.skip("runs Triton's interpreter on CPU tensors (TRITON_INTERPRET=1)")
    use_loop(loop)
    for kind, cfg in [("rnn", {"nonlinearity": "relu"}), ("gru", {}), ("lstm", {})]:
        torch.manual_seed(0)
        model = {"rnn": bptt.RNN, "gru": bptt.GRU, "lstm": bptt.LSTM}[kind](3, 5, **cfg)
        x = torch.randn(5, 3, 3)
        x[2, 1, 0] = float("nan")
        with native.use_engine("triton"):
            out, _ = model(x)
        assert torch.isnan(out[2:, 1]).all(), kind  # from the NaN's step on, that sequence is NaN
        assert torch.isfinite(out[:2]).all() and torch.isfinite(out[:, [0, 2]]).all(), kind


def test_dispatch_is_by_exact_step_type_dtype_device_and_engine(monkeypatch) -> None:
    lstm = bptt.LSTM(2, 3)
    x = torch.zeros(2, 1, 2)
    with native.use_engine("python"):
        assert dispatch.select(lstm.step, x).name == "python"
    with native.use_engine("auto"):  # CPU tensors: the native sweeps, never Triton
        assert dispatch.select(lstm.step, x).name == ("native" if native.build().ok else "python")

    @dataclasses.dataclass(frozen=True)
    class MyStep(LSTMStep):  # a subclass may change the equations: no kernel for it
        pass

    mine = MyStep(lstm.step.variant)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    with native.use_engine("triton"):
        assert dispatch.select(mine, x).name == "python"
        assert dispatch.select(lstm.step, x.half()).name == "python"
        if gpu.kernels() is not None:
            assert dispatch.select(lstm.step, x).name == "triton"
            assert dispatch.select(bptt.GRU(2, 3).step, x).name == "triton"
            assert dispatch.select(bptt.RNN(2, 3, nonlinearity="relu").step, x).name == "triton"
        monkeypatch.setattr(gpu, "LOOP", "sometimes")
        with pytest.raises(
            ValueError, match="expected BPTT_TRITON_LOOP to be one of auto, persistent, per-step"
        ):
            dispatch.select(lstm.step, x)
        monkeypatch.setattr(gpu, "LOOP", "auto")
        for name, value in (
            ("CHUNK", 48),
            ("BACKWARD_CHUNK", 1024),
            ("STAGES", 0),
            ("BARRIER", "spin"),
            ("PRECISION", "bf16"),
            ("BACKWARD_PRECISION", "fp8"),
            ("WARPS", 3),
            ("BACKWARD_WARPS", 32),
            ("ACCUMULATORS", 3),
            ("BACKWARD_ACCUMULATORS", 64),
            ("AUTOTUNE", "yes"),
        ):
            with monkeypatch.context() as m:
                m.setattr(gpu, name, value)
                with pytest.raises(
                    ValueError, match=f"expected BPTT_TRITON_{name} to be .*, got '?{value}'?$"
                ):
                    dispatch.select(lstm.step, x)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with native.use_engine("triton"):  # CPU tensors without the interpreter: the PyTorch loop
        assert dispatch.select(lstm.step, x).name == "python"


def test_forcing_triton_without_it_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setattr(gpu, "_kernels", None)
    monkeypatch.setattr(gpu, "_import_error", "Triton is not installed (pip install 'bptt[gpu]')")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    x = torch.zeros(2, 1, 2)
    with native.use_engine("triton"), pytest.raises(RuntimeError, match="Triton sweeps are unavailable"):
        bptt.LSTM(2, 3)(x)
    with native.use_engine("auto"):  # auto falls back quietly, with the same numbers
        assert bptt.LSTM(2, 3)(x)[0].shape == (2, 1, 3)


@pytest.mark.gpu_interpret
@needs_triton
def test_the_gate_recurrence_matrix_spreads_r_g_over_the_gate_columns() -> None:
    H = 2
    W = torch.arange(36.0).view(6, 6)
    R = gpu._gate_recurrence_matrix(W, H)
    ifo = [0, 1, 2, 3, 6, 7]
    assert torch.equal(R[ifo][:, ifo], W)
    assert R[4:6].abs().sum() == 0 and R[:, 4:6].abs().sum() == 0


# -- on a GPU -------------------------------------------------------------------------------------


@pytest.mark.cuda
@needs_cuda
@needs_triton
@pytest.mark.parametrize(("kind", "cfg", "loop"), CELL_LOOPS)
def test_cuda_equals_the_float64_reference(kind: str, cfg: dict, loop: str) -> None:
    """float32 on the GPU through the Triton sweeps against float64 on the CPU through the PyTorch loop."""
    use_loop(loop)
    truth = make(kind, cfg, torch.float64)
    model = make(kind, cfg, torch.float32, device="cuda")
    model.load_state_dict(truth.state_dict())
    x = torch.randn(7, 4, 3, dtype=torch.float64)
    with native.use_engine("auto"):
        assert dispatch.select(model.step, x.float().cuda()).name == "triton"
    fast = traced(model, x.float().cuda(), "auto")
    slow = traced(truth, x, "python")
    assert_same_trace(fast, slow, 1e-4)


@pytest.mark.cuda
@needs_cuda
@needs_triton
@pytest.mark.parametrize(("kind", "cfg", "loop"), with_loops([("lstm", {}), ("gru", {}), ("rnn", {})]))
def test_cuda_matches_cudnn(kind: str, cfg: dict, loop: str) -> None:
    """A bench-sized layer against torch.nn's cuDNN module on the same GPU, output and gradients."""
    use_loop(loop)
    torch.manual_seed(0)
    ref = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[kind](
        16, 128, num_layers=2
    ).cuda()
    ours = bptt.from_torch(ref)
    x = torch.randn(50, 32, 16, device="cuda")
    results = []
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        for model in (ref, ours):
            out, _state = model(x)
            loss = out.pow(2).sum()
            results.append((out, torch.autograd.grad(loss, list(model.parameters()))))
    (out_r, g_r), (out, g) = results
    assert rel_err(out, out_r) < 1e-4
    for a, b in zip(g, g_r, strict=True):
        assert rel_err(a, b) < 1e-4


@pytest.mark.cuda
@needs_cuda
@needs_triton
@pytest.mark.parametrize(
    ("kind", "cfg", "loop"), with_loops([("lstm", {}), ("lstm", {"variant": "cifg"}), ("gru", {})])
)
def test_cuda_long_sequences_with_sizes_off_the_tiles(kind: str, cfg: dict, loop: str) -> None:
    """T = 300, B = 40, H = 130 on the GPU against the float64 PyTorch loop on the CPU."""
    use_loop(loop)
    cls = {"gru": bptt.GRU, "lstm": bptt.LSTM}[kind]
    torch.manual_seed(0)
    truth = cls(7, 130, dtype=torch.float64, **cfg)
    model = cls(7, 130, device="cuda", **cfg)
    model.load_state_dict(truth.state_dict())
    x = torch.randn(300, 40, 7, dtype=torch.float64)
    fast = traced(model, x.float().cuda(), "auto")
    slow = traced(truth, x, "python")
    assert_same_trace(fast, slow, 1e-4)


@pytest.mark.cuda
@needs_cuda
@needs_triton
@pytest.mark.parametrize("loop", ["persistent", "split", "resident"])
@each_cell
def test_cuda_products_as_independent_partial_sums(kind: str, loop: str) -> None:
    """BPTT_TRITON_ACCUMULATORS=8 at H = 128 and 130 (the resident forward's inner dimension 256)
    against the float64 PyTorch loop on the CPU."""
    use_loop(loop)
    gpu.ACCUMULATORS = gpu.BACKWARD_ACCUMULATORS = 8
    cls = {"rnn": bptt.RNN, "gru": bptt.GRU, "lstm": bptt.LSTM}[kind]
    for H in (128, 130):
        torch.manual_seed(0)
        truth = cls(7, H, dtype=torch.float64)
        model = cls(7, H, device="cuda")
        model.load_state_dict(truth.state_dict())
        x = torch.randn(60, 40, 7, dtype=torch.float64)
        assert_same_trace(traced(model, x.float().cuda(), "auto"), traced(truth, x, "python"), 1e-4)


@pytest.mark.cuda
@needs_cuda
@needs_triton
@each_cell
def test_cuda_autotuned_sweeps(kind: str) -> None:
    """BPTT_TRITON_AUTOTUNE=1 at H = 128: every candidate runs on the GPU and is timed, and the
    fastest's trace equals the float64 PyTorch loop's."""
    gpu.autotune()
    cls = {"rnn": bptt.RNN, "gru": bptt.GRU, "lstm": bptt.LSTM}[kind]
    torch.manual_seed(0)
    truth = cls(7, 128, dtype=torch.float64)
    model = cls(7, 128, device="cuda")
    model.load_state_dict(truth.state_dict())
    x = torch.randn(50, 32, 7, dtype=torch.float64)
    assert_same_trace(traced(model, x.float().cuda(), "auto"), traced(truth, x, "python"), 1e-4)
    forward, backward = gpu.tuned()
    assert len(forward.times) == len(gpu.FORWARD_CANDIDATES) and len(backward.times) == len(
        gpu.BACKWARD_CANDIDATES
    )
    for entry in (forward, backward):
        assert all(isinstance(ms, float) and ms > 0 for ms in entry.times.values()), entry.times
        assert entry.times[entry.label] == min(entry.times.values())


@pytest.mark.cuda
@needs_cuda
@needs_triton
@pytest.mark.parametrize("mapped", [True, False])
@each_cell
def test_cuda_split_sweeps_check_their_barrier_in_the_hosts_memory(
    kind: str, mapped: bool, monkeypatch
) -> None:
    """On this GPU a kernel's store reaches the host's pinned flag (`gpu._mapped`), so a split launch's
    give-up flag needs no copy: nothing waits to be copied back. Where it could not (forced here), each
    launch's flag is copied back after it, and a trace waits for them. Both against the float64 loop."""
    device = torch.empty(0, device="cuda").device  # as the launches key it: with its index (cuda:0)
    assert gpu._mapped(device)
    if not mapped:
        monkeypatch.setattr(gpu, "_mapped_on", {device: False})

    class Copies(list):  # `_unchecked`, counting the flags' copies put on it (a finished one is taken
        appended = 0  # off again by the next check, which may come before the assertion)

        def append(self, item: object) -> None:
            self.appended += 1
            super().append(item)

    monkeypatch.setattr(gpu, "_unchecked", Copies())
    use_loop("split+data")
    cls = {"rnn": bptt.RNN, "gru": bptt.GRU, "lstm": bptt.LSTM}[kind]
    torch.manual_seed(0)
    truth = cls(7, 128, dtype=torch.float64)
    model = cls(7, 128, device="cuda")
    model.load_state_dict(truth.state_dict())
    x = torch.randn(20, 32, 7, dtype=torch.float64)
    with native.use_engine("auto"):
        model(x.float().cuda())
    assert gpu._launched == {device} and gpu._unchecked.appended == (0 if mapped else 1)
    assert_same_trace(traced(model, x.float().cuda(), "auto"), traced(truth, x, "python"), 1e-4)
    assert not gpu._launched and not gpu._unchecked  # the trace waited for them all
    assert gpu._unchecked.appended == (0 if mapped else 3)  # and its forward's and backward's copies


@pytest.mark.cuda
@needs_cuda
@needs_triton
def test_cuda_on_a_second_device_or_batch_first_and_unbatched() -> None:
    """batch_first and unbatched inputs run through the same sweeps and equal the PyTorch loop."""
    torch.manual_seed(0)
    model = bptt.LSTM(3, 8, batch_first=True, variant="peephole").cuda()
    x = torch.randn(2, 9, 3, device="cuda")
    out, _ = model(x)
    with native.use_engine("python"):
        ref, _ = model(x)
    assert rel_err(out, ref) < 1e-5
    out1, _ = model(x[0])
    assert rel_err(out1, out[0]) < 1e-5


@given(
    B=st.integers(1, 5000),
    H=st.integers(1, 2048),
    block_h=st.sampled_from([16, 32, 64]),
    sms=st.one_of(st.none(), st.integers(1, 200)),
)
def test_split_grid_keeps_every_program_resident_and_every_unit_computed(B, H, block_h, sms) -> None:
    rows, parts, units = gpu.split_grid(B, H, 16, block_h, sms, 64)
    assert rows * 16 >= B > (rows - 1) * 16  # every row in one block
    assert units % block_h == 0 and parts * units >= H > (parts - 1) * units  # no unit left, no empty program
    assert 1 <= parts <= 64
    if sms is None:
        assert parts == 1
    elif parts > 1:
        assert rows * parts <= sms  # a grid barrier needs every program resident at once


@needs_triton
def test_the_default_sweeps_compile_for_sm_90_without_spills() -> None:
    """The interpreter runs the kernels' Python, not Triton's compiler: the sweeps a GPU runs by default
    at H = 128 (each cell's resident forward, the LSTM's backward partial sums under the data
    barrier, the GRU's under either barrier, the Elman's split backward) lower to sm_90 code through Triton's compiler and ptxas,
    here without a GPU (`python -m bptt.compile_check`), and keep every value in registers."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    only = (
        r"sweep .*H=128.* resident$|lstm vanilla H=128 partials data$|gru H=128 partials (data|counter)$"
        r"|rnn_backward_sweep .*H=128 split$"
    )
    done = subprocess.run(
        [sys.executable, "-m", "bptt.compile_check", "--quick", "--dtype", "fp32", "--only", only],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if "_sweep" in line]
    assert "compiled 8 kernel specializations for sm_90" in done.stdout, done.stdout
    assert len(lines) == 8 and all("local 0 B" in line or "local None B" in line for line in lines), lines
