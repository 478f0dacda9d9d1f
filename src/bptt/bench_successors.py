"""`bptt bench --successors`: sLSTM, minGRU, minLSTM and LRU against the best implementation at hand.

Each row times the explicit engine (forward, then the hand-written backward through time) against a
reference computing the same function with the same weights, measured in the same run and
interleaved with ours, as `bptt bench` does for torch.nn's fused modules; every row also checks that
both give the same output (max |Δ| / max |reference|, float32):

* sLSTM: xLSTM's own PyTorch backend (`xlstm`, the "vanilla" sLSTM cell, autograd), else the
  same equations as an autograd loop;
* minGRU, minLSTM: the `mingru-pytorch` package's parallel log-space scan (autograd), and our
  `parallel_scan` form of the same recurrence (autograd) — the parallel forms the paper trains with;
* LRU: its complex recurrence as an autograd loop, and as a parallel (log-space) scan.

The input size equals the hidden size (mingru-pytorch maps dim → dim), the LRU's state size too.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .bench import _interleaved, _median_ms, _rel, _timer
from .cells import LRU, MinGRU, MinLSTM, RecurrentBase, parallel_scan, sLSTM

DEFAULT_SHAPES: tuple[tuple[int, int, int], ...] = (
    (32, 200, 64),
    (64, 100, 256),
    (16, 1000, 64),
)  # (B, T, H)


@dataclass
class SuccessorRow:
    cell: str
    reference: str
    shape: tuple[int, int, int]  # (B, T, H); input size H
    reference_ms: float  # forward + backward, median
    ours_ms: float
    ratio: float  # ours / reference
    max_rel_err: float  # ours against the reference, output, float32


Forward = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class Reference:
    """A reference implementation: its name, its forward (T, B, H) → (T, B, H) and its parameters."""

    name: str
    forward: Forward
    params: list[Tensor]


def _weights(model: nn.Module) -> dict[str, Tensor]:
    """The module's parameters by name, detached."""
    return {name: p.detach() for name, p in model.named_parameters()}


def _package(name: str) -> Any:
    """An optional reference package's module, or None where it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


# -- references -----------------------------------------------------------------------------------


def _xlstm_slstm(ours: sLSTM) -> Reference | None:
    """xLSTM's vanilla sLSTM cell after the same input projection, weights copied (one head)."""
    pkg = _package("xlstm.blocks.slstm.cell")
    if pkg is None:
        return None
    H = ours.hidden_size
    cfg = pkg.sLSTMCellConfig(
        hidden_size=H,
        num_heads=1,
        backend="vanilla",
        dtype="float32",
        input_shape="SBGNH",
        output_shape="SBH",
        enable_automatic_mixed_precision=False,
    )
    cell: Any = pkg.sLSTMCell(cfg)
    p = _weights(ours)
    W_ih = p["weight_ih_l0"].clone().requires_grad_(True)
    W_hh, b = p["weight_hh_l0"], p["bias_ih_l0"] + p["bias_hh_l0"]
    with torch.no_grad():
        for g in range(4):
            cell.recurrent_kernel[0, :, g, :] = W_hh[g * H : (g + 1) * H].T
        cell.bias[0] = b.view(4, H)

    def forward(x: Tensor) -> Tensor:
        out: Tensor = cell(x @ W_ih.T)[0]
        return out

    return Reference("xlstm sLSTM (vanilla backend)", forward, [W_ih, *cell.parameters()])


def _slstm_loop(ours: sLSTM) -> Reference:
    P = {n[:-3]: p.detach().clone().requires_grad_(True) for n, p in ours.named_parameters()}
    H = ours.hidden_size

    def forward(x: Tensor) -> Tensor:
        gx = x @ P["weight_ih"].T + P["bias_ih"] + P["bias_hh"]
        B = x.shape[1]
        h = c = n = m = x.new_zeros(B, H)
        outs = []
        for t in range(x.shape[0]):
            i, f, z, o = (gx[t] + h @ P["weight_hh"].T).chunk(4, dim=-1)
            log_f = F.logsigmoid(f)
            m_new = torch.where(n == 0, i, torch.maximum(log_f + m, i))
            f_s = torch.where(n == 0, torch.zeros_like(n), torch.exp(log_f + m - m_new))
            i_s = torch.exp(i - m_new)
            c = f_s * c + i_s * torch.tanh(z)
            n = f_s * n + i_s
            m = m_new
            h = torch.sigmoid(o) * c / n
            outs.append(h)
        return torch.stack(outs)

    return Reference("autograd loop", forward, list(P.values()))


def _mingru_package(ours: MinGRU | MinLSTM) -> Reference | None:
    """mingru-pytorch's minGRU/minLSTM (its parallel log-space scan), weights copied."""
    H = ours.hidden_size
    name = "minGRU" if isinstance(ours, MinGRU) else "minLSTM"
    pkg = _package(f"minGRU_pytorch.{name}")
    if pkg is None:
        return None
    ref: nn.Module = getattr(pkg, name)(H)
    with torch.no_grad():  # theirs: rows [hidden; gates]; ours: [gates; n]
        W = _weights(ours)["weight_ih_l0"]
        next(ref.parameters()).copy_(torch.cat([W[-H:], W[:-H]]))

    def forward(x: Tensor) -> Tensor:
        out: Tensor = ref(x.transpose(0, 1))
        return out.transpose(0, 1)

    return Reference(f"mingru-pytorch {name} (parallel log-space scan)", forward, list(ref.parameters()))


def _minimal_scan(ours: MinGRU | MinLSTM) -> Reference:
    """Our `parallel_scan` of h_t = a_t h_{t−1} + b_t, autograd through it."""
    p = _weights(ours)
    W = p["weight_ih_l0"].clone().requires_grad_(True)
    b_ih = p["bias_ih_l0"].clone().requires_grad_(True)
    H = ours.hidden_size
    mingru = isinstance(ours, MinGRU)

    def forward(x: Tensor) -> Tensor:
        a = x @ W.T + b_ih
        if mingru:
            z = torch.sigmoid(a[..., :H])
            return parallel_scan(-F.softplus(a[..., :H]), z * a[..., H:])  # log(1 − z), z h̃
        f, i = torch.sigmoid(a[..., :H]), torch.sigmoid(a[..., H : 2 * H])
        return parallel_scan(torch.log(f / (f + i)), i / (f + i) * a[..., 2 * H :])

    return Reference("parallel scan (bptt.cells.parallel_scan, autograd)", forward, [W, b_ih])


def _lru_reference(ours: LRU, parallel: bool) -> Reference:
    P = {n[:-3]: p.detach().clone().requires_grad_(True) for n, p in ours.named_parameters()}
    N = ours.state_size

    def forward(u: Tensor) -> Tensor:
        log_lam = -torch.exp(P["nu_log"]) + 1j * torch.exp(P["theta_log"])
        W = P["weight_ih"]
        bu = torch.complex(u @ W[:N].T, u @ W[N : 2 * N].T) * torch.exp(P["gamma_log"])
        C = torch.complex(P["weight_hc"][:, :N], P["weight_hc"][:, N:])
        if parallel:
            x = parallel_scan(log_lam.expand(bu.shape), bu)
        else:
            lam, state, xs = torch.exp(log_lam), bu.new_zeros(bu.shape[1:]), []
            for t in range(u.shape[0]):
                state = lam * state + bu[t]
                xs.append(state)
            x = torch.stack(xs)
        return (x @ C.T).real + u @ W[2 * N :].T

    name = "parallel scan (complex log-space, autograd)" if parallel else "autograd loop (complex)"
    return Reference(name, forward, list(P.values()))


def _pairs(cell: str, H: int) -> list[tuple[RecurrentBase, Reference]]:
    """(our module, its reference) for each row of a cell."""
    out: list[tuple[RecurrentBase, Reference]] = []
    if cell == "slstm":
        ours_s = sLSTM(H, H)
        out.append((ours_s, _xlstm_slstm(ours_s) or _slstm_loop(ours_s)))
    elif cell in ("mingru", "minlstm"):
        cls = MinGRU if cell == "mingru" else MinLSTM
        ours_g = cls(H, H, bias=False, candidate="g")  # the package's form: no bias, h̃ = g(·)
        pkg = _mingru_package(ours_g)
        if pkg is not None:
            out.append((ours_g, pkg))
        ours_m = cls(H, H)
        out.append((ours_m, _minimal_scan(ours_m)))
    else:
        ours_l = LRU(H, H, state_size=H, r_min=0.9, r_max=0.999)
        out.append((ours_l, _lru_reference(ours_l, parallel=False)))
        out.append((ours_l, _lru_reference(ours_l, parallel=True)))
    return out


CELLS = ("slstm", "mingru", "minlstm", "lru")


def _output_of(model: RecurrentBase) -> Forward:
    def forward(x: Tensor) -> Tensor:
        out: Tensor = model(x)[0]
        return out

    return forward


def _timed(fn: Forward, params: list[Tensor], x: Tensor, grad: Tensor) -> Callable[[], float]:
    """One forward and one backward (∂/∂params for the cotangent `grad`), timed together in seconds."""
    now = _timer(x.device)

    def once() -> float:
        t0 = now()
        torch.autograd.grad(fn(x), params, grad)
        return now() - t0

    return once


def bench_successor(
    cell: str, shape: tuple[int, int, int], repeats: int = 10, warmup: int = 3, seed: int = 0
) -> list[SuccessorRow]:
    B, T, H = shape
    torch.manual_seed(seed)
    rows = []
    for ours, ref in _pairs(cell, H):
        x = torch.randn(T, B, H)
        grad = torch.randn(T, B, H)
        time_ours = _timed(_output_of(ours), list(ours.parameters()), x, grad)
        time_ref = _timed(ref.forward, ref.params, x, grad)
        with torch.no_grad():
            err = _rel(ours(x)[0], ref.forward(x))
        t_ref, t_ours = _interleaved([time_ref, time_ours], warmup, repeats)
        rows.append(
            SuccessorRow(
                cell=cell,
                reference=ref.name,
                shape=shape,
                reference_ms=_median_ms(t_ref),
                ours_ms=_median_ms(t_ours),
                ratio=statistics.median(t_ours) / statistics.median(t_ref),
                max_rel_err=err,
            )
        )
    return rows


def run(
    shapes: tuple[tuple[int, int, int], ...] = DEFAULT_SHAPES,
    cells: tuple[str, ...] = CELLS,
    repeats: int = 10,
    warmup: int = 3,
    progress: Callable[[str], None] | None = None,
) -> list[SuccessorRow]:
    """Every row for every shape (B, T, H)."""
    rows = []
    for shape in shapes:
        for cell in cells:
            if progress is not None:
                progress(f"{cell} at (B, T, H) = {shape}")
            rows.extend(bench_successor(cell, shape, repeats, warmup))
    return rows


def to_json(rows: list[SuccessorRow]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]


def render(rows: list[SuccessorRow]) -> list[Any]:
    """A rich table of the rows and the line that says what the numbers are."""
    from rich.table import Table

    table = Table(title="the LSTM's successors: bptt's explicit BPTT against the best implementation at hand")
    for col in ("cell", "reference", "B, T, H", "reference ms", "bptt ms", "ratio", "output Δ"):
        table.add_column(col, justify="left" if col in ("cell", "reference") else "right")
    for r in rows:
        table.add_row(
            r.cell,
            r.reference,
            ", ".join(map(str, r.shape)),
            f"{r.reference_ms:.1f}",
            f"{r.ours_ms:.1f}",
            f"{r.ratio:.2f}×",
            f"{r.max_rel_err:.1e}",
        )
    return [
        table,
        "times are medians of forward + backward in ms, interleaved in this run; ratio = bptt / reference; "
        "output Δ = max |bptt − reference| / max |reference| in float32",
    ]


# -- `bptt bench --successors` ----------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flag on `bptt bench` that runs this bench instead of the torch.nn one."""
    p.add_argument(
        "--successors",
        action="store_true",
        default=False,
        help="time sLSTM, minGRU, minLSTM and LRU against xlstm, mingru-pytorch and the parallel-scan "
        "forms instead (shapes BxTxIxH are read with I = H; default: "
        + " ".join("x".join(map(str, (B, T, H, H))) for B, T, H in DEFAULT_SHAPES)
        + ")",
    )


def main(args: argparse.Namespace, out: Any) -> int:
    """Run, print and (with --json) write the successors' rows; `out` is a rich console."""
    from . import _io
    from .bench import DEFAULT_SHAPES as TORCH_SHAPES

    given = tuple(getattr(args, "shapes", TORCH_SHAPES))
    shapes = DEFAULT_SHAPES if given == tuple(TORCH_SHAPES) else tuple((B, T, H) for B, T, _, H in given)
    repeats, warmup = getattr(args, "repeats", 10), getattr(args, "warmup", 3)
    with out.status("measuring") as status:
        rows = run(shapes, repeats=repeats, warmup=warmup, progress=lambda w: status.update(w))
    for item in render(rows):
        out.print(item)
    if getattr(args, "json", None):
        _io.write_json(args.json, {"successors": to_json(rows)})
        out.print(f"wrote {args.json}")
    return 0
