# mypy: allow-untyped-defs, allow-incomplete-defs, allow-untyped-calls
"""Triton kernels for the time loops on CUDA: one fused pointwise pass per step, forward and backward.

The design of haste (Sharvit et al., LMNT 2020): per step the recurrent product W_hh h_{t−1} is one
cuBLAS matmul (engine/gpu.py), and everything elementwise of the step is one kernel that reads the
two products and writes the tape in the layout the trace reads (gate activations, c_t, h_t). The
backward kernel reads the tape and the incoming ∂L/∂h_t, ∂L/∂c_t and writes ∂L/∂gx_t, ∂L/∂gh_t and
the carry ∂L/∂c_{t−1}; W_hhᵀ ∂L/∂gh_t is again one matmul.

Every kernel walks the (B, H) elements of one step in blocks of BLOCK; element e is row b = e // H,
unit j = e % H, and gate block k of a (B, G·H) tensor sits at b·G·H + k·H + j. The equations are the
steps' own (cells/rnn.py, cells/lstm.py, cells/gru.py) statement for statement; the Python steps are
the reference the tests hold these kernels to, under `TRITON_INTERPRET=1` without a GPU.

Each cell's pointwise step forward and back (`_lstm_forward`, `_lstm_backward`, `_gru_forward`,
`_gru_backward`) is written once and serves both time loops: the per-step kernels here and the
persistent sweeps below, which differ only in where the recurrent product comes from and which
elements a program owns.

The LSTM kernels serve every variant: which gates exist and where their blocks sit, peepholes,
CIFG's coupling and the two activations are one compile-time constant (`Variant`), so each variant
compiles to straight-line code. FGR's gate recurrence and the projection are matmuls around the
kernels (engine/gpu.py).
"""

from __future__ import annotations

from typing import NamedTuple

import triton
import triton.language as tl

BLOCK = 256  # elements of one step per program


class Variant(NamedTuple):
    """An LSTM variant as the kernels see it: G gate blocks, the block of i, f, g, o (−1: the variant
    lacks the gate), peepholes, CIFG's coupling f = 1 − i, and whether g and the output are squashed."""

    G: int
    K_I: int
    K_F: int
    K_G: int
    K_O: int
    PEEPHOLE: bool
    COUPLED: bool
    INPUT_ACT: bool
    OUTPUT_ACT: bool


class Tiles(NamedTuple):
    """The persistent sweeps' tiles: batch rows per program, units per tile, the chunk of a product's
    inner dimension, tl.dot's input precision, and whether a block's units are split over programs."""

    BLOCK_B: int
    BLOCK_H: int
    BLOCK_K: int
    PRECISION: str
    SPLIT: bool = False
    CACHE: str = ""  # the cache of loads of what other programs wrote: ".cg" (past L1) when split
    UNITS: int = 0  # the units of its block of rows a program computes: H, or its share when split
    RESIDENT: bool = False  # W_hh's rows for the program's units loaded once a sweep, kept on chip
    BARRIER: str = "counter"  # the split grid barrier: one counter per block, a flag per program, or
    # none ("data": the programs poll the values they read, `_shared`); gpu.barrier_for resolves it
    HP: int = 0  # H padded to a power of two: the inner dimension of a RESIDENT product, in one piece
    ACCUMULATORS: int = 1  # independent partial sums a product's inner dimension is split into (`_dot`)
    # what the programs of a split LSTM backward exchange each step (`_lstm_backward_tile`): ∂L/∂gh_t
    # ("gates"), or partial sums of ∂L/∂h_{t−1} from W_hh's rows kept on chip ("partials", RESIDENT)
    EXCHANGE: str = "gates"


MAX_PARTS = tl.constexpr(64)  # programs one block of rows may be split over (flags per block in `sync`)
SPIN_LIMIT = tl.constexpr(1 << 22)  # polls of the flags before a split sweep gives up (about a second)
STUCK_EVERY = tl.constexpr(256)  # polls between two looks at whether another program gave up


@triton.jit
def _sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))  # σ(x); exp(+∞) = ∞ gives 0, NaN stays NaN


@triton.jit
def _tanh(x):
    # tanh(x) = sign(x) (1 − e^{−2|x|}) / (1 + e^{−2|x|}), which never overflows; NaN stays NaN
    e = tl.exp(-2.0 * tl.abs(x))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0, -t, t)


@triton.jit
def _activate(z, ACT: tl.constexpr):
    # ACT: 0 tanh, 1 relu, 2 sigmoid, 3 linear
    if ACT == 0:
        a = _tanh(z)
    elif ACT == 1:
        a = tl.where(z < 0, 0.0, z)  # relu that keeps NaN
    elif ACT == 2:
        a = _sigmoid(z)
    else:
        a = z
    return a


@triton.jit
def _activation_grad(h, ACT: tl.constexpr):
    # a'(z) from h = a(z)
    if ACT == 0:
        d = 1.0 - h * h  # tanh' = 1 − tanh²
    elif ACT == 1:
        d = tl.where(h > 0, 1.0, 0.0)  # relu' = 1[z > 0]
    elif ACT == 2:
        d = h * (1.0 - h)  # σ' = σ(1 − σ)
    else:
        d = h * 0.0 + 1.0  # linear
    return d


@triton.jit
def _elements(n, BLOCK: tl.constexpr):
    """The elements of one step's (B, H) a per-step program owns, and their mask."""
    e = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    return e, e < n


@triton.jit
def _incoming(grad_out, dh_next, dh, here, ok):
    """∂L/∂h_t = ∂ℓ/∂h_t + ∂L/∂h_t via step t+1, written to the tape's dh as well."""
    d = tl.load(grad_out + here, mask=ok, other=0.0) + tl.load(dh_next + here, mask=ok, other=0.0)
    tl.store(dh + here, d, mask=ok)
    return d


@triton.jit
def _publish(v):
    """v as stored where the programs of a split sweep poll it (BARRIER "data", `_shared`): every NaN
    as the canonical one, so no value written is the all-ones bit pattern of an unwritten element."""
    return tl.where(v == v, v, float("nan"))


@triton.jit
def _finals(h_buf, c_buf, h_n, c_n, rows, row_ok, lo, T, B, H, REVERSE: tl.constexpr, TILES: tl.constexpr):
    """At a persistent forward sweep's end, h_n (and c_n) as `LayerSweep` returns them: copies of the
    state its last step wrote into the tape, each program its own units (the output, h_t at every t,
    is stored as each step goes)."""
    tl.debug_barrier()  # the last step's stores, by any of this program's threads, come first
    _t, _prev, last = _position(T - 1, T, REVERSE, False)
    for j in range(0, TILES.UNITS, TILES.BLOCK_H):
        _cols, _col_ok, ok, here, _at = _tile(rows, row_ok, lo + j, H, 1, TILES.BLOCK_H)
        tl.store(h_n + here, tl.load(h_buf + last * B * H + here, mask=ok, other=0.0), mask=ok)
        if c_n is not None:
            tl.store(c_n + here, tl.load(c_buf + last * B * H + here, mask=ok, other=0.0), mask=ok)


# -- Elman RNN ---------------------------------------------------------------------------------------


@triton.jit
def rnn_forward_step(gx, gh, h, n, ACT: tl.constexpr, BLOCK: tl.constexpr):
    e, ok = _elements(n, BLOCK)
    z = tl.load(gx + e, mask=ok) + tl.load(gh + e, mask=ok)  # z_t = W_ih x_t + b + W_hh h_{t−1}
    tl.store(h + e, _activate(z, ACT), mask=ok)  # h_t = a(z_t)


@triton.jit
def _rnn_backward(d, h, dgx, here, ok, ACT: tl.constexpr):
    a_grad = _activation_grad(tl.load(h + here, mask=ok, other=0.0), ACT)
    tl.store(dgx + here, _publish(d * a_grad), mask=ok)  # ∂L/∂z_t = ∂L/∂h_t ⊙ a'(z_t)


@triton.jit
def rnn_backward_step(grad_out, dh_next, h, dh, dgx, n, ACT: tl.constexpr, BLOCK: tl.constexpr):
    e, ok = _elements(n, BLOCK)
    _rnn_backward(_incoming(grad_out, dh_next, dh, e, ok), h, dgx, e, ok, ACT)


# -- GRU ---------------------------------------------------------------------------------------------


@triton.jit
def _load3(ptr, at, H, ok):
    """Gate blocks r, z, n of a (…, 3H) row at `at` (b·3H + j)."""
    r = tl.load(ptr + at, mask=ok, other=0.0)
    z = tl.load(ptr + at + H, mask=ok, other=0.0)
    n = tl.load(ptr + at + 2 * H, mask=ok, other=0.0)
    return r, z, n


@triton.jit
def _store3(ptr, at, H, r, z, n, ok):
    tl.store(ptr + at, r, mask=ok)
    tl.store(ptr + at + H, z, mask=ok)
    tl.store(ptr + at + 2 * H, n, mask=ok)


@triton.jit
def _gru_forward(gx, gh, h_prev, gates, ghn, h, at, here, ok, H):
    """One GRU step from gh = (gh_r, gh_z, gh_n), the recurrent products with b_hh: the gates,
    W_hn h_{t−1} + b_hn and h_t into the tape."""
    gx_r, gx_z, gx_n = _load3(gx, at, H, ok)
    gh_r, gh_z, gh_n = gh
    hp = tl.load(h_prev + here, mask=ok, other=0.0)
    r = _sigmoid(gx_r + gh_r)  # r_t = σ(W_ir x_t + b_ir + W_hr h_{t−1} + b_hr)
    z = _sigmoid(gx_z + gh_z)  # z_t = σ(W_iz x_t + b_iz + W_hz h_{t−1} + b_hz)
    nn = _tanh(gx_n + r * gh_n)  # n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_{t−1} + b_hn))
    _store3(gates, at, H, r, z, nn, ok)
    tl.store(ghn + here, gh_n, mask=ok)
    h_t = _publish(nn + z * (hp - nn))  # h_t = n_t + z_t ⊙ (h_{t−1} − n_t)
    tl.store(h + here, h_t, mask=ok)
    return h_t


@triton.jit
def _gru_cell_backward(d, r, z, nn, hp, gh_n):
    """One GRU step back from ∂L/∂h_t: (∂L/∂z_r, ∂L/∂z_z, ∂L/∂z_n, ∂L/∂(W_hn h_{t−1} + b_hn), the
    direct path z_t ⊙ ∂L/∂h_t)."""
    dz_z = d * (hp - nn) * z * (1.0 - z)  # ∂L/∂z_z = ∂L/∂h_t ⊙ (h_{t−1} − n_t) ⊙ σ'
    dz_n = d * (1.0 - z) * (1.0 - nn * nn)  # ∂L/∂z_n = ∂L/∂h_t ⊙ (1 − z_t) ⊙ tanh'
    dz_r = dz_n * gh_n * r * (1.0 - r)  # ∂L/∂z_r = ∂L/∂z_n ⊙ (W_hn h_{t−1} + b_hn) ⊙ σ'
    # ∂L/∂(W_hn h_{t−1} + b_hn) = ∂L/∂z_n ⊙ r_t; the direct path: ∂h_t/∂h_{t−1} ⊃ diag(z_t)
    return dz_r, dz_z, dz_n, dz_n * r, d * z


@triton.jit
def _gru_backward(d, gates, h_prev, ghn, dgx, dgh, direct, at, here, ok, H):
    """One GRU step back from ∂L/∂h_t: ∂L/∂gx_t, ∂L/∂gh_t and the direct path z_t ⊙ ∂L/∂h_t."""
    r, z, nn = _load3(gates, at, H, ok)
    hp = tl.load(h_prev + here, mask=ok, other=0.0)
    gh_n = tl.load(ghn + here, mask=ok, other=0.0)  # W_hn h_{t−1} + b_hn
    dz_r, dz_z, dz_n, dgh_n, dd = _gru_cell_backward(d, r, z, nn, hp, gh_n)
    _store3(dgx, at, H, dz_r, dz_z, dz_n, ok)
    _store3(dgh, at, H, _publish(dz_r), _publish(dz_z), _publish(dgh_n), ok)
    tl.store(direct + here, dd, mask=ok)


@triton.jit
def gru_forward_step(gx, gh, h_prev, gates, ghn, h, n, H, BLOCK: tl.constexpr):
    e, ok = _elements(n, BLOCK)
    at = (e // H) * 3 * H + e % H
    _gru_forward(gx, _load3(gh, at, H, ok), h_prev, gates, ghn, h, at, e, ok, H)


@triton.jit
def gru_backward_step(grad_out, dh_next, h_prev, gates, ghn, dh, dgx, dgh, direct, n, H, BLOCK: tl.constexpr):
    e, ok = _elements(n, BLOCK)
    d = _incoming(grad_out, dh_next, dh, e, ok)
    _gru_backward(d, gates, h_prev, ghn, dgx, dgh, direct, (e // H) * 3 * H + e % H, e, ok, H)


# -- LSTM, every variant -------------------------------------------------------------------------------


@triton.jit
def _load_gate(ptr, at, K: tl.constexpr, H, mask):
    """Gate block K of a (…, G·H) row at `at` (b·G·H + j); zeros for a gate the variant lacks."""
    if K >= 0:
        v = tl.load(ptr + at + K * H, mask=mask, other=0.0)
    else:
        v = tl.load(ptr + at, mask=mask, other=0.0) * 0.0
    return v


@triton.jit
def _load_gates(ptr, at, H, mask, V: tl.constexpr):
    """Gate blocks i, f, g, o of a (…, G·H) row at `at`; zeros for the gates the variant lacks."""
    i = _load_gate(ptr, at, V.K_I, H, mask)
    f = _load_gate(ptr, at, V.K_F, H, mask)
    g = _load_gate(ptr, at, V.K_G, H, mask)
    o = _load_gate(ptr, at, V.K_O, H, mask)
    return i, f, g, o


@triton.jit
def _store_gate(ptr, at, value, K: tl.constexpr, H, mask):
    if K >= 0:
        tl.store(ptr + at + K * H, value, mask=mask)


@triton.jit
def _store_gates(ptr, at, i, f, g, o, H, mask, V: tl.constexpr):
    """Gate blocks i, f, g, o into a (…, G·H) row at `at`: those the variant has."""
    _store_gate(ptr, at, i, V.K_I, H, mask)
    _store_gate(ptr, at, f, V.K_F, H, mask)
    _store_gate(ptr, at, g, V.K_G, H, mask)
    _store_gate(ptr, at, o, V.K_O, H, mask)


@triton.jit
def _load_peephole(ptr, j, K: tl.constexpr, mask):
    """p_· (H,) at units j, for a gate the variant has (K ≥ 0); zeros otherwise."""
    if K >= 0:
        v = tl.load(ptr + j, mask=mask, other=0.0)
    else:
        v = tl.load(ptr + j * 0, mask=mask, other=0.0) * 0.0
    return v


@triton.jit
def _peepholes(peep, j, j_ok, placeholder, V: tl.constexpr):
    """p_i, p_f, p_o at units j from `peep` = (w_ci, w_cf, w_co); `placeholder` (never read) without peepholes."""
    p_i, p_f, p_o = placeholder, placeholder, placeholder
    if V.PEEPHOLE:
        p_i = _load_peephole(peep[0], j, V.K_I, j_ok)
        p_f = _load_peephole(peep[1], j, V.K_F, j_ok)
        p_o = _load_peephole(peep[2], j, V.K_O, j_ok)
    return p_i, p_f, p_o


@triton.jit
def _plus(a, b):
    """(a_i + b_i, a_f + b_f, a_g + b_g, a_o + b_o): the two products of each gate's pre-activation."""
    return a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3]


@triton.jit
def _gates_in(gx_t, b_hh, at, cols, col_ok, H, ok, V: tl.constexpr, HAS_BIAS: tl.constexpr):
    """W_ih x_t + b_ih (+ b_hh, HAS_BIAS) by gate at these rows and units: b_hh read with each step's
    gx_t (from L1), not held in registers across the sweep."""
    x = _load_gates(gx_t, at, H, ok, V)
    if HAS_BIAS:
        x = _plus(x, _load_gates(b_hh, cols[None, :], H, col_ok[None, :], V))
    return x


@triton.jit
def _lstm_cell(zi, zf, zg, zo, cp, p_i, p_f, p_o, V: tl.constexpr):
    """One LSTM step from its pre-activations z = W_ih x_t + b + W_hh h_{t−1}: (i, f, g, o, c_t, m_t).

    A gate the variant lacks (K_· < 0) comes back as a placeholder and is never stored.
    """
    g = _tanh(zg) if V.INPUT_ACT else zg  # g_t = tanh(z_g)
    i = zg
    f = zg
    o = zg
    if V.K_I >= 0:
        if V.PEEPHOLE:
            zi = zi + p_i * cp  # z_i + p_i ⊙ c_{t−1}
        i = _sigmoid(zi)  # i_t = σ(·)
        ig = i * g
    else:
        ig = g  # i = 1
    if V.K_F >= 0:
        if V.PEEPHOLE:
            zf = zf + p_f * cp  # z_f + p_f ⊙ c_{t−1}
        f = _sigmoid(zf)  # f_t = σ(·)
        fc = f * cp
    elif V.COUPLED:
        fc = (1.0 - i) * cp  # CIFG: f_t = 1 − i_t
    else:
        fc = cp  # f = 1
    c = fc + ig  # c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t
    m = _tanh(c) if V.OUTPUT_ACT else c  # m_t = o_t ⊙ tanh(c_t)
    if V.K_O >= 0:
        if V.PEEPHOLE:
            zo = zo + p_o * c  # z_o + p_o ⊙ c_t
        o = _sigmoid(zo)  # o_t = σ(·)
        m = m * o
    return i, f, g, o, c, m


@triton.jit
def _lstm_cell_backward(
    dm,
    dc_next,
    i,
    f,
    g,
    o,
    c,
    cp,
    da_i,
    da_f,
    da_o,
    p_i,
    p_f,
    p_o,
    V: tl.constexpr,
    GATE_RECURRENCE: tl.constexpr,
):
    """One LSTM step back from ∂L/∂m_t and ∂L/∂c_t via step t+1: (∂L/∂z_i, z_f, z_g, z_o, ∂L/∂c_t, ∂L/∂c_{t−1}).

    da_· are ∂L/∂[i, f, o]_t via step t+1 (FGR only); absent gates give placeholders.
    """
    act_c = _tanh(c) if V.OUTPUT_ACT else c
    # ∂L/∂c_t = ∂L/∂m_t ⊙ o_t ⊙ tanh'(c_t) + ∂L/∂c_t via step t+1 (+ p_o ⊙ ∂L/∂z_o)
    d = dm * (1.0 - act_c * act_c) if V.OUTPUT_ACT else dm
    dz_i = dm
    dz_f = dm
    dz_o = dm
    if V.K_O >= 0:
        d = d * o
        do = dm * act_c  # ∂L/∂o_t = ∂L/∂m_t ⊙ tanh(c_t)
        if GATE_RECURRENCE:
            do = do + da_o  # ∂L/∂o_t via step t+1
        dz_o = do * o * (1.0 - o)  # ∂L/∂z_o = ∂L/∂o_t ⊙ σ'
        if V.PEEPHOLE:
            d = d + p_o * dz_o  # o_t reads c_t through p_o
    d = d + dc_next
    dg = d * i if V.K_I >= 0 else d  # ∂L/∂g_t = ∂L/∂c_t ⊙ i_t
    dz_g = dg * (1.0 - g * g) if V.INPUT_ACT else dg  # ∂L/∂z_g = ∂L/∂g_t ⊙ tanh'(z_g)
    if V.K_I >= 0:
        di = d * g  # ∂L/∂i_t = ∂L/∂c_t ⊙ g_t
        if V.COUPLED:
            di = di - d * cp  # CIFG: f_t = 1 − i_t, so ∂L/∂i_t −= ∂L/∂c_t ⊙ c_{t−1}
        if GATE_RECURRENCE:
            di = di + da_i
        dz_i = di * i * (1.0 - i)  # ∂L/∂z_i = ∂L/∂i_t ⊙ σ'
    if V.K_F >= 0:
        df = d * cp  # ∂L/∂f_t = ∂L/∂c_t ⊙ c_{t−1}
        if GATE_RECURRENCE:
            df = df + da_f
        dz_f = df * f * (1.0 - f)  # ∂L/∂z_f = ∂L/∂f_t ⊙ σ'
        d_prev = d * f  # ∂L/∂c_{t−1} = f_t ⊙ ∂L/∂c_t
    elif V.COUPLED:
        d_prev = d * (1.0 - i)  # CIFG: f_t = 1 − i_t
    else:
        d_prev = d  # f = 1
    if V.PEEPHOLE:
        if V.K_I >= 0:
            d_prev = d_prev + p_i * dz_i  # + p_i ⊙ ∂L/∂z_i
        if V.K_F >= 0:
            d_prev = d_prev + p_f * dz_f  # + p_f ⊙ ∂L/∂z_f
    return dz_i, dz_f, dz_g, dz_o, d, d_prev


@triton.jit
def _lstm_forward(z, cp, peep, j, j_ok, gates, c, m, at, here, ok, H, V: tl.constexpr):
    """One LSTM step from z = (z_i, z_f, z_g, z_o) and c_{t−1}: the gates, c_t and m_t into the tape;
    c_t and m_t as stored."""
    p_i, p_f, p_o = _peepholes(peep, j, j_ok, cp, V)
    i, f, g, o, cc, mm = _lstm_cell(z[0], z[1], z[2], z[3], cp, p_i, p_f, p_o, V)
    _store_gates(gates, at, i, f, g, o, H, ok, V)
    tl.store(c + here, cc, mask=ok)
    mm = _publish(mm)
    tl.store(m + here, mm, mask=ok)
    return cc, mm


@triton.jit
def _lstm_backward(
    dm,
    dc_next,
    da,
    cp,
    peep,
    j,
    j_ok,
    gates,
    c,
    dgx,
    dc,
    dc_prev,
    at,
    here,
    ok,
    H,
    V: tl.constexpr,
    FGR: tl.constexpr,
):
    """One LSTM step back from ∂L/∂m_t and the carry: ∂L/∂gx_t, ∂L/∂c_t and ∂L/∂c_{t−1} into the tape.

    da = ∂L/∂[i, f, o]_t via step t+1 under FGR's gate recurrence; placeholders otherwise.
    """
    gates_t = _load_gates(gates, at, H, ok, V)
    cc = tl.load(c + here, mask=ok, other=0.0)
    d_prev, _dz = _lstm_step_back(
        dm, dc_next, da, cp, cc, gates_t, peep, j, j_ok, dgx, dc, at, here, ok, H, V, FGR
    )
    tl.store(dc_prev + here, d_prev, mask=ok)


@triton.jit
def _lstm_step_back(
    dm,
    dc_next,
    da,
    cp,
    cc,
    gates_t,
    peep,
    j,
    j_ok,
    dgx,
    dc,
    at,
    here,
    ok,
    H,
    V: tl.constexpr,
    FGR: tl.constexpr,
):
    """`_lstm_backward` from the step's gates (i, f, g, o) and c_t already loaded: ∂L/∂gx_t and
    ∂L/∂c_t into the tape; returns ∂L/∂c_{t−1} and ∂L/∂z_t = (∂L/∂z_i, z_f, z_g, z_o)."""
    p_i, p_f, p_o = _peepholes(peep, j, j_ok, cp, V)
    i, f, g, o = gates_t
    dz_i, dz_f, dz_g, dz_o, d, d_prev = _lstm_cell_backward(
        dm, dc_next, i, f, g, o, cc, cp, da[0], da[1], da[2], p_i, p_f, p_o, V, FGR
    )
    _store_gates(dgx, at, _publish(dz_i), _publish(dz_f), _publish(dz_g), _publish(dz_o), H, ok, V)
    tl.store(dc + here, d, mask=ok)
    return d_prev, (dz_i, dz_f, dz_g, dz_o)


@triton.jit
def lstm_forward_step(
    gx, gh, c_prev, w_ci, w_cf, w_co, gates, c, m, n, H, V: tl.constexpr, BLOCK: tl.constexpr
):
    e, ok = _elements(n, BLOCK)
    j = e % H
    at = (e // H) * V.G * H + j
    # z_t = W_ih x_t + b_ih + W_hh h_{t−1} + b_hh (+ R_g [i, f, o]_{t−1} for FGR, already in gh)
    z = _plus(_load_gates(gx, at, H, ok, V), _load_gates(gh, at, H, ok, V))
    cp = tl.load(c_prev + e, mask=ok, other=0.0)
    _lstm_forward(z, cp, (w_ci, w_cf, w_co), j, ok, gates, c, m, at, e, ok, H, V)


@triton.jit
def lstm_backward_step(
    grad_out,
    dh_next,
    dm_in,
    dh,
    gates,
    c,
    c_prev,
    dc_next,
    da_next,
    w_ci,
    w_cf,
    w_co,
    dgx,
    dc,
    dc_prev,
    n,
    H,
    V: tl.constexpr,
    GATE_RECURRENCE: tl.constexpr,
    PROJECTION: tl.constexpr,
    BLOCK: tl.constexpr,
):
    e, ok = _elements(n, BLOCK)
    j = e % H
    at = (e // H) * V.G * H + j
    if PROJECTION:
        dm = tl.load(dm_in + e, mask=ok, other=0.0)  # ∂L/∂m_t = W_hrᵀ ∂L/∂h_t, a matmul before this kernel
    else:
        dm = _incoming(grad_out, dh_next, dh, e, ok)  # m_t = h_t
    cp = tl.load(c_prev + e, mask=ok, other=0.0)
    da = (cp, cp, cp)
    if GATE_RECURRENCE:  # ∂L/∂[i, f, o]_t via step t+1, in the (B, 4H) gate layout
        da_i, da_f, _, da_o = _load_gates(da_next, at, H, ok, V)
        da = (da_i, da_f, da_o)
    dc_in = tl.load(dc_next + e, mask=ok, other=0.0)
    peep = (w_ci, w_cf, w_co)
    _lstm_backward(
        dm, dc_in, da, cp, peep, j, ok, gates, c, dgx, dc, dc_prev, at, e, ok, H, V, GATE_RECURRENCE
    )


def grid(n: int) -> tuple[int]:
    """Programs for n elements of one step."""
    return (triton.cdiv(n, BLOCK),)


# -- persistent sweeps: the whole time loop in one launch -----------------------------------------
#
# The design of FlashRNN (Pöppel et al., 2024) cut to what Triton expresses without grid-wide
# synchronisation: each program owns BLOCK_B rows of the batch for all T steps, and rows never talk to
# each other, so the only dependency is within a program. Per step it computes W_hh h_{t−1} tile by
# tile with tl.dot (W_hh stays in L2 across steps), applies the same pointwise step as the per-step
# kernel, writes the tape, and waits at a barrier before step t+1 reads h_t. Backward per step: the
# pointwise step back over all units, a barrier, ∂L/∂h_{t−1} = W_hhᵀ ∂L/∂gh_t tile by tile, a
# barrier. Python launches once per sweep instead of twice per step.


@triton.jit
def _owned(B, TILES: tl.constexpr):
    """What this program computes: its block of batch rows (program axis 0), which of them exist, and
    the first of its share of their units (program axis 1; TILES.UNITS of them)."""
    rows = tl.program_id(0) * TILES.BLOCK_B + tl.arange(0, TILES.BLOCK_B)
    return rows, rows < B, tl.program_id(1) * TILES.UNITS


@triton.jit
def _position(s, T, REVERSE: tl.constexpr, BACKWARD: tl.constexpr):
    """The s-th step a sweep visits: its time position t and the tape slots of s_{t−1} (prev) and s_t (now).

    A forward sweep visits the direction's order, a backward sweep the reverse of it; the reverse
    direction's previous state is at t + 1.
    """
    if REVERSE == BACKWARD:
        t = s
    else:
        t = T - 1 - s
    if REVERSE:
        prev, now = t + 1, t
    else:
        prev, now = t, t + 1
    return t, prev, now


@triton.jit
def _tile(rows, row_ok, j0, H, G, BLOCK_H: tl.constexpr):
    """Units j0 … j0 + BLOCK_H of the program's rows: the columns, their masks, the (row, unit) offsets
    in an H-wide buffer (here) and in a G·H-wide gate buffer's first block (at)."""
    cols = j0 + tl.arange(0, BLOCK_H)
    col_ok = cols < H
    ok = row_ok[:, None] & col_ok[None, :]
    here = rows[:, None] * H + cols[None, :]
    at = rows[:, None] * G * H + cols[None, :]
    return cols, col_ok, ok, here, at


@triton.jit
def _carry_in(src, dst, rows, row_ok, lo, H, TILES: tl.constexpr, HAS_GRAD_N: tl.constexpr):
    """dst = src at the program's rows and units: a backward sweep's carry (∂L/∂h, ∂L/∂c) starts from
    what came in (∂L/∂h_n, ∂L/∂c_n) in a buffer of its own, so the host copies nothing; from zeros
    without HAS_GRAD_N (h_n and c_n not used: the host allocates no zeros for them)."""
    for j in range(0, TILES.UNITS, TILES.BLOCK_H):
        _cols, _col_ok, ok, here, _at = _tile(rows, row_ok, lo + j, H, 1, TILES.BLOCK_H)
        tl.store(dst + here, _grad_n(src, here, ok, dst, HAS_GRAD_N), mask=ok)
    tl.debug_barrier()  # the program's later reads of dst see it


@triton.jit
def _grad_n(src, here, ok, like, HAS_GRAD_N: tl.constexpr):
    """∂L/∂h_n (or ∂L/∂c_n) at `here`, or zeros in `like`'s dtype without HAS_GRAD_N (src unread)."""
    if HAS_GRAD_N:
        return tl.load(src + here, mask=ok, other=0.0)
    else:
        return tl.full(here.shape, 0.0, like.dtype.element_ty)


@triton.jit
def _rows_cols(ptr, rows, cols, stride, row_ok, col_ok, CACHE: tl.constexpr):
    return tl.load(
        ptr + rows[:, None] * stride + cols[None, :],
        mask=row_ok[:, None] & col_ok[None, :],
        other=0.0,
        cache_modifier=CACHE,
    )


@triton.jit
def _polled(polls, stuck):
    """polls + 1, or at least SPIN_LIMIT where another program of the launch has given up: looked at
    every STUCK_EVERY polls, not before the first, so that a program waits on no read of the flag
    that a barrier passed at once does not need (each is a round trip to L2, on a step's critical
    path); once stuck, a barrier waits STUCK_EVERY polls at most."""
    polls += 1
    if polls % STUCK_EVERY == 0:
        polls += tl.atomic_add(stuck, 0, sem="relaxed", scope="gpu") * SPIN_LIMIT
    return polls


@triton.jit
def _unwritten(x):
    """How many elements of x still hold the all-ones bits gpu.py fills a polled buffer with."""
    if x.dtype == tl.float64:
        bits = x.to(tl.int64, bitcast=True)
    else:
        bits = x.to(tl.int32, bitcast=True)
    n = (bits == -1).to(tl.int32)
    if len(n.shape) == 3:  # `_from_partials`' (rows, units, programs)
        n = tl.sum(n, axis=2)
    return tl.sum(tl.sum(n, axis=1), axis=0)


@triton.jit
def _shared(ptr, rows, cols, stride, row_ok, col_ok, sync, TILES: tl.constexpr):
    """rows × cols of a (·, stride) buffer that every program of the block writes a part of each step.

    With a split sweep's BARRIER "data" there is no barrier before this load: gpu.py fills the buffer
    with all-ones bits (a NaN no kernel writes, `_publish`) before the launch, each element is written
    once, and the load is repeated (volatile, past L1) until no element holds those bits, or gives up
    after SPIN_LIMIT polls as `_sync` does. Else the barrier came before: one load, past L1 when split.
    """
    if TILES.SPLIT and TILES.BARRIER == "data":
        x = _polled_load(
            ptr + rows[:, None] * stride + cols[None, :], row_ok[:, None] & col_ok[None, :], sync
        )
    else:
        CACHE: tl.constexpr = TILES.CACHE
        x = _rows_cols(ptr, rows, cols, stride, row_ok, col_ok, CACHE)
    return x


@triton.jit
def _polled_load(ptrs, mask, sync):
    """tl.load(ptrs), repeated (volatile, past L1) until no element holds the all-ones bits of one not
    yet written (`_shared`), or given up after SPIN_LIMIT polls as `_sync` does."""
    x = tl.load(ptrs, mask=mask, other=0.0, volatile=True)
    left = _unwritten(x)
    if left > 0:
        stuck = sync + tl.num_programs(0) * MAX_PARTS
        polls = left * 0
        while (left > 0) & (polls < SPIN_LIMIT):
            x = tl.load(ptrs, mask=mask, other=0.0, volatile=True)
            left = _unwritten(x)
            polls = _polled(polls, stuck)
        if left > 0:
            tl.atomic_xchg(stuck, 1)
    return x


@triton.jit
def _sync(sync, done, TILES: tl.constexpr):
    """Wait until every program of this block of rows has written its part of step `done` (a count).

    A CTA barrier; with SPLIT also a grid barrier, one of two (TILES.BARRIER), or none ("data"). "flags": each program
    raises its flag in `sync` to `done` (release) and polls its block's flags (acquire) until all
    reach it. "counter": each program adds one to its block's counter (the block's first flag) and,
    unless it came last, polls the counter (acquire) until every program has added its `done`-th
    one. "data": no barrier at all; what other programs wrote is polled where it is read (`_shared`).
    The programs must all be resident: gpu.py launches no more than the GPU's SMs,
    cooperatively (the driver starts them all at once or refuses). After SPIN_LIMIT polls a program
    gives up and raises the last flag of `sync`, and gpu.py raises an error (`gpu.check_barriers`):
    a guard against a bug, never a wrong number; a program that finds the flag up (`_polled`: every
    STUCK_EVERY polls) waits no longer.
    """
    BARRIER: tl.constexpr = TILES.BARRIER
    tl.static_assert(
        (BARRIER == "counter") or (BARRIER == "flags") or (BARRIER == "data"),
        "TILES.BARRIER must be counter, flags or data (gpu.barrier_for resolves auto)",
    )
    tl.debug_barrier()
    if TILES.SPLIT:
        flags = sync + tl.program_id(0) * MAX_PARTS
        stuck = sync + tl.num_programs(0) * MAX_PARTS
        if BARRIER == "counter":
            target = done * tl.num_programs(1)
            seen = tl.atomic_add(flags, 1, sem="acq_rel", scope="gpu") + 1
            polls = seen * 0
            while (seen < target) & (polls < SPIN_LIMIT):
                seen = tl.atomic_add(flags, 0, sem="acquire", scope="gpu")
                polls = _polled(polls, stuck)
            if seen < target:
                tl.atomic_xchg(stuck, 1)
        elif BARRIER == "flags":
            tl.atomic_xchg(flags + tl.program_id(1), done, sem="release", scope="gpu")
            p = tl.arange(0, MAX_PARTS)
            mine = p < tl.num_programs(1)
            seen = tl.min(
                tl.where(mine, tl.atomic_add(flags + p, 0, mask=mine, sem="acquire", scope="gpu"), done)
            )
            polls = seen * 0
            while (seen < done) & (polls < SPIN_LIMIT):
                seen = tl.min(
                    tl.where(mine, tl.atomic_add(flags + p, 0, mask=mine, sem="acquire", scope="gpu"), done)
                )
                polls = _polled(polls, stuck)
            if seen < done:
                tl.atomic_xchg(stuck, 1)
        tl.debug_barrier()


@triton.jit
def _report(sync, gave_up, TILES: tl.constexpr):
    """At a split sweep's end, each program that finds its launch's grid barrier gave up (the last flag
    of `sync`, raised by it or another program) writes 1 into `gave_up`: an int32 in the host's pinned
    memory, which the GPU writes through its mapping, so that gpu.py reads it with no copy and no
    wait (`gpu.check_barriers`); under the counter barrier, then `_release`. Nothing where the sweep
    is not split (its barrier is a CTA's own)."""
    if TILES.SPLIT:
        tl.debug_barrier()  # this program's own give-up, by any of its threads, comes before the look
        stuck = sync + tl.num_programs(0) * MAX_PARTS
        if tl.atomic_add(stuck, 0, sem="relaxed", scope="gpu") != 0:
            tl.store(gave_up, 1)
        if TILES.BARRIER == "counter":
            _release(sync)


@triton.jit
def _release(sync):
    """The counter barrier's end: the last program of a block of rows out (counted in the block's second
    flag, which the counter barrier leaves unused) sets the block's counter and that count back to
    zero. Every program has passed its last barrier by then, so none reads the counter again; the
    next launch on the stream finds zeros, and gpu.py shares one `sync` between launches instead of
    clearing a fresh one for each (`_flags`)."""
    flags = sync + tl.program_id(0) * MAX_PARTS
    out = tl.atomic_add(flags + 1, 1, sem="acq_rel", scope="gpu")
    if out == tl.num_programs(1) - 1:
        tl.atomic_xchg(flags, 0, sem="relaxed", scope="gpu")
        tl.atomic_xchg(flags + 1, 0, sem="relaxed", scope="gpu")


@triton.jit
def write_flag(flag, value):
    """flag[0] = value: gpu.py's check, once a device, that a kernel's store reaches pinned host memory."""
    tl.store(flag, value)


@triton.constexpr_function
def _accumulators(K, most):
    """How many independent partial sums `_dot` splits an inner dimension K into: `most`
    (TILES.ACCUMULATORS), halved until each part is at least 16 deep (tl.dot's least) and K splits
    evenly."""
    A = most
    while A > 1 and (K % A != 0 or K // A < 16):
        A //= 2
    return A


@triton.constexpr_function
def _power_of_two(n):
    """The least power of two ≥ n (a tl.arange's length)."""
    return 1 << (n - 1).bit_length()


@triton.jit
def _dot(x, w, TILES: tl.constexpr):
    """x (M, K) · w (K, N), or w already split as (A, K/A, N) (the resident tile, `_weights`).

    tl.dot accumulates along K in one chain: each multiply-add waits for the one before (the
    compiled sm_90 code: 48 dependent TF32 mma in a forward step at H = 128, tf32x3; 512 dependent
    FMAs a backward step in IEEE float32). With TILES.ACCUMULATORS = A > 1 the product is A
    independent ones over K/A each, as one batched tl.dot, summed at the end: A shorter chains the
    GPU overlaps (6 and 64 deep at A = 8, `python -m bptt.compile_check --chains`), for a step's
    latency, at the cost of a reshape of x.
    """
    K: tl.constexpr = x.shape[1]
    A: tl.constexpr = _accumulators(K, TILES.ACCUMULATORS)
    if len(w.shape) == 3:
        x3 = tl.permute(tl.reshape(x, (x.shape[0], w.shape[0], K // w.shape[0])), (1, 0, 2))
        acc = tl.sum(tl.dot(x3, w, input_precision=TILES.PRECISION), axis=0)
    elif A > 1:
        N: tl.constexpr = w.shape[1]
        x3 = tl.permute(tl.reshape(x, (x.shape[0], A, K // A)), (1, 0, 2))
        acc = tl.sum(tl.dot(x3, tl.reshape(w, (A, K // A, N)), input_precision=TILES.PRECISION), axis=0)
    else:
        acc = tl.dot(x, w, input_precision=TILES.PRECISION)
    return acc


@triton.jit
def _weight_tile(w_hh, ks, k_ok, j0, G: tl.constexpr, H: tl.constexpr, BLOCK_H: tl.constexpr):
    """W_hhᵀ at inner positions `ks` and units j0 … j0 + BLOCK_H: the one gate block (G = 1) as
    (len(ks), BLOCK_H), element [κ, j] = W_hh[j0 + j, κ]; else every gate block (up to 4) as
    (len(ks), 4·BLOCK_H), element [κ, c] = W_hh[k·H + j0 + j, κ] for column c = 4·j + k, zeros for
    blocks k ≥ G."""
    if G == 1:
        cols = j0 + tl.arange(0, BLOCK_H)
        tile = tl.load(
            w_hh + cols[None, :] * H + ks[:, None], mask=k_ok[:, None] & (cols < H)[None, :], other=0.0
        )
    else:
        c = tl.arange(0, 4 * BLOCK_H)
        unit, k = j0 + c // 4, c % 4
        c_ok = (unit < H) & (k < G)
        tile = tl.load(
            w_hh + (k * H + unit)[None, :] * H + ks[:, None], mask=k_ok[:, None] & c_ok[None, :], other=0.0
        )
    return tile


@triton.jit
def _weights(w_hh, j0, G: tl.constexpr, H: tl.constexpr, TILES: tl.constexpr):
    """What `_product` multiplies by, loaded once a sweep: with TILES.RESIDENT the whole W_hhᵀ tile of
    the program's units (HP rows), kept on chip across steps; else W_hh itself, read chunk by chunk
    every step."""
    if TILES.RESIDENT:
        ks = tl.arange(0, TILES.HP)
        w = _weight_tile(w_hh, ks, ks < H, j0, G, H, TILES.BLOCK_H)
        A: tl.constexpr = _accumulators(TILES.HP, TILES.ACCUMULATORS)
        if A > 1:  # split for `_dot` once a sweep, not every step
            w = tl.reshape(w, (A, TILES.HP // A, w.shape[1]))
    else:
        w = w_hh
    return w


@triton.jit
def _product(h_prev, w, rows, row_ok, j0, sync, G: tl.constexpr, H: tl.constexpr, TILES: tl.constexpr):
    """W_hh h_{t−1} at units j0 … j0 + BLOCK_H of every gate block, as one product laid out as
    `_weight_tile`'s columns. `w` is `_weights`: the resident tile (one product over all of h_{t−1})
    or W_hh (chunk by chunk)."""
    BLOCK_B: tl.constexpr = TILES.BLOCK_B
    BLOCK_H: tl.constexpr = TILES.BLOCK_H
    WIDTH: tl.constexpr = BLOCK_H if G == 1 else 4 * BLOCK_H
    if TILES.RESIDENT:
        ks = tl.arange(0, TILES.HP)
        hp = _shared(h_prev, rows, ks, H, row_ok, ks < H, sync, TILES)  # (BLOCK_B, HP)
        acc = _dot(hp, w, TILES)
    else:
        acc = tl.zeros((BLOCK_B, WIDTH), dtype=h_prev.dtype.element_ty)
        for k0 in range(0, H, TILES.BLOCK_K):
            ks = k0 + tl.arange(0, TILES.BLOCK_K)
            k_ok = ks < H
            hp = _shared(h_prev, rows, ks, H, row_ok, k_ok, sync, TILES)  # (BLOCK_B, BLOCK_K)
            acc += _dot(hp, _weight_tile(w, ks, k_ok, j0, G, H, BLOCK_H), TILES)
    return acc


@triton.jit
def _gates_product(h_prev, w, rows, row_ok, j0, sync, G: tl.constexpr, H: tl.constexpr, TILES: tl.constexpr):
    """W_hh h_{t−1} at units j0 … j0 + BLOCK_H of every gate block (up to 4): `_product`'s column
    c = 4·j + k is unit j0 + j of gate block k, so one tl.dot per chunk of h_{t−1} serves all
    gates; blocks k ≥ G come back as zeros."""
    BLOCK_B: tl.constexpr = TILES.BLOCK_B
    BLOCK_H: tl.constexpr = TILES.BLOCK_H
    acc = _product(h_prev, w, rows, row_ok, j0, sync, G, H, TILES)
    # (BLOCK_B, BLOCK_H, a, b) with k = 2a + b: split b, then a
    even, odd = tl.split(tl.reshape(acc, (BLOCK_B, BLOCK_H, 2, 2)))
    z0, z2 = tl.split(even)
    z1, z3 = tl.split(odd)
    return z0, z1, z2, z3


@triton.jit
def _pick(zs, K: tl.constexpr):
    """Gate block K of `_gates_product`'s four (a placeholder for K < 0, never stored)."""
    if K == 0:
        v = zs[0]
    elif K == 1:
        v = zs[1]
    elif K == 2:
        v = zs[2]
    else:
        v = zs[3]
    return v


@triton.jit
def _by_gate(zs, V: tl.constexpr):
    """`_gates_product`'s blocks as (z_i, z_f, z_g, z_o) of the LSTM variant V."""
    return _pick(zs, V.K_I), _pick(zs, V.K_F), _pick(zs, V.K_G), _pick(zs, V.K_O)


@triton.jit
def _back_tile(
    src, rows, row_ok, w_hh, cols, col_ok, sync, KW: tl.constexpr, H: tl.constexpr, TILES: tl.constexpr
):
    """src[rows] (·, KW) · W_hh[:, cols]: one tile of ∂L/∂h_{t−1} = W_hhᵀ ∂L/∂gh_t, chunk by chunk."""
    BLOCK_B: tl.constexpr = TILES.BLOCK_B
    BLOCK_H: tl.constexpr = TILES.BLOCK_H
    acc = tl.zeros((BLOCK_B, BLOCK_H), dtype=src.dtype.element_ty)
    for k0 in range(0, KW, TILES.BLOCK_K):
        ks = k0 + tl.arange(0, TILES.BLOCK_K)
        k_ok = ks < KW
        a = _shared(src, rows, ks, KW, row_ok, k_ok, sync, TILES)
        w = _rows_cols(w_hh, ks, cols, H, k_ok, col_ok, "")  # W_hh[k, j]
        acc += _dot(a, w, TILES)
    return acc


@triton.jit
def _back_product(
    src,
    rows,
    row_ok,
    w_hh,
    add,
    dst,
    sync,
    done,
    KW: tl.constexpr,
    H: tl.constexpr,
    ADD: tl.constexpr,
    TILES: tl.constexpr,
):
    """∂L/∂h_{t−1} = W_hhᵀ ∂L/∂gh_t (+ `add`): dst[rows] = src[rows] (·, KW) · W_hh (KW, H), tile by tile
    over the program's units. W_hh is read from L2 every step: kept on chip instead, as one
    (G·H, BLOCK_H) tile or G tiles of (H, BLOCK_H) a program, it compiled for sm_90 to 1.7–16 KB of
    local memory per thread (spilled registers) at H = 128 to 256.

    After a barrier (or polling, `_shared`): what the pointwise step wrote (every program's part of
    the `done`-th step) is complete before the product reads it. ∂L/∂h_{t−1} is the program's own
    units, which only it reads at step t−1.
    """
    _sync(sync, done, TILES)
    lo = tl.program_id(1) * TILES.UNITS  # the first unit of this program's share
    for j in range(0, TILES.UNITS, TILES.BLOCK_H):
        j0 = lo + j
        cols = j0 + tl.arange(0, TILES.BLOCK_H)
        col_ok = cols < H
        acc = _back_tile(src, rows, row_ok, w_hh, cols, col_ok, sync, KW, H, TILES)
        if ADD:
            acc += _rows_cols(add, rows, cols, H, row_ok, col_ok, "")
        tl.store(dst + rows[:, None] * H + cols[None, :], acc, mask=row_ok[:, None] & col_ok[None, :])
    tl.debug_barrier()


@triton.jit
def _lstm_forward_tile(
    gx,
    w,
    peep,
    b_hh,
    h_buf,
    c_buf,
    gates_buf,
    out,
    h_n,
    c_n,
    T,
    B,
    H: tl.constexpr,
    sync,
    rows,
    row_ok,
    lo,
    V: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    REVERSE: tl.constexpr,
    TILES: tl.constexpr,
):
    """`lstm_forward_sweep` where a program computes one tile of units: c_{t−1} is carried on chip
    instead of read back from the tape, and W_ih x_{t+1} + b is loaded while step t runs, so a step
    waits on h_{t−1} alone."""
    cols, col_ok, ok, here, at = _tile(rows, row_ok, lo, H, V.G, TILES.BLOCK_H)
    t, prev, _now = _position(T * 0, T, REVERSE, False)
    cp = tl.load(c_buf + prev * B * H + here, mask=ok, other=0.0)
    x_i, x_f, x_g, x_o = _gates_in(gx + t * B * V.G * H, b_hh, at, cols, col_ok, H, ok, V, HAS_BIAS)
    s = T * 0
    while s < T:
        t, prev, now = _position(s, T, REVERSE, False)
        t_next, _, _ = _position(s + 1, T, REVERSE, False)
        # W_ih x_{t+1} + b, in flight during this step (none after the last)
        n_i, n_f, n_g, n_o = _gates_in(
            gx + t_next * B * V.G * H, b_hh, at, cols, col_ok, H, ok & (s + 1 < T), V, HAS_BIAS
        )
        # z_t = W_ih x_t + b_ih + W_hh h_{t−1} + b_hh, all gates in one product
        zs = _gates_product(h_buf + prev * B * H, w, rows, row_ok, lo, sync, V.G, H, TILES)
        z = _plus(_by_gate(zs, V), (x_i, x_f, x_g, x_o))
        gates_t, c_t, h_t = gates_buf + now * B * V.G * H, c_buf + now * B * H, h_buf + now * B * H
        cp, h = _lstm_forward(z, cp, peep, cols, col_ok, gates_t, c_t, h_t, at, here, ok, H, V)
        tl.store(out + t * B * H + here, h, mask=ok)  # the output: a copy of h_t
        x_i, x_f, x_g, x_o = n_i, n_f, n_g, n_o
        _sync(sync, s + 1, TILES)  # h_t is complete (every program's part) before step t+1 reads it
        s += 1


@triton.jit
def lstm_forward_sweep(
    gx,
    w_hh,
    w_ci,
    w_cf,
    w_co,
    b_hh,
    h_buf,
    c_buf,
    gates_buf,
    out,
    h_n,
    c_n,
    T,
    B,
    H: tl.constexpr,
    sync,
    gave_up,
    V: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    REVERSE: tl.constexpr,
    TILES: tl.constexpr,
):
    """gx = W_ih x + b_ih for every step; b_hh (HAS_BIAS) is added here, as the GRU's is."""
    rows, row_ok, lo = _owned(B, TILES)
    peep = (w_ci, w_cf, w_co)
    w = _weights(w_hh, lo, V.G, H, TILES)
    if TILES.UNITS == TILES.BLOCK_H:  # one tile a program (split): c_t stays on chip, gx_{t+1} comes early
        _lstm_forward_tile(
            gx,
            w,
            peep,
            b_hh,
            h_buf,
            c_buf,
            gates_buf,
            out,
            h_n,
            c_n,
            T,
            B,
            H,
            sync,
            rows,
            row_ok,
            lo,
            V,
            HAS_BIAS,
            REVERSE,
            TILES,
        )
        _finals(h_buf, c_buf, h_n, c_n, rows, row_ok, lo, T, B, H, REVERSE, TILES)
        _report(sync, gave_up, TILES)
        return
    s = T * 0
    while s < T:  # a while loop: T stays a run-time value (and Triton's interpreter accepts it)
        # slots of the (T+1, B, ·) buffers: the state before step t and after it (engine/tape.py)
        t, prev, now = _position(s, T, REVERSE, False)
        gx_t, gates_t = gx + t * B * V.G * H, gates_buf + now * B * V.G * H
        h_prev, h_t, c_prev, c_t = (
            h_buf + prev * B * H,
            h_buf + now * B * H,
            c_buf + prev * B * H,
            c_buf + now * B * H,
        )
        for j in range(0, TILES.UNITS, TILES.BLOCK_H):
            j0 = lo + j
            cols, col_ok, ok, here, at = _tile(rows, row_ok, j0, H, V.G, TILES.BLOCK_H)
            # z_t = W_ih x_t + b_ih + W_hh h_{t−1} + b_hh, all gates in one product
            zs = _gates_product(h_prev, w, rows, row_ok, j0, sync, V.G, H, TILES)
            z = _plus(_by_gate(zs, V), _gates_in(gx_t, b_hh, at, cols, col_ok, H, ok, V, HAS_BIAS))
            cp = tl.load(c_prev + here, mask=ok, other=0.0)
            _cc, h = _lstm_forward(z, cp, peep, cols, col_ok, gates_t, c_t, h_t, at, here, ok, H, V)
            tl.store(out + t * B * H + here, h, mask=ok)  # the output: a copy of h_t
        _sync(sync, s + 1, TILES)  # h_t is complete (every program's part) before step t+1 reads it
        s += 1
    _finals(h_buf, c_buf, h_n, c_n, rows, row_ok, lo, T, B, H, REVERSE, TILES)
    _report(sync, gave_up, TILES)


@triton.jit
def _of_block(dz, K: tl.constexpr, V: tl.constexpr):
    """Of (∂L/∂z_i, z_f, z_g, z_o), the one in gate block K of the LSTM variant V (`_pick`'s inverse);
    zeros for a block the variant lacks."""
    if V.K_I == K:
        v = dz[0]
    elif V.K_F == K:
        v = dz[1]
    elif V.K_G == K:
        v = dz[2]
    elif V.K_O == K:
        v = dz[3]
    else:
        v = dz[0] * 0.0
    return v


@triton.jit
def _by_block(dz, V: tl.constexpr):
    """∂L/∂z_t = (∂L/∂z_i, z_f, z_g, z_o) of the LSTM variant V as gate blocks 0 … 3 (`_from_partials`)."""
    return _of_block(dz, 0, V), _of_block(dz, 1, V), _of_block(dz, 2, V), _of_block(dz, 3, V)


@triton.jit
def _from_partials(
    dz,
    w,
    part,
    rows,
    row_ok,
    cols,
    col_ok,
    s,
    slots,
    B,
    H: tl.constexpr,
    sync,
    TILES: tl.constexpr,
):
    """∂L/∂h_{t−1} = W_hhᵀ ∂L/∂gh_t at the program's units, as the sum of every program's part: each
    multiplies its own ∂L/∂gh_t (its units; `dz`: gate blocks 0 … 3, zeros for a block the cell lacks)
    by its own rows of W_hh, kept on chip
    (`w`: `_weight_tile` transposed), into a partial sum over all H units, writes it to step s's slot of `part`,
    and adds up the ones the block's programs wrote for its units (after the barrier, or polled).

    Against reading all of ∂L/∂gh_t (G·H wide) and W_hh's columns from L2 every step (`_back_tile`),
    a program reads H/units partial tiles of its own units, and the product's inner dimension is
    G·BLOCK_H instead of G·H.
    """
    BLOCK_B: tl.constexpr = TILES.BLOCK_B
    BLOCK_H: tl.constexpr = TILES.BLOCK_H
    # columns c = 4·j + k, as `w`'s rows (`_weight_tile`'s columns): block k = 2a + b of unit j at (j, a, b)
    even = tl.join(dz[0], dz[2])
    odd = tl.join(dz[1], dz[3])
    dzc = tl.reshape(tl.join(even, odd), (BLOCK_B, 4 * BLOCK_H))
    partial = _dot(dzc, w, TILES)  # (BLOCK_B, HP)
    slot = part + (s % slots) * tl.num_programs(1) * B * H
    ks = tl.arange(0, TILES.HP)
    mine = slot + tl.program_id(1) * B * H + rows[:, None] * H + ks[None, :]
    tl.store(mine, _publish(partial), mask=row_ok[:, None] & (ks < H)[None, :])
    _sync(sync, s + 1, TILES)
    # every program's part for this program's units in one load, (BLOCK_B, BLOCK_H, programs), the
    # programs last so that each thread sums its own (sm_90: 16 loads in a row, no CTA barrier; the
    # programs first spilled 232 B a thread): one round trip to L2 a step (or one poll of all of them)
    # where a loop over the programs took two (unrolled by 4) or eight (polled one after another).
    # On an H200 at (B, T, I, H) = (32, 200, 2, 128) the backward took 0.84 ms against 0.92.
    PARTS: tl.constexpr = (H + TILES.UNITS - 1) // TILES.UNITS  # the block's programs (gpu.bind)
    p = tl.arange(0, _power_of_two(PARTS))
    ptrs = slot + p[None, None, :] * B * H + rows[:, None, None] * H + cols[None, :, None]
    mask = (p < PARTS)[None, None, :] & row_ok[:, None, None] & col_ok[None, :, None]
    if TILES.SPLIT and TILES.BARRIER == "data":
        parts = _polled_load(ptrs, mask, sync)
    else:
        parts = tl.load(ptrs, mask=mask, other=0.0, cache_modifier=TILES.CACHE)
    return tl.sum(parts, axis=2)


@triton.jit
def _lstm_backward_tile(
    grad_out,
    dh_n,
    dc_n,
    dh_next,
    dc_carry,
    w_hh,
    peep,
    c_buf,
    gates_buf,
    dh,
    dc,
    dgx,
    part,
    slots,
    T,
    B,
    H: tl.constexpr,
    sync,
    rows,
    row_ok,
    lo,
    V: tl.constexpr,
    REVERSE: tl.constexpr,
    TILES: tl.constexpr,
    HAS_GRAD_N: tl.constexpr,
):
    """`lstm_backward_sweep` where a program computes one tile of units: ∂L/∂h_t via step t+1 and
    ∂L/∂c_t stay on chip (written back once, at the end), and step t−1's gates, c and ∂ℓ/∂h are
    loaded while step t runs, so a step waits on ∂L/∂gh_t alone (or, TILES.EXCHANGE "partials", on
    the partial sums of ∂L/∂h_{t−1} for its units, `_from_partials`)."""
    cols, col_ok, ok, here, at = _tile(rows, row_ok, lo, H, V.G, TILES.BLOCK_H)
    if TILES.EXCHANGE == "partials":
        ks = tl.arange(0, TILES.HP)  # W_hh's rows of the program's units, on chip for the sweep
        w = tl.trans(_weight_tile(w_hh, ks, ks < H, lo, V.G, H, TILES.BLOCK_H))  # (4·BLOCK_H, HP)
    else:
        w = w_hh
    dh_in = _grad_n(dh_n, here, ok, dh_next, HAS_GRAD_N)
    dc_in = _grad_n(dc_n, here, ok, dc_carry, HAS_GRAD_N)
    t, prev, now = _position(T * 0, T, REVERSE, True)
    i, f, g, o = _load_gates(gates_buf + now * B * V.G * H, at, H, ok, V)
    cc = tl.load(c_buf + now * B * H + here, mask=ok, other=0.0)
    cp = tl.load(c_buf + prev * B * H + here, mask=ok, other=0.0)
    go = tl.load(grad_out + t * B * H + here, mask=ok, other=0.0)
    s = T * 0
    while s < T:
        t, prev, now = _position(s, T, REVERSE, True)
        # the next step's tape, in flight during this one (none after the last)
        t1, prev1, now1 = _position(s + 1, T, REVERSE, True)
        ok1 = ok & (s + 1 < T)
        n_i, n_f, n_g, n_o = _load_gates(gates_buf + now1 * B * V.G * H, at, H, ok1, V)
        n_cc = tl.load(c_buf + now1 * B * H + here, mask=ok1, other=0.0)
        n_cp = tl.load(c_buf + prev1 * B * H + here, mask=ok1, other=0.0)
        n_go = tl.load(grad_out + t1 * B * H + here, mask=ok1, other=0.0)
        dm = go + dh_in  # ∂L/∂h_t = ∂ℓ/∂h_t + ∂L/∂h_t via step t+1
        tl.store(dh + t * B * H + here, dm, mask=ok)
        dgx_t = dgx + t * B * V.G * H
        dc_in, dz = _lstm_step_back(
            dm,
            dc_in,
            (cp, cp, cp),
            cp,
            cc,
            (i, f, g, o),
            peep,
            cols,
            col_ok,
            dgx_t,
            dc + t * B * H,
            at,
            here,
            ok,
            H,
            V,
            False,
        )
        if TILES.EXCHANGE == "partials":
            blocks = _by_block(dz, V)
            dh_in = _from_partials(blocks, w, part, rows, row_ok, cols, col_ok, s, slots, B, H, sync, TILES)
        else:
            # ∂L/∂h_{t−1} = W_hhᵀ ∂L/∂gh_t, once every program's part of ∂L/∂gh_t is written
            _sync(sync, s + 1, TILES)
            dh_in = _back_tile(dgx_t, rows, row_ok, w_hh, cols, col_ok, sync, V.G * H, H, TILES)
        tl.debug_barrier()
        i, f, g, o, cc, cp, go = n_i, n_f, n_g, n_o, n_cc, n_cp, n_go
        s += 1
    tl.store(dh_next + here, dh_in, mask=ok)  # ∂L/∂h_0 and ∂L/∂c_0, for the layer below and hx
    tl.store(dc_carry + here, dc_in, mask=ok)


@triton.jit
def lstm_backward_sweep(
    grad_out,
    dh_n,
    dc_n,
    dh_next,
    dc_carry,
    w_hh,
    w_ci,
    w_cf,
    w_co,
    c_buf,
    gates_buf,
    dh,
    dc,
    dgx,
    T,
    B,
    H: tl.constexpr,
    sync,
    gave_up,
    part,
    slots,
    V: tl.constexpr,
    REVERSE: tl.constexpr,
    TILES: tl.constexpr,
    HAS_GRAD_N: tl.constexpr,
):
    """`part`: (slots, programs a block, B, H), the partial sums of ∂L/∂h_{t−1} the programs exchange
    under TILES.EXCHANGE "partials" (step s in slot s mod `slots`); unread otherwise."""
    rows, row_ok, lo = _owned(B, TILES)
    peep = (w_ci, w_cf, w_co)
    if TILES.UNITS == TILES.BLOCK_H:  # one tile a program (split): the carries stay on chip
        _lstm_backward_tile(
            grad_out,
            dh_n,
            dc_n,
            dh_next,
            dc_carry,
            w_hh,
            peep,
            c_buf,
            gates_buf,
            dh,
            dc,
            dgx,
            part,
            slots,
            T,
            B,
            H,
            sync,
            rows,
            row_ok,
            lo,
            V,
            REVERSE,
            TILES,
            HAS_GRAD_N,
        )
        _report(sync, gave_up, TILES)
        return
    _carry_in(dh_n, dh_next, rows, row_ok, lo, H, TILES, HAS_GRAD_N)
    _carry_in(dc_n, dc_carry, rows, row_ok, lo, H, TILES, HAS_GRAD_N)
    s = T * 0
    while s < T:
        # backward visits the steps in the reverse of the forward order
        t, prev, now = _position(s, T, REVERSE, True)
        gates_t, dgx_t = gates_buf + now * B * V.G * H, dgx + t * B * V.G * H
        c_prev, c_t, dc_t = c_buf + prev * B * H, c_buf + now * B * H, dc + t * B * H
        for j in range(0, TILES.UNITS, TILES.BLOCK_H):
            j0 = lo + j
            cols, col_ok, ok, here, at = _tile(rows, row_ok, j0, H, V.G, TILES.BLOCK_H)
            dm = _incoming(grad_out + t * B * H, dh_next, dh + t * B * H, here, ok)
            cp = tl.load(c_prev + here, mask=ok, other=0.0)
            dc_in = tl.load(dc_carry + here, mask=ok, other=0.0)
            da = (cp, cp, cp)
            _lstm_backward(
                dm,
                dc_in,
                da,
                cp,
                peep,
                cols,
                col_ok,
                gates_t,
                c_t,
                dgx_t,
                dc_t,
                dc_carry,
                at,
                here,
                ok,
                H,
                V,
                False,
            )
        _back_product(dgx_t, rows, row_ok, w_hh, dh_next, dh_next, sync, s + 1, V.G * H, H, False, TILES)
        s += 1
    _report(sync, gave_up, TILES)


# -- persistent GRU and Elman RNN sweeps ----------------------------------------------------------------


@triton.jit
def gru_forward_sweep(
    gx,
    w_hh,
    b_hh,
    h_buf,
    gates_buf,
    ghn_buf,
    out,
    h_n,
    T,
    B,
    H: tl.constexpr,
    sync,
    gave_up,
    HAS_BIAS: tl.constexpr,
    REVERSE: tl.constexpr,
    TILES: tl.constexpr,
):
    rows, row_ok, lo = _owned(B, TILES)
    w = _weights(w_hh, lo, 3, H, TILES)
    s = T * 0
    while s < T:
        t, prev, now = _position(s, T, REVERSE, False)
        gx_t, gates_t, ghn_t = gx + t * B * 3 * H, gates_buf + now * B * 3 * H, ghn_buf + t * B * H
        h_prev, h_t = h_buf + prev * B * H, h_buf + now * B * H
        for j in range(0, TILES.UNITS, TILES.BLOCK_H):
            j0 = lo + j
            cols, col_ok, ok, here, at = _tile(rows, row_ok, j0, H, 3, TILES.BLOCK_H)
            # gh_t = W_hh h_{t−1} + b_hh (b_hn stays inside r_t ⊙ (·)), all gates in one product
            gh_r, gh_z, gh_n, _ = _gates_product(h_prev, w, rows, row_ok, j0, sync, 3, H, TILES)
            if HAS_BIAS:
                b_r, b_z, b_n = _load3(b_hh, cols, H, col_ok)
                gh_r, gh_z, gh_n = gh_r + b_r[None, :], gh_z + b_z[None, :], gh_n + b_n[None, :]
            h = _gru_forward(gx_t, (gh_r, gh_z, gh_n), h_prev, gates_t, ghn_t, h_t, at, here, ok, H)
            tl.store(out + t * B * H + here, h, mask=ok)  # the output: a copy of h_t
        _sync(sync, s + 1, TILES)  # h_t is complete (every program's part) before step t+1 reads it
        s += 1
    _finals(h_buf, None, h_n, None, rows, row_ok, lo, T, B, H, REVERSE, TILES)
    _report(sync, gave_up, TILES)


@triton.jit
def _gru_backward_tile(
    grad_out,
    dh_n,
    dh_next,
    w_hh,
    h_buf,
    gates_buf,
    ghn_buf,
    dh,
    dgx,
    dgh,
    part,
    slots,
    T,
    B,
    H: tl.constexpr,
    sync,
    rows,
    row_ok,
    lo,
    REVERSE: tl.constexpr,
    TILES: tl.constexpr,
    HAS_GRAD_N: tl.constexpr,
):
    """`gru_backward_sweep` where a program computes one tile of units and the programs exchange partial
    sums of ∂L/∂h_{t−1} (TILES.EXCHANGE "partials", as `_lstm_backward_tile`): W_hh's rows of its units
    on chip for the sweep, ∂L/∂h_t via step t+1 and the direct path on chip, and step t−1's gates,
    h_{t−2}, W_hn h + b_hn and ∂ℓ/∂h loaded while step t runs."""
    cols, col_ok, ok, here, at = _tile(rows, row_ok, lo, H, 3, TILES.BLOCK_H)
    ks = tl.arange(0, TILES.HP)  # W_hh's rows of the program's units: (4·BLOCK_H, HP), block 3 zeros
    w = tl.trans(_weight_tile(w_hh, ks, ks < H, lo, 3, H, TILES.BLOCK_H))
    dh_in = _grad_n(dh_n, here, ok, dh_next, HAS_GRAD_N)
    t, prev, now = _position(T * 0, T, REVERSE, True)
    r, z, nn = _load3(gates_buf + now * B * 3 * H, at, H, ok)
    hp = tl.load(h_buf + prev * B * H + here, mask=ok, other=0.0)
    gh_n = tl.load(ghn_buf + t * B * H + here, mask=ok, other=0.0)
    go = tl.load(grad_out + t * B * H + here, mask=ok, other=0.0)
    s = T * 0
    while s < T:
        t, prev, now = _position(s, T, REVERSE, True)
        # the next step's tape, in flight during this one (none after the last)
        t1, prev1, now1 = _position(s + 1, T, REVERSE, True)
        ok1 = ok & (s + 1 < T)
        n_r, n_z, n_nn = _load3(gates_buf + now1 * B * 3 * H, at, H, ok1)
        n_hp = tl.load(h_buf + prev1 * B * H + here, mask=ok1, other=0.0)
        n_gh_n = tl.load(ghn_buf + t1 * B * H + here, mask=ok1, other=0.0)
        n_go = tl.load(grad_out + t1 * B * H + here, mask=ok1, other=0.0)
        d = go + dh_in  # ∂L/∂h_t = ∂ℓ/∂h_t + ∂L/∂h_t via step t+1
        tl.store(dh + t * B * H + here, d, mask=ok)
        dz_r, dz_z, dz_n, dgh_n, direct = _gru_cell_backward(d, r, z, nn, hp, gh_n)
        _store3(dgx + t * B * 3 * H, at, H, dz_r, dz_z, dz_n, ok)
        _store3(dgh + t * B * 3 * H, at, H, dz_r, dz_z, dgh_n, ok)
        # ∂L/∂h_{t−1} = W_hhᵀ ∂L/∂gh_t + z_t ⊙ ∂L/∂h_t
        blocks = (dz_r, dz_z, dgh_n, dz_r * 0.0)
        dh_in = (
            _from_partials(blocks, w, part, rows, row_ok, cols, col_ok, s, slots, B, H, sync, TILES) + direct
        )
        tl.debug_barrier()
        r, z, nn, hp, gh_n, go = n_r, n_z, n_nn, n_hp, n_gh_n, n_go
        s += 1
    tl.store(dh_next + here, dh_in, mask=ok)  # ∂L/∂h_0, for the layer below and hx


@triton.jit
def gru_backward_sweep(
    grad_out,
    dh_n,
    dh_next,
    direct,
    w_hh,
    h_buf,
    gates_buf,
    ghn_buf,
    dh,
    dgx,
    dgh,
    T,
    B,
    H: tl.constexpr,
    sync,
    gave_up,
    part,
    slots,
    REVERSE: tl.constexpr,
    TILES: tl.constexpr,
    HAS_GRAD_N: tl.constexpr,
):
    """`part`, `slots`: as `lstm_backward_sweep`'s, read under TILES.EXCHANGE "partials" only."""
    rows, row_ok, lo = _owned(B, TILES)
    if TILES.EXCHANGE == "partials":  # one tile a program (gpu.bind), W_hh's rows on chip
        _gru_backward_tile(
            grad_out,
            dh_n,
            dh_next,
            w_hh,
            h_buf,
            gates_buf,
            ghn_buf,
            dh,
            dgx,
            dgh,
            part,
            slots,
            T,
            B,
            H,
            sync,
            rows,
            row_ok,
            lo,
            REVERSE,
            TILES,
            HAS_GRAD_N,
        )
        _report(sync, gave_up, TILES)
        return
    _carry_in(dh_n, dh_next, rows, row_ok, lo, H, TILES, HAS_GRAD_N)
    s = T * 0
    while s < T:
        t, prev, now = _position(s, T, REVERSE, True)
        gates_t, dgx_t, dgh_t = gates_buf + now * B * 3 * H, dgx + t * B * 3 * H, dgh + t * B * 3 * H
        h_prev, ghn_t = h_buf + prev * B * H, ghn_buf + t * B * H
        for j in range(0, TILES.UNITS, TILES.BLOCK_H):
            j0 = lo + j
            _cols, _col_ok, ok, here, at = _tile(rows, row_ok, j0, H, 3, TILES.BLOCK_H)
            d = _incoming(grad_out + t * B * H, dh_next, dh + t * B * H, here, ok)
            _gru_backward(d, gates_t, h_prev, ghn_t, dgx_t, dgh_t, direct, at, here, ok, H)
        # ∂L/∂h_{t−1} = W_hhᵀ ∂L/∂gh_t + z_t ⊙ ∂L/∂h_t
        _back_product(dgh_t, rows, row_ok, w_hh, direct, dh_next, sync, s + 1, 3 * H, H, True, TILES)
        s += 1
    _report(sync, gave_up, TILES)


@triton.jit
def rnn_forward_sweep(
    gx,
    w_hh,
    b_hh,
    h_buf,
    out,
    h_n,
    T,
    B,
    H: tl.constexpr,
    sync,
    gave_up,
    ACT: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    REVERSE: tl.constexpr,
    TILES: tl.constexpr,
):
    """gx = W_ih x + b_ih for every step; b_hh (HAS_BIAS) is added here."""
    rows, row_ok, lo = _owned(B, TILES)
    w = _weights(w_hh, lo, 1, H, TILES)
    s = T * 0
    while s < T:
        t, prev, now = _position(s, T, REVERSE, False)
        for j in range(0, TILES.UNITS, TILES.BLOCK_H):
            j0 = lo + j
            cols, col_ok, ok, here, _at = _tile(rows, row_ok, j0, H, 1, TILES.BLOCK_H)
            # z_t = W_ih x_t + b_ih + W_hh h_{t−1} + b_hh
            acc = _product(h_buf + prev * B * H, w, rows, row_ok, j0, sync, 1, H, TILES)
            z = acc + tl.load(gx + t * B * H + here, mask=ok, other=0.0)
            if HAS_BIAS:
                z += tl.load(b_hh + cols, mask=col_ok, other=0.0)[None, :]
            h = _publish(_activate(z, ACT))  # h_t = a(z_t)
            tl.store(h_buf + now * B * H + here, h, mask=ok)
            tl.store(out + t * B * H + here, h, mask=ok)  # the output: a copy of h_t
        _sync(sync, s + 1, TILES)  # h_t is complete (every program's part) before step t+1 reads it
        s += 1
    _finals(h_buf, None, h_n, None, rows, row_ok, lo, T, B, H, REVERSE, TILES)
    _report(sync, gave_up, TILES)


@triton.jit
def rnn_backward_sweep(
    grad_out,
    dh_n,
    dh_next,
    w_hh,
    h_buf,
    dh,
    dgx,
    T,
    B,
    H: tl.constexpr,
    sync,
    gave_up,
    ACT: tl.constexpr,
    REVERSE: tl.constexpr,
    TILES: tl.constexpr,
    HAS_GRAD_N: tl.constexpr,
):
    rows, row_ok, lo = _owned(B, TILES)
    _carry_in(dh_n, dh_next, rows, row_ok, lo, H, TILES, HAS_GRAD_N)
    s = T * 0
    while s < T:
        t, _prev, now = _position(s, T, REVERSE, True)
        for j in range(0, TILES.UNITS, TILES.BLOCK_H):
            j0 = lo + j
            _cols, _col_ok, ok, here, _at = _tile(rows, row_ok, j0, H, 1, TILES.BLOCK_H)
            d = _incoming(grad_out + t * B * H, dh_next, dh + t * B * H, here, ok)
            _rnn_backward(d, h_buf + now * B * H, dgx + t * B * H, here, ok, ACT)
        _back_product(dgx + t * B * H, rows, row_ok, w_hh, dh_next, dh_next, sync, s + 1, H, H, False, TILES)
        s += 1
    _report(sync, gave_up, TILES)
