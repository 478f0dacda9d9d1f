"""`bptt bench`: the explicit engine beside PyTorch's fused recurrent modules, measured in one run.

In the manner of PyTorch's `benchmarks/fastrnns`: forward and backward are timed separately after
warm-up, medians of repeated runs are reported, and every ratio is against `torch.nn` measured in
the same process, interleaved with ours (the order alternates each repeat) so that a noisy machine
affects both sides alike. Each row also checks the numbers against the reference and shows the
floor: the T sequential recurrent products of the forward and backward sweeps alone.

On a GPU (`--device cuda`) the times come from CUDA events around each forward and backward, the
engine runs the Triton sweeps (engine/gpu.py) and the reference is cuDNN behind torch.nn; both run
with PyTorch's default precision settings (cuDNN may use TF32 for float32, which its error column
shows). FlashRNN and haste are timed only where they are installed; the JSON says which were not.

Besides the cell rows, the bench measures a full `bptt.trace` (states, gates, ∂L/∂h_t, ∂L/∂c_t and
every step's contribution norm) against torch.nn's forward and backward, the contribution norms
against T separate autograd backward passes, the native library's build time, and the watched
training step (`bptt.watch`, and a `bptt.Monitor` record) against the unwatched one at the shape of
a word-level language model.
"""

from __future__ import annotations

import copy
import importlib.util
import itertools
import math
import platform
import re
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from . import _io
from ._checks import InputError
from .cells import LSTM, RecurrentBase, registry
from .convert import from_torch
from .engine import dispatch, gpu, native
from .trace import trace

Shape = tuple[int, ...]  # (B, T, I, H) for one layer, (B, T, I, H, L) for L layers

WORD_LM: Shape = (20, 35, 200, 200, 2)  # the word-level language model of pytorch/examples
DEFAULT_SHAPES: tuple[Shape, ...] = ((32, 200, 2, 128), (64, 100, 64, 256), (16, 1000, 2, 64), WORD_LM)
OTHERS = ("flashrnn", "haste_pytorch")  # other fused RNN libraries, timed where installed


def cells() -> tuple[str, ...]:
    """Every registered cell and alias (the LSTM variants by name): the rows `bptt bench` can time."""
    return tuple(registry.configurations())


@dataclass(frozen=True)
class BenchConfig:
    """What `bptt bench` measures; the defaults are the issue's grid."""

    cells: tuple[str, ...] = field(default_factory=cells)
    shapes: tuple[Shape, ...] = DEFAULT_SHAPES
    repeats: int = 10
    warmup: int = 3
    device: str = "cpu"
    trace: bool = True
    contributions: bool = True
    contributions_steps: int = 200
    diagnostics: bool = False
    engines: bool = False  # each cell's kernel against the Python loop over the same equations
    diagnostics_steps: tuple[int, ...] = (125, 250, 500, 1000)
    watch: bool = True
    watch_shape: Shape = (20, 35, 200, 200)  # (B, T, I, H) of the classic word-level LSTM language model
    watch_layers: int = 2
    watch_vocab: int = 10_000
    seed: int = 0


@dataclass
class Row:
    cell: str
    reference: str
    shape: Shape
    torch_fwd_ms: float
    torch_bwd_ms: float
    ours_fwd_ms: float
    ours_bwd_ms: float
    ratio: float  # (ours forward + backward) / (torch.nn forward + backward), medians
    floor_ms: float | None
    check: str  # the float64 truth the float32 numbers were checked against
    max_rel_err: float  # ours in float32 against the float64 truth
    reference_rel_err: float  # the reference's own float32 result against the same truth
    error: str = ""  # why the row could not be measured (its numbers are then NaN)


@dataclass
class BenchResult:
    config: dict[str, Any]
    machine: dict[str, Any]
    build: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    traces: list[dict[str, Any]] = field(default_factory=list)
    contributions: dict[str, Any] | None = None
    diagnostics: dict[str, Any] | None = None
    watch: list[dict[str, Any]] = field(default_factory=list)
    engines: list[dict[str, Any]] = field(default_factory=list)


def layers(shape: Shape) -> int:
    return shape[4] if len(shape) > 4 else 1


def check_device(name: str) -> torch.device:
    """The device `bptt bench` runs on: `cpu`, `cuda` or `cuda:N`, and only a GPU that is present."""
    if not re.fullmatch(r"cpu|cuda(:\d+)?", name):
        raise InputError(f"expected --device cpu, cuda or cuda:N, got {name!r}")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"--device {name} asked for, but no CUDA device is available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(
                f"--device {name} asked for, but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
    return device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_ms(xs: Sequence[float]) -> float:
    return 1e3 * statistics.median(xs)


def _timer(device: torch.device) -> Callable[[], float]:
    def now() -> float:
        _sync(device)
        return time.perf_counter()

    return now


def _spans(device: torch.device, parts: Sequence[Callable[[], None]]) -> list[float]:
    """Run the parts in order; the seconds each took: CUDA events on a GPU, the wall clock otherwise."""
    if device.type == "cuda":
        events = [torch.cuda.Event(enable_timing=True) for _ in range(len(parts) + 1)]  # type: ignore[no-untyped-call]  # torch.cuda.Event is unannotated
        events[0].record()
        for part, end in zip(parts, events[1:], strict=True):
            part()
            end.record()
        events[-1].synchronize()
        return [a.elapsed_time(b) / 1e3 for a, b in itertools.pairwise(events)]
    now = _timer(device)
    times = [now()]
    for part in parts:
        part()
        times.append(now())
    return [b - a for a, b in itertools.pairwise(times)]


def _fwd_bwd(model: nn.Module, x: Tensor, grad: Tensor) -> Callable[[], tuple[float, float]]:
    """One forward and one backward of `model`, timed separately: (forward s, backward s)."""
    params = list(model.parameters())
    out: list[Tensor] = []

    def forward() -> None:
        out.append(model(x)[0])

    def backward() -> None:
        torch.autograd.backward(out.pop(), grad)

    def once() -> tuple[float, float]:
        for p in params:
            p.grad = None
        f, b = _spans(x.device, [forward, backward])
        return f, b

    return once


def _interleaved(fns: Sequence[Callable[[], Any]], warmup: int, repeats: int) -> list[list[Any]]:
    """Results of each fn per repeat after warm-up, the order of the fns rotating every repeat."""
    results: list[list[Any]] = [[] for _ in fns]
    for rep in range(warmup + repeats):
        order = list(range(len(fns)))
        shift = rep % len(fns)
        for i in order[shift:] + order[:shift]:
            value = fns[i]()
            if rep >= warmup:
                results[i].append(value)
    return results


def _rel(a: Tensor, b: Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def _outputs(model: nn.Module, x: Tensor, grad: Tensor, engine: str) -> list[Tensor]:
    with native.use_engine(engine):
        out = model(x)[0]
        return [out.detach(), *torch.autograd.grad(out, list(model.parameters()), grad)]


def _check(reference: nn.Module, ours: nn.Module, x: Tensor, grad: Tensor) -> tuple[float, float]:
    """Errors of ours and of the reference, both in float32, against the reference in float64.

    The float64 truth makes the check meaningful where float32 itself is ill-conditioned (an LSTM
    without forget gate saturates tanh over long sequences), and the reference's own error shows
    what float32 can achieve there. Variants without a torch.nn twin use the PyTorch loop.
    """
    engine = "python" if isinstance(reference, RecurrentBase) else native.engine()
    truth = _outputs(copy.deepcopy(reference).double(), x.double(), grad.double(), engine)
    ours_err = max(
        _rel(a.double(), b) for a, b in zip(_outputs(ours, x, grad, native.engine()), truth, strict=True)
    )
    ref_err = max(
        _rel(a.double(), b) for a, b in zip(_outputs(reference, x, grad, engine), truth, strict=True)
    )
    return ours_err, ref_err


def _models(cell: str, shape: Shape, device: torch.device) -> tuple[nn.Module, RecurrentBase, nn.Module, str]:
    """(torch.nn module to time against, bptt module, reference for the check, what the check is).

    A cell with a torch.nn twin for its options is timed and checked against the twin; any other
    is timed against torch.nn.LSTM, the common yardstick, and checked against its own PyTorch loop.
    """
    I, H, L = shape[2], shape[3], layers(shape)
    spec, options = registry.configurations()[cell]
    twin = spec.build_twin(I, H, L, options)
    if twin is not None:
        twin = twin.to(device)
        return twin, from_torch(twin), twin, "torch.nn float64"
    ours = spec.build(I, H, L, options).to(device)
    return nn.LSTM(I, H, num_layers=L).to(device), ours, ours, "pytorch loop float64"


def _floor_ms(ours: RecurrentBase, shape: Shape, device: torch.device, repeats: int) -> float | None:
    B, T = shape[:2]
    params = dict(ours.named_parameters())
    if "weight_hh_l0" not in params:
        return None  # no recurrent product to measure (minGRU, minLSTM, LRU)
    W = params["weight_hh_l0"].detach()
    h = torch.randn(B, W.shape[1], device=device)
    if device.type == "cpu" and native.usable(h[None]):

        def one_layer() -> None:
            native.recurrent_floor(h, W, T)

    else:
        y, d = torch.empty(B, W.shape[0], device=device), torch.empty(B, W.shape[1], device=device)

        def one_layer() -> None:
            for _ in range(T):
                torch.mm(h, W.T, out=y)
            for _ in range(T):
                torch.mm(y, W, out=d)

    def run() -> None:
        for _ in range(layers(shape)):
            one_layer()

    def once() -> float:
        return _spans(device, [run])[0]

    return _median_ms(_interleaved([once], 1, repeats)[0])


def bench_cell(cell: str, shape: Shape, cfg: BenchConfig, device: torch.device) -> Row:
    B, T, I = shape[:3]
    torch.manual_seed(cfg.seed)
    ref, ours, check_ref, check = _models(cell, shape, device)
    x = torch.randn(T, B, I, device=device)
    grad = torch.randn(T, B, ours.hidden_size, device=device)
    err, ref_err = _check(check_ref, ours, x, grad)
    (t_ref, t_ours) = _interleaved([_fwd_bwd(ref, x, grad), _fwd_bwd(ours, x, grad)], cfg.warmup, cfg.repeats)

    def total(ts: list[tuple[float, float]]) -> float:
        return statistics.median(f + b for f, b in ts)

    return Row(
        cell=cell,
        reference=f"torch.nn.{type(ref).__name__}",
        shape=shape,
        torch_fwd_ms=_median_ms([f for f, _ in t_ref]),
        torch_bwd_ms=_median_ms([b for _, b in t_ref]),
        ours_fwd_ms=_median_ms([f for f, _ in t_ours]),
        ours_bwd_ms=_median_ms([b for _, b in t_ours]),
        ratio=total(t_ours) / total(t_ref),
        floor_ms=_floor_ms(ours, shape, device, cfg.repeats),
        check=check,
        max_rel_err=err,
        reference_rel_err=ref_err,
    )


def _failed_row(cell: str, shape: Shape, err: Exception) -> Row:
    nan = float("nan")
    return Row(cell, "", shape, nan, nan, nan, nan, nan, None, "", nan, nan, f"{type(err).__name__}: {err}")


def failures(result: BenchResult) -> list[str]:
    """What could not be measured, one line each."""
    rows = [f"{r.cell} at {r.shape}: {r.error}" for r in result.rows if r.error]
    return rows + [f"trace at {t['shape']}: {t['error']}" for t in result.traces if "error" in t]


def bench_trace(shape: Shape, cfg: BenchConfig, device: torch.device) -> dict[str, Any]:
    """A full trace of the vanilla LSTM (with every contribution norm) against torch.nn.LSTM forward +
    backward, and against bptt's own forward + backward (the trace's overhead)."""
    B, T, I, H = shape[:4]
    torch.manual_seed(cfg.seed)
    ref = nn.LSTM(I, H, num_layers=layers(shape)).to(device)
    ours = from_torch(ref)
    x = torch.randn(T, B, I, device=device)
    grad = torch.randn(T, B, H, device=device)

    def run_trace() -> None:
        trace(ours, x, lambda out, state: (out * grad).sum()).contribution_norms()

    fb_ref, fb_ours = _fwd_bwd(ref, x, grad), _fwd_bwd(ours, x, grad)
    t_ref, t_ours, t_trace = _interleaved(
        [lambda: sum(fb_ref()), lambda: sum(fb_ours()), lambda: _spans(device, [run_trace])[0]],
        cfg.warmup,
        cfg.repeats,
    )
    return {
        "cell": "lstm",
        "shape": shape,
        "torch_fwd_bwd_ms": _median_ms(t_ref),
        "bptt_fwd_bwd_ms": _median_ms(t_ours),
        "trace_ms": _median_ms(t_trace),
        "ratio": statistics.median(t_trace) / statistics.median(t_ref),
        "overhead": statistics.median(t_trace) / statistics.median(t_ours),
    }


def _unrolled_contribution_norms(model: LSTM, x: Tensor, grad: Tensor) -> tuple[Tensor, float]:
    """The baseline: every step with its own copy of the parameters, then T autograd backward passes.

    Returns the (T,) norms and the seconds the T backward passes took (its forward not counted).
    """
    T, B, _ = x.shape
    H = model.hidden_size
    names = [n for n, _ in model.named_parameters()]
    copies = [
        {n: p.detach().clone().requires_grad_(True) for n, p in model.named_parameters()} for _ in range(T)
    ]
    h = x.new_zeros(B, H)
    c = x.new_zeros(B, H)
    loss = x.new_zeros(())
    for t in range(T):
        P = copies[t]
        z = x[t] @ P["weight_ih_l0"].T + P["bias_ih_l0"] + h @ P["weight_hh_l0"].T + P["bias_hh_l0"]
        i, f, g, o = z.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        loss = loss + (h * grad[t]).sum()
    now = _timer(x.device)
    t0 = now()
    norms = []
    for t in range(T):
        grads = torch.autograd.grad(loss, [copies[t][n] for n in names], retain_graph=True)
        norms.append(torch.stack([g.pow(2).sum() for g in grads]).sum().sqrt())
    return torch.stack(norms), now() - t0


def bench_contributions(cfg: BenchConfig, device: torch.device) -> dict[str, Any]:
    """Contribution norms of all steps: one trace against T separate autograd backward passes."""
    B, T, I, H = 32, cfg.contributions_steps, 2, 128
    torch.manual_seed(cfg.seed)
    model = LSTM(I, H).to(device)
    x = torch.randn(T, B, I, device=device)
    grad = torch.randn(T, B, H, device=device)
    now = _timer(device)
    times = []
    for _ in range(cfg.warmup + cfg.repeats):
        t0 = now()
        norms = trace(model, x, lambda out, state: (out * grad).sum()).contribution_norms()
        times.append(now() - t0)
    ours = statistics.median(times[cfg.warmup :])
    baseline_norms, baseline = _unrolled_contribution_norms(model, x, grad)
    return {
        "shape": (B, T, I, H),
        "trace_with_norms_ms": 1e3 * ours,
        "autograd_T_backward_passes_ms": 1e3 * baseline,
        "speedup": baseline / ours,
        "max_rel_err": _rel(norms, baseline_norms),
    }


def bench_diagnostics(
    cfg: BenchConfig, device: torch.device, progress: Callable[[str], None]
) -> dict[str, Any]:
    """Every diagnostic of an LSTM (H = 128, B = 4) at several T: the time must grow linearly in T."""
    from . import diagnostics as dg

    B, I, H = 4, 2, 128
    torch.manual_seed(cfg.seed)
    model = LSTM(I, H).to(device)
    parts: dict[str, Callable[[Any], Any]] = {
        "gradient profile": dg.gradient_profile,
        "jacobian norms (state, h, c, cec)": lambda tr: [
            dg.jacobian_norms(tr, of=of) for of in ("state", "h", "c", "cec")
        ],
        "forget split": dg.forget_split,
        "bounds along the trace": lambda tr: dg.bounds(tr.model, tr),
        "lyapunov (16 exponents)": lambda tr: dg.lyapunov(tr, k=16, compare=False),
        "gate statistics": dg.gate_stats,
    }
    rows = []
    now = _timer(device)
    for T in cfg.diagnostics_steps:
        progress(f"diagnostics at T = {T}")
        x = torch.randn(T, B, I, device=device)
        t0 = now()
        tr = trace(model, x, lambda out, state: out[-1].pow(2).sum())
        row = {"T": T, "trace_s": now() - t0}
        for name, fn in parts.items():
            t0 = now()
            fn(tr)
            row[name] = now() - t0
        row["total_s"] = row["trace_s"] + sum(row[name] for name in parts)
        rows.append(row)
    logs_t = torch.tensor([math.log(r["T"]) for r in rows], dtype=torch.float64)
    logs_s = torch.tensor([math.log(r["total_s"]) for r in rows], dtype=torch.float64)
    x = logs_t - logs_t.mean()
    exponent = float((x * (logs_s - logs_s.mean())).sum() / (x * x).sum()) if len(rows) > 1 else float("nan")
    return {"shape": (B, None, I, H), "rows": rows, "parts": list(parts), "exponent": exponent}


class _WordLM(nn.Module):
    """embedding → LSTM (dropout between layers) → linear decoder; vocab 0: the LSTM alone, a loss at every step."""

    def __init__(self, vocab: int, I: int, H: int, layers: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.embed = nn.Embedding(max(vocab, 1), I)
        self.rnn = nn.LSTM(I, H, layers, dropout=0.2 if layers > 1 else 0.0)
        self.decoder = nn.Linear(H, max(vocab, 1))

    def loss(self, x: Tensor, y: Tensor) -> Tensor:
        if not self.vocab:
            out: Tensor = self.rnn(x)[0]
            return (out * y).sum()
        logits = self.decoder(self.rnn(self.embed(x))[0])
        return nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())


def bench_watch(cfg: BenchConfig, device: torch.device) -> list[dict[str, Any]]:
    """A training step watched (`bptt.watch`, then also a Monitor record) against the same step unwatched.

    Two rows at `cfg.watch_shape`: the LSTM alone with a loss at every step, and the whole word-level
    language model (embedding, LSTM, decoder over `cfg.watch_vocab` words, cross-entropy). The
    ratio is the watched step's median time over the unwatched step's, interleaved in this run.
    """
    return [_watch_row(cfg, device, vocab) for vocab in (0, cfg.watch_vocab)]


def _watch_row(cfg: BenchConfig, device: torch.device, vocab: int) -> dict[str, Any]:
    from .diagnostics.summary import summarize
    from .watch import watch

    B, T, I, H = cfg.watch_shape
    torch.manual_seed(cfg.seed)
    model = _WordLM(vocab, I, H, cfg.watch_layers).to(device)
    if vocab:
        x = torch.randint(vocab, (T, B), device=device)
        y = torch.randint(vocab, (T, B), device=device)
    else:
        x, y = torch.randn(T, B, I, device=device), torch.randn(T, B, H, device=device)
    now = _timer(device)

    def plain() -> float:
        model.zero_grad(set_to_none=True)
        t0 = now()
        torch.autograd.backward(model.loss(x, y))
        return now() - t0

    def watched(record: bool = False) -> float:
        model.zero_grad(set_to_none=True)
        t0 = now()
        with watch(model) as w:
            torch.autograd.backward(model.loss(x, y))
        tr = w.traces["rnn"]
        if record:
            summarize(tr)  # what a Monitor record computes
        return now() - t0

    t_plain, t_watch, t_record = _interleaved(
        [plain, watched, lambda: watched(record=True)], cfg.warmup, cfg.repeats
    )
    return {
        "model": f"word LM, vocab {vocab}" if vocab else "LSTM alone",
        "shape": cfg.watch_shape,
        "layers": cfg.watch_layers,
        "unwatched_ms": _median_ms(t_plain),
        "watched_ms": _median_ms(t_watch),
        "monitor_record_ms": _median_ms(t_record),
        "ratio": statistics.median(t_watch) / statistics.median(t_plain),
        "record_ratio": statistics.median(t_record) / statistics.median(t_plain),
    }


def bench_engines(cell: str, shape: Shape, cfg: BenchConfig, device: torch.device) -> dict[str, Any]:
    """The kernel dispatch picks for a cell against the Python time loop, forward + backward, interleaved.

    Whether a kernel pays for itself: `speedup` = Python loop / kernel, medians of the same run.
    """
    B, T, I = shape[:3]
    torch.manual_seed(cfg.seed)
    _, ours, _, _ = _models(cell, shape, device)
    x = torch.randn(T, B, I, device=device)
    grad = torch.randn(T, B, ours.proj_size or ours.hidden_size, device=device)
    kernel = dispatch.select(ours.step, x).name
    once = _fwd_bwd(ours, x, grad)

    def with_engine(name: str) -> Callable[[], float]:
        def timed() -> float:
            with native.use_engine(name):
                return sum(once())

        return timed

    t_kernel, t_python = _interleaved([with_engine("auto"), with_engine("python")], cfg.warmup, cfg.repeats)
    return {
        "cell": cell,
        "shape": shape,
        "kernel": kernel,
        "kernel_ms": _median_ms(t_kernel),
        "python_ms": _median_ms(t_python),
        "speedup": statistics.median(t_python) / statistics.median(t_kernel),
    }


def run(cfg: BenchConfig, progress: Callable[[str], None] | None = None) -> BenchResult:
    """Measure everything in `cfg`; `progress` is told what is being measured."""
    device = check_device(cfg.device)
    say = progress or (lambda _: None)
    if device.type == "cpu":
        say("building the native sweeps")
        info = native.build()
        engine = native.engine()
    else:  # the native sweeps are CPU-only: never built for a GPU run
        info = native.BuildInfo(False, None, 0.0, False, "not used on a GPU")
        probe = torch.zeros(1, 1, 1, device=device)
        engine = (
            f"triton ({gpu.LOOP}, {gpu.BARRIER} barrier, {gpu.PRECISION}/{gpu.BACKWARD_PRECISION} products, "
            f"chunks {gpu.CHUNK or 'default'}/{gpu.BACKWARD_CHUNK or 'default'}, {gpu.STAGES} stage(s)"
            f"{', autotuned at each shape' if gpu.AUTOTUNE == '1' else ''})"
            if dispatch.select(LSTM(1, 1).step, probe).name == "triton"
            else f"python ({gpu.import_error() or native.engine()})"
        )
    result = BenchResult(
        config=asdict(cfg),
        machine={
            "torch": torch.__version__,
            "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
            "threads": torch.get_num_threads(),
            "processor": platform.processor() or platform.machine(),
            "engine": engine,
            "triton": _version("triton"),
            "others": {name: _version(name) or "not installed" for name in OTHERS},
        },
        build={
            "ok": info.ok,
            "first_build_s": info.first_build_seconds,
            "built_now_s": info.seconds if not info.cached else 0.0,
            "error": info.error,
        },
    )
    for shape in cfg.shapes:
        for cell in cfg.cells:
            say(f"{cell} at (B, T, I, H[, L]) = {shape}")
            try:
                result.rows.append(bench_cell(cell, shape, cfg, device))
            except Exception as err:  # one failed row must not hide the others; it is shown as failed
                result.rows.append(_failed_row(cell, shape, err))
            if cfg.engines:
                say(f"{cell}: its kernel against the Python loop at {shape}")
                result.engines.append(bench_engines(cell, shape, cfg, device))
        if cfg.trace:
            say(f"trace at {shape}")
            try:
                result.traces.append(bench_trace(shape, cfg, device))
            except Exception as err:
                result.traces.append(
                    {"cell": "lstm", "shape": shape, "error": f"{type(err).__name__}: {err}"}
                )
    if cfg.contributions:
        say(f"contribution norms against {cfg.contributions_steps} autograd backward passes")
        result.contributions = bench_contributions(cfg, device)
    if cfg.diagnostics:
        result.diagnostics = bench_diagnostics(cfg, device, say)
    if cfg.watch:
        say(f"the watched training step at (B, T, I, H) = {cfg.watch_shape}")
        result.watch = bench_watch(cfg, device)
    if device.type == "cuda" and gpu.AUTOTUNE == "1":  # what autotuning chose, each kind of sweep
        result.machine["autotuned"] = [
            {
                "sweep": t.key.direction,
                "step": t.key.step.__name__,
                "batch": t.key.batch,
                "hidden": t.key.hidden,
                "steps up to": t.key.steps,
                "choice": t.label,
            }
            for t in gpu.tuned()
        ]
    return result


def _version(package: str) -> str | None:
    """The installed version of a package, or None."""
    if importlib.util.find_spec(package) is None:
        return None
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package.replace("_", "-"))
    except PackageNotFoundError:
        return "installed"


def to_json(result: BenchResult) -> dict[str, Any]:
    out = asdict(result)
    out["rows"] = [asdict(r) for r in result.rows]
    return out


def write_json(result: BenchResult, path: str) -> None:
    _io.write_json(path, to_json(result))


def _fmt(x: float | None, digits: int = 1) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _table(
    title: str, columns: Sequence[str], rows: Iterable[Sequence[str]], left: Sequence[str] = ()
) -> Any:
    """A rich table: the columns named in `left` flush left, the figures flush right."""
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="left" if col in left else "right")
    for row in rows:
        table.add_row(*row)
    return table


def _shape(shape: Sequence[int]) -> str:
    return ", ".join(map(str, shape))


def _cell_row(r: Row) -> list[str]:
    ratio = f"[{'green' if r.ratio <= 1.2 else 'yellow' if r.ratio <= 1.5 else 'red'}]{r.ratio:.2f}×[/]"
    times = [r.torch_fwd_ms, r.torch_bwd_ms, r.ours_fwd_ms, r.ours_bwd_ms]
    errors = [r.check, f"{r.max_rel_err:.1e}", f"{r.reference_rel_err:.1e}"]
    return [r.cell, _shape(r.shape), *map(_fmt, times), ratio, _fmt(r.floor_ms), *errors]


def _trace_row(t: dict[str, Any]) -> list[str]:
    times = (_fmt(t[k]) for k in ("torch_fwd_bwd_ms", "bptt_fwd_bwd_ms", "trace_ms"))
    return [_shape(t["shape"]), *times, f"{t['ratio']:.2f}×", f"{t['overhead']:.2f}×"]


def _engine_row(e: dict[str, Any]) -> list[str]:
    times = (_fmt(e["kernel_ms"]), _fmt(e["python_ms"]))
    return [e["cell"], _shape(e["shape"]), e["kernel"], *times, f"{e['speedup']:.2f}×"]


def _watched_row(w: dict[str, Any]) -> list[str]:
    ratio = f"[{'green' if w['ratio'] <= 1.5 else 'red'}]{w['ratio']:.2f}×[/]"
    times = (_fmt(w["unwatched_ms"]), _fmt(w["watched_ms"]), ratio, _fmt(w["monitor_record_ms"]))
    return [w["model"], _shape(w["shape"]), str(w["layers"]), *times, f"{w['record_ratio']:.2f}×"]


def _diagnostics_row(r: dict[str, Any], parts: Sequence[str]) -> list[str]:
    seconds = (f"{r[k]:.2f}" for k in ("trace_s", *parts, "total_s"))
    return [str(r["T"]), *seconds, f"{1e3 * r['total_s'] / r['T']:.1f}"]


def render(result: BenchResult) -> list[Any]:
    """rich renderables: the cell table, the trace table and the summary lines."""
    m = result.machine
    cell_columns = ("cell", "B, T, I, H[, L]", "torch.nn fwd", "bwd", "bptt fwd", "bwd", "ratio", "floor")
    out: list[Any] = [
        _table(
            f"bptt bench — {m['device']}, {m['threads']} threads, torch {m['torch']}",
            (*cell_columns, "f32 error vs", "bptt", "reference"),
            map(_cell_row, result.rows),
            left=("cell", "B, T, I, H[, L]", "f32 error vs"),
        )
    ]
    if result.traces:
        out.append(
            _table(
                "full trace (states, gates, ∂L/∂h_t, ∂L/∂c_t, contribution norms) vs torch.nn.LSTM fwd+bwd",
                (
                    "B, T, I, H[, L]",
                    "torch.nn fwd+bwd ms",
                    "bptt fwd+bwd ms",
                    "trace ms",
                    "ratio",
                    "overhead",
                ),
                (_trace_row(t) for t in result.traces if "error" not in t),
            )
        )
    if result.engines:
        out.append(
            _table(
                "each cell's kernel against the Python time loop, forward + backward (ms)",
                ("cell", "B, T, I, H", "kernel", "kernel ms", "python loop ms", "python / kernel"),
                map(_engine_row, result.engines),
                left=("cell", "kernel"),
            )
        )
    if result.contributions:
        c = result.contributions
        out.append(
            f"contribution norms, LSTM (B, T, I, H) = {tuple(c['shape'])}: trace {c['trace_with_norms_ms']:.1f} ms, "
            f"T autograd backward passes {c['autograd_T_backward_passes_ms']:.0f} ms — {c['speedup']:.0f}× faster "
            f"(norms agree to {c['max_rel_err']:.1e})"
        )
    if result.watch:
        out.append(
            _table(
                "a training step watched (bptt.watch; + a Monitor record) vs unwatched, torch.nn.LSTM",
                (
                    "model",
                    "B, T, I, H",
                    "layers",
                    "unwatched ms",
                    "watched ms",
                    "ratio",
                    "+ record ms",
                    "ratio",
                ),
                map(_watched_row, result.watch),
                left=("model",),
            )
        )
    if result.diagnostics:
        dgn = result.diagnostics
        out.append(
            _table(
                "diagnostics of an LSTM, B = 4, H = 128 (seconds)",
                ("T", "trace", *dgn["parts"], "total", "ms per step"),
                (_diagnostics_row(r, dgn["parts"]) for r in dgn["rows"]),
            )
        )
        out.append(
            f"diagnostics time ∝ T^{dgn['exponent']:.2f} (log-log fit over T = {', '.join(str(r['T']) for r in dgn['rows'])})"
        )
    out.extend(f"[red]failed[/]: {line}" for line in failures(result))
    others = ", ".join(f"{name} {version}" for name, version in m["others"].items())
    out.append(f"engine: {m['engine']}; triton {m['triton'] or 'not installed'}; {others}")
    b = result.build
    if not b["ok"] and b["error"] == "not used on a GPU":
        pass
    elif b["ok"]:
        first = f"{b['first_build_s']:.1f} s" if b["first_build_s"] is not None else "unknown"
        out.append(
            f"native sweeps: first build took {first}"
            + (f", built in this run in {b['built_now_s']:.1f} s" if b["built_now_s"] else " (cached)")
        )
    else:
        out.append(f"native sweeps unavailable ({b['error']}); the PyTorch loop ran")
    out.append(
        "times are medians in ms; ratio = bptt (fwd + bwd) / torch.nn (fwd + bwd), measured interleaved in this run; "
        "trace overhead = a full trace / bptt (fwd + bwd); "
        "floor = the sweeps' sequential recurrent products alone; errors: max |Δ| / max |truth| over output and gradients, "
        "float32 against the float64 truth, for bptt and for the reference itself"
    )
    return out
