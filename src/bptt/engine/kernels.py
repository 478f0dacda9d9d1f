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

The LSTM kernels serve every variant: which gates exist and where their blocks sit (K_I, K_F, K_G, K_O,
−1 for none), peepholes, CIFG's coupling and the two activations are compile-time constants, so each
variant compiles to straight-line code. FGR's gate recurrence and the projection are matmuls around
the kernels (engine/gpu.py).
"""

from __future__ import annotations

import triton
import triton.language as tl

BLOCK = 256  # elements of one step per program


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


# -- Elman RNN ---------------------------------------------------------------------------------------


@triton.jit
def rnn_forward_step(gx, gh, h, n, ACT: tl.constexpr, BLOCK: tl.constexpr):
    e = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = e < n
    z = tl.load(gx + e, mask=mask) + tl.load(gh + e, mask=mask)  # z_t = W_ih x_t + b + W_hh h_{t−1}
    tl.store(h + e, _activate(z, ACT), mask=mask)  # h_t = a(z_t)


@triton.jit
def rnn_backward_step(grad_out, dh_next, h, dh, dgx, n, ACT: tl.constexpr, BLOCK: tl.constexpr):
    e = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = e < n
    # ∂L/∂h_t = ∂ℓ/∂h_t + ∂L/∂h_t via step t+1
    d = tl.load(grad_out + e, mask=mask) + tl.load(dh_next + e, mask=mask)
    tl.store(dh + e, d, mask=mask)
    a_grad = _activation_grad(tl.load(h + e, mask=mask), ACT)
    tl.store(dgx + e, d * a_grad, mask=mask)  # ∂L/∂z_t = ∂L/∂h_t ⊙ a'(z_t)


# -- GRU ---------------------------------------------------------------------------------------------


@triton.jit
def _gru_cell(gx_r, gx_z, gx_n, gh_r, gh_z, gh_n, hp):
    """One GRU step from the input and recurrent products (b_hh inside gh): (r, z, n, h_t)."""
    r = _sigmoid(gx_r + gh_r)  # r_t = σ(W_ir x_t + b_ir + W_hr h_{t−1} + b_hr)
    z = _sigmoid(gx_z + gh_z)  # z_t = σ(W_iz x_t + b_iz + W_hz h_{t−1} + b_hz)
    nn = _tanh(gx_n + r * gh_n)  # n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_{t−1} + b_hn))
    return r, z, nn, nn + z * (hp - nn)  # h_t = n_t + z_t ⊙ (h_{t−1} − n_t)


@triton.jit
def _gru_cell_backward(d, r, z, nn, hp, gh_n):
    """One GRU step back from ∂L/∂h_t: (∂L/∂z_r, ∂L/∂z_z, ∂L/∂z_n)."""
    dz_z = d * (hp - nn) * z * (1.0 - z)  # ∂L/∂z_z = ∂L/∂h_t ⊙ (h_{t−1} − n_t) ⊙ σ'
    dz_n = d * (1.0 - z) * (1.0 - nn * nn)  # ∂L/∂z_n = ∂L/∂h_t ⊙ (1 − z_t) ⊙ tanh'
    dz_r = dz_n * gh_n * r * (1.0 - r)  # ∂L/∂z_r = ∂L/∂z_n ⊙ (W_hn h_{t−1} + b_hn) ⊙ σ'
    return dz_r, dz_z, dz_n


@triton.jit
def gru_forward_step(gx, gh, h_prev, gates, ghn, h, n, H, BLOCK: tl.constexpr):
    e = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = e < n
    b, j = e // H, e % H
    r_at, z_at, n_at = b * 3 * H + j, b * 3 * H + H + j, b * 3 * H + 2 * H + j
    gh_n = tl.load(gh + n_at, mask=mask)  # W_hn h_{t−1} + b_hn
    r, z, nn, hh = _gru_cell(
        tl.load(gx + r_at, mask=mask),
        tl.load(gx + z_at, mask=mask),
        tl.load(gx + n_at, mask=mask),
        tl.load(gh + r_at, mask=mask),
        tl.load(gh + z_at, mask=mask),
        gh_n,
        tl.load(h_prev + e, mask=mask),
    )
    tl.store(gates + r_at, r, mask=mask)
    tl.store(gates + z_at, z, mask=mask)
    tl.store(gates + n_at, nn, mask=mask)
    tl.store(ghn + e, gh_n, mask=mask)
    tl.store(h + e, hh, mask=mask)


@triton.jit
def gru_backward_step(grad_out, dh_next, h_prev, gates, ghn, dh, dgx, dgh, direct, n, H, BLOCK: tl.constexpr):
    e = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = e < n
    b, j = e // H, e % H
    r_at, z_at, n_at = b * 3 * H + j, b * 3 * H + H + j, b * 3 * H + 2 * H + j
    # ∂L/∂h_t = ∂ℓ/∂h_t + ∂L/∂h_t via step t+1
    d = tl.load(grad_out + e, mask=mask) + tl.load(dh_next + e, mask=mask)
    tl.store(dh + e, d, mask=mask)
    r = tl.load(gates + r_at, mask=mask)
    z = tl.load(gates + z_at, mask=mask)
    dz_r, dz_z, dz_n = _gru_cell_backward(
        d, r, z, tl.load(gates + n_at, mask=mask), tl.load(h_prev + e, mask=mask), tl.load(ghn + e, mask=mask)
    )
    tl.store(dgx + r_at, dz_r, mask=mask)
    tl.store(dgx + z_at, dz_z, mask=mask)
    tl.store(dgx + n_at, dz_n, mask=mask)
    tl.store(dgh + r_at, dz_r, mask=mask)
    tl.store(dgh + z_at, dz_z, mask=mask)
    tl.store(dgh + n_at, dz_n * r, mask=mask)  # ∂L/∂(W_hn h_{t−1} + b_hn) = ∂L/∂z_n ⊙ r_t
    tl.store(direct + e, d * z, mask=mask)  # the direct path: ∂h_t/∂h_{t−1} ⊃ diag(z_t)


# -- LSTM, every variant -------------------------------------------------------------------------------


@triton.jit
def _lstm_cell(
    zi,
    zf,
    zg,
    zo,
    cp,
    p_i,
    p_f,
    p_o,
    K_I: tl.constexpr,
    K_F: tl.constexpr,
    K_O: tl.constexpr,
    PEEPHOLE: tl.constexpr,
    COUPLED: tl.constexpr,
    INPUT_ACT: tl.constexpr,
    OUTPUT_ACT: tl.constexpr,
):
    """One LSTM step from its pre-activations z = W_ih x_t + b + W_hh h_{t−1}: (i, f, g, o, c_t, m_t).

    A gate the variant lacks (K_· < 0) comes back as a placeholder and is never stored.
    """
    g = _tanh(zg) if INPUT_ACT else zg  # g_t = tanh(z_g)
    i = zg
    f = zg
    o = zg
    if K_I >= 0:
        if PEEPHOLE:
            zi = zi + p_i * cp  # z_i + p_i ⊙ c_{t−1}
        i = _sigmoid(zi)  # i_t = σ(·)
        ig = i * g
    else:
        ig = g  # i = 1
    if K_F >= 0:
        if PEEPHOLE:
            zf = zf + p_f * cp  # z_f + p_f ⊙ c_{t−1}
        f = _sigmoid(zf)  # f_t = σ(·)
        fc = f * cp
    elif COUPLED:
        fc = (1.0 - i) * cp  # CIFG: f_t = 1 − i_t
    else:
        fc = cp  # f = 1
    c = fc + ig  # c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t
    m = _tanh(c) if OUTPUT_ACT else c  # m_t = o_t ⊙ tanh(c_t)
    if K_O >= 0:
        if PEEPHOLE:
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
    K_I: tl.constexpr,
    K_F: tl.constexpr,
    K_O: tl.constexpr,
    PEEPHOLE: tl.constexpr,
    COUPLED: tl.constexpr,
    INPUT_ACT: tl.constexpr,
    OUTPUT_ACT: tl.constexpr,
    GATE_RECURRENCE: tl.constexpr,
):
    """One LSTM step back from ∂L/∂m_t and ∂L/∂c_t via step t+1: (∂L/∂z_i, z_f, z_g, z_o, ∂L/∂c_t, ∂L/∂c_{t−1}).

    da_· are ∂L/∂[i, f, o]_t via step t+1 (FGR only); absent gates give placeholders.
    """
    act_c = _tanh(c) if OUTPUT_ACT else c
    # ∂L/∂c_t = ∂L/∂m_t ⊙ o_t ⊙ tanh'(c_t) + ∂L/∂c_t via step t+1 (+ p_o ⊙ ∂L/∂z_o)
    d = dm * (1.0 - act_c * act_c) if OUTPUT_ACT else dm
    dz_i = dm
    dz_f = dm
    dz_o = dm
    if K_O >= 0:
        d = d * o
        do = dm * act_c  # ∂L/∂o_t = ∂L/∂m_t ⊙ tanh(c_t)
        if GATE_RECURRENCE:
            do = do + da_o  # ∂L/∂o_t via step t+1
        dz_o = do * o * (1.0 - o)  # ∂L/∂z_o = ∂L/∂o_t ⊙ σ'
        if PEEPHOLE:
            d = d + p_o * dz_o  # o_t reads c_t through p_o
    d = d + dc_next
    dg = d * i if K_I >= 0 else d  # ∂L/∂g_t = ∂L/∂c_t ⊙ i_t
    dz_g = dg * (1.0 - g * g) if INPUT_ACT else dg  # ∂L/∂z_g = ∂L/∂g_t ⊙ tanh'(z_g)
    if K_I >= 0:
        di = d * g  # ∂L/∂i_t = ∂L/∂c_t ⊙ g_t
        if COUPLED:
            di = di - d * cp  # CIFG: f_t = 1 − i_t, so ∂L/∂i_t −= ∂L/∂c_t ⊙ c_{t−1}
        if GATE_RECURRENCE:
            di = di + da_i
        dz_i = di * i * (1.0 - i)  # ∂L/∂z_i = ∂L/∂i_t ⊙ σ'
    if K_F >= 0:
        df = d * cp  # ∂L/∂f_t = ∂L/∂c_t ⊙ c_{t−1}
        if GATE_RECURRENCE:
            df = df + da_f
        dz_f = df * f * (1.0 - f)  # ∂L/∂z_f = ∂L/∂f_t ⊙ σ'
        d_prev = d * f  # ∂L/∂c_{t−1} = f_t ⊙ ∂L/∂c_t
    elif COUPLED:
        d_prev = d * (1.0 - i)  # CIFG: f_t = 1 − i_t
    else:
        d_prev = d  # f = 1
    if PEEPHOLE:
        if K_I >= 0:
            d_prev = d_prev + p_i * dz_i  # + p_i ⊙ ∂L/∂z_i
        if K_F >= 0:
            d_prev = d_prev + p_f * dz_f  # + p_f ⊙ ∂L/∂z_f
    return dz_i, dz_f, dz_g, dz_o, d, d_prev


@triton.jit
def _load_gate(ptr, at, K: tl.constexpr, H, mask):
    """Gate block K of a (…, G·H) row at `at` (b·G·H + j); zeros for a gate the variant lacks."""
    if K >= 0:
        v = tl.load(ptr + at + K * H, mask=mask, other=0.0)
    else:
        v = tl.load(ptr + at, mask=mask, other=0.0) * 0.0
    return v


@triton.jit
def _load_peephole(ptr, j, K: tl.constexpr, mask):
    """p_· (H,) at units j, for a gate the variant has (K ≥ 0); zeros otherwise."""
    if K >= 0:
        v = tl.load(ptr + j, mask=mask, other=0.0)
    else:
        v = tl.load(ptr + j * 0, mask=mask, other=0.0) * 0.0
    return v


@triton.jit
def _store_gate(ptr, at, value, K: tl.constexpr, H, mask):
    if K >= 0:
        tl.store(ptr + at + K * H, value, mask=mask)


@triton.jit
def lstm_forward_step(
    gx,
    gh,
    c_prev,
    w_ci,
    w_cf,
    w_co,
    gates,
    c,
    m,
    n,
    H,
    G: tl.constexpr,
    K_I: tl.constexpr,
    K_F: tl.constexpr,
    K_G: tl.constexpr,
    K_O: tl.constexpr,
    PEEPHOLE: tl.constexpr,
    COUPLED: tl.constexpr,
    INPUT_ACT: tl.constexpr,
    OUTPUT_ACT: tl.constexpr,
    BLOCK: tl.constexpr,
):
    e = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = e < n
    b, j = e // H, e % H
    at = b * G * H + j
    cp = tl.load(c_prev + e, mask=mask)
    # z_t = W_ih x_t + b_ih + W_hh h_{t−1} + b_hh (+ R_g [i, f, o]_{t−1} for FGR, already in gh)
    zi = _load_gate(gx, at, K_I, H, mask) + _load_gate(gh, at, K_I, H, mask)
    zf = _load_gate(gx, at, K_F, H, mask) + _load_gate(gh, at, K_F, H, mask)
    zg = _load_gate(gx, at, K_G, H, mask) + _load_gate(gh, at, K_G, H, mask)
    zo = _load_gate(gx, at, K_O, H, mask) + _load_gate(gh, at, K_O, H, mask)
    p_i, p_f, p_o = cp, cp, cp
    if PEEPHOLE:
        p_i = _load_peephole(w_ci, j, K_I, mask)
        p_f = _load_peephole(w_cf, j, K_F, mask)
        p_o = _load_peephole(w_co, j, K_O, mask)
    i, f, g, o, cc, mm = _lstm_cell(
        zi, zf, zg, zo, cp, p_i, p_f, p_o, K_I, K_F, K_O, PEEPHOLE, COUPLED, INPUT_ACT, OUTPUT_ACT
    )
    _store_gate(gates, at, i, K_I, H, mask)
    _store_gate(gates, at, f, K_F, H, mask)
    _store_gate(gates, at, g, K_G, H, mask)
    _store_gate(gates, at, o, K_O, H, mask)
    tl.store(c + e, cc, mask=mask)
    tl.store(m + e, mm, mask=mask)


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
    G: tl.constexpr,
    K_I: tl.constexpr,
    K_F: tl.constexpr,
    K_G: tl.constexpr,
    K_O: tl.constexpr,
    PEEPHOLE: tl.constexpr,
    COUPLED: tl.constexpr,
    INPUT_ACT: tl.constexpr,
    OUTPUT_ACT: tl.constexpr,
    GATE_RECURRENCE: tl.constexpr,
    PROJECTION: tl.constexpr,
    BLOCK: tl.constexpr,
):
    e = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = e < n
    b, j = e // H, e % H
    at = b * G * H + j
    if PROJECTION:
        dm = tl.load(dm_in + e, mask=mask)  # ∂L/∂m_t = W_hrᵀ ∂L/∂h_t, a matmul before this kernel
    else:
        # ∂L/∂h_t = ∂ℓ/∂h_t + ∂L/∂h_t via step t+1, and m_t = h_t
        dm = tl.load(grad_out + e, mask=mask) + tl.load(dh_next + e, mask=mask)
        tl.store(dh + e, dm, mask=mask)
    cp = tl.load(c_prev + e, mask=mask)
    da_i, da_f, da_o = cp, cp, cp
    if GATE_RECURRENCE:  # ∂L/∂[i, f, o]_t via step t+1, in the (B, 4H) gate layout
        da_i = tl.load(da_next + at + K_I * H, mask=mask)
        da_f = tl.load(da_next + at + K_F * H, mask=mask)
        da_o = tl.load(da_next + at + K_O * H, mask=mask)
    p_i, p_f, p_o = cp, cp, cp
    if PEEPHOLE:
        p_i = _load_peephole(w_ci, j, K_I, mask)
        p_f = _load_peephole(w_cf, j, K_F, mask)
        p_o = _load_peephole(w_co, j, K_O, mask)
    dz_i, dz_f, dz_g, dz_o, d, d_prev = _lstm_cell_backward(
        dm,
        tl.load(dc_next + e, mask=mask),
        _load_gate(gates, at, K_I, H, mask),
        _load_gate(gates, at, K_F, H, mask),
        _load_gate(gates, at, K_G, H, mask),
        _load_gate(gates, at, K_O, H, mask),
        tl.load(c + e, mask=mask),
        cp,
        da_i,
        da_f,
        da_o,
        p_i,
        p_f,
        p_o,
        K_I,
        K_F,
        K_O,
        PEEPHOLE,
        COUPLED,
        INPUT_ACT,
        OUTPUT_ACT,
        GATE_RECURRENCE,
    )
    _store_gate(dgx, at, dz_i, K_I, H, mask)
    _store_gate(dgx, at, dz_f, K_F, H, mask)
    _store_gate(dgx, at, dz_g, K_G, H, mask)
    _store_gate(dgx, at, dz_o, K_O, H, mask)
    tl.store(dc + e, d, mask=mask)
    tl.store(dc_prev + e, d_prev, mask=mask)


def grid(n: int) -> tuple[int]:
    """Programs for n elements of one step."""
    return (triton.cdiv(n, BLOCK),)


# -- persistent sweeps: the whole time loop in one launch -----------------------------------------
#
# The design of FlashRNN (Pöppel et al., 2024) cut to what Triton expresses without grid-wide
# synchronisation: each program owns BLOCK_B rows of the batch for all T steps, and rows never talk to
# each other, so the only dependency is within a program. Per step it computes W_hh h_{t−1} tile by
# tile with tl.dot (W_hh stays in L2 across steps), applies the same `_lstm_cell` as the per-step
# kernel, writes the tape, and waits at a barrier before step t+1 reads h_t. Backward per step: the
# pointwise `_lstm_cell_backward` over all units, a barrier, ∂L/∂h_{t−1} = W_hhᵀ ∂L/∂gh_t tile by
# tile, a barrier. Python launches once per sweep instead of twice per step.


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
def _rows_cols(ptr, rows, cols, stride, row_ok, col_ok):
    return tl.load(
        ptr + rows[:, None] * stride + cols[None, :], mask=row_ok[:, None] & col_ok[None, :], other=0.0
    )


@triton.jit
def _gate_product(
    h_prev,
    w_hh,
    rows,
    row_ok,
    cols,
    col_ok,
    K: tl.constexpr,
    H: tl.constexpr,
    P: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """(W_hh h_{t−1}) for gate block K at units `cols`: Σ_k h_{t−1}[rows, k] W_hh[K·H + cols, k]."""
    acc = tl.zeros((BLOCK_B, BLOCK_H), dtype=h_prev.dtype.element_ty)
    if K >= 0:
        for k0 in range(0, P, BLOCK_K):
            ks = k0 + tl.arange(0, BLOCK_K)
            k_ok = ks < P
            hp = _rows_cols(h_prev, rows, ks, P, row_ok, k_ok)  # (BLOCK_B, BLOCK_K)
            # W_hhᵀ tile (BLOCK_K, BLOCK_H): element [k, j] = W_hh[K·H + j, k]
            w = tl.load(
                w_hh + (K * H + cols[None, :]) * P + ks[:, None],
                mask=k_ok[:, None] & col_ok[None, :],
                other=0.0,
            )
            acc += tl.dot(hp, w, input_precision=PRECISION)
    return acc


@triton.jit
def _gates_product(
    h_prev,
    w_hh,
    rows,
    row_ok,
    j0,
    G: tl.constexpr,
    H: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """W_hh h_{t−1} at units j0 … j0 + BLOCK_H of every gate block (up to 4), as one product.

    Column c = 4·j + k of the (BLOCK_B, 4·BLOCK_H) product is unit j0 + j of gate block k, so one
    tl.dot per chunk of h_{t−1} serves all gates; blocks k ≥ G come back as zeros.
    """
    c = tl.arange(0, 4 * BLOCK_H)
    unit, k = j0 + c // 4, c % 4
    c_ok = (unit < H) & (k < G)
    acc = tl.zeros((BLOCK_B, 4 * BLOCK_H), dtype=h_prev.dtype.element_ty)
    for k0 in range(0, H, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        k_ok = ks < H
        hp = _rows_cols(h_prev, rows, ks, H, row_ok, k_ok)  # (BLOCK_B, BLOCK_K)
        # W_hhᵀ (BLOCK_K, 4·BLOCK_H): element [κ, c] = W_hh[k·H + unit, κ]
        w = tl.load(
            w_hh + (k * H + unit)[None, :] * H + ks[:, None], mask=k_ok[:, None] & c_ok[None, :], other=0.0
        )
        acc += tl.dot(hp, w, input_precision=PRECISION)
    # (BLOCK_B, BLOCK_H, a, b) with k = 2a + b: split b, then a
    even, odd = tl.split(tl.reshape(acc, (BLOCK_B, BLOCK_H, 2, 2)))
    z0, z2 = tl.split(even)
    z1, z3 = tl.split(odd)
    return z0, z1, z2, z3


@triton.jit
def _pick(z0, z1, z2, z3, K: tl.constexpr):
    """Gate block K of `_gates_product`'s four (a placeholder for K < 0, never stored)."""
    if K == 0:
        v = z0
    elif K == 1:
        v = z1
    elif K == 2:
        v = z2
    else:
        v = z3
    return v


@triton.jit
def _back_product(
    src,
    rows,
    row_ok,
    w_hh,
    add,
    dst,
    KW: tl.constexpr,
    H: tl.constexpr,
    ADD: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """∂L/∂h_{t−1} = W_hhᵀ ∂L/∂gh_t (+ `add`): dst[rows] = src[rows] (·, KW) · W_hh (KW, H), tile by tile."""
    for j0 in range(0, H, BLOCK_H):
        cols = j0 + tl.arange(0, BLOCK_H)
        col_ok = cols < H
        acc = tl.zeros((BLOCK_B, BLOCK_H), dtype=dst.dtype.element_ty)
        for k0 in range(0, KW, BLOCK_K):
            ks = k0 + tl.arange(0, BLOCK_K)
            k_ok = ks < KW
            a = _rows_cols(src, rows, ks, KW, row_ok, k_ok)
            w = _rows_cols(w_hh, ks, cols, H, k_ok, col_ok)  # W_hh[k, j]
            acc += tl.dot(a, w, input_precision=PRECISION)
        if ADD:
            acc += _rows_cols(add, rows, cols, H, row_ok, col_ok)
        tl.store(dst + rows[:, None] * H + cols[None, :], acc, mask=row_ok[:, None] & col_ok[None, :])


@triton.jit
def lstm_forward_sweep(
    gx,
    w_hh,
    w_ci,
    w_cf,
    w_co,
    h_buf,
    c_buf,
    gates_buf,
    T,
    B,
    H: tl.constexpr,
    G: tl.constexpr,
    K_I: tl.constexpr,
    K_F: tl.constexpr,
    K_G: tl.constexpr,
    K_O: tl.constexpr,
    PEEPHOLE: tl.constexpr,
    COUPLED: tl.constexpr,
    INPUT_ACT: tl.constexpr,
    OUTPUT_ACT: tl.constexpr,
    REVERSE: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_ok = rows < B
    s = T * 0
    while s < T:  # a while loop: T stays a run-time value (and Triton's interpreter accepts it)
        # slots of the (T+1, B, ·) buffers: the state before step t and after it (engine/tape.py)
        t, prev, now = _position(s, T, REVERSE, False)
        for j0 in range(0, H, BLOCK_H):
            # at: gate block 0 of each (row, unit)
            cols, col_ok, ok, here, at = _tile(rows, row_ok, j0, H, G, BLOCK_H)
            h_prev = h_buf + prev * B * H
            # z_t = W_ih x_t + b + W_hh h_{t−1}, all gates in one product
            z0, z1, z2, z3 = _gates_product(
                h_prev, w_hh, rows, row_ok, j0, G, H, BLOCK_B, BLOCK_H, BLOCK_K, PRECISION
            )
            zi = _pick(z0, z1, z2, z3, K_I)
            zf = _pick(z0, z1, z2, z3, K_F)
            zg = _pick(z0, z1, z2, z3, K_G)
            zo = _pick(z0, z1, z2, z3, K_O)
            gx_t = gx + t * B * G * H
            zi += _load_gate(gx_t, at, K_I, H, ok)
            zf += _load_gate(gx_t, at, K_F, H, ok)
            zg += _load_gate(gx_t, at, K_G, H, ok)
            zo += _load_gate(gx_t, at, K_O, H, ok)
            cp = _rows_cols(c_buf + prev * B * H, rows, cols, H, row_ok, col_ok)
            p_i, p_f, p_o = cp, cp, cp
            if PEEPHOLE:
                p_i = _load_peephole(w_ci, cols[None, :], K_I, col_ok[None, :])
                p_f = _load_peephole(w_cf, cols[None, :], K_F, col_ok[None, :])
                p_o = _load_peephole(w_co, cols[None, :], K_O, col_ok[None, :])
            i, f, g, o, c, m = _lstm_cell(
                zi, zf, zg, zo, cp, p_i, p_f, p_o, K_I, K_F, K_O, PEEPHOLE, COUPLED, INPUT_ACT, OUTPUT_ACT
            )
            gates_t = gates_buf + now * B * G * H
            _store_gate(gates_t, at, i, K_I, H, ok)
            _store_gate(gates_t, at, f, K_F, H, ok)
            _store_gate(gates_t, at, g, K_G, H, ok)
            _store_gate(gates_t, at, o, K_O, H, ok)
            tl.store(c_buf + now * B * H + here, c, mask=ok)
            tl.store(h_buf + now * B * H + here, m, mask=ok)
        tl.debug_barrier()  # h_t is complete before step t+1 reads it
        s += 1


@triton.jit
def lstm_backward_sweep(
    grad_out,
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
    G: tl.constexpr,
    K_I: tl.constexpr,
    K_F: tl.constexpr,
    K_G: tl.constexpr,
    K_O: tl.constexpr,
    PEEPHOLE: tl.constexpr,
    COUPLED: tl.constexpr,
    INPUT_ACT: tl.constexpr,
    OUTPUT_ACT: tl.constexpr,
    REVERSE: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_ok = rows < B
    s = T * 0
    while s < T:
        # backward visits the steps in the reverse of the forward order
        t, prev, now = _position(s, T, REVERSE, True)
        for j0 in range(0, H, BLOCK_H):
            cols, col_ok, ok, here, at = _tile(rows, row_ok, j0, H, G, BLOCK_H)
            # ∂L/∂h_t = ∂ℓ/∂h_t + ∂L/∂h_t via step t+1
            dm = tl.load(grad_out + t * B * H + here, mask=ok, other=0.0) + tl.load(
                dh_next + here, mask=ok, other=0.0
            )
            tl.store(dh + t * B * H + here, dm, mask=ok)
            cp = tl.load(c_buf + prev * B * H + here, mask=ok, other=0.0)
            p_i, p_f, p_o = cp, cp, cp
            if PEEPHOLE:
                p_i = _load_peephole(w_ci, cols[None, :], K_I, col_ok[None, :])
                p_f = _load_peephole(w_cf, cols[None, :], K_F, col_ok[None, :])
                p_o = _load_peephole(w_co, cols[None, :], K_O, col_ok[None, :])
            gates_t = gates_buf + now * B * G * H
            dz_i, dz_f, dz_g, dz_o, d, d_prev = _lstm_cell_backward(
                dm,
                tl.load(dc_carry + here, mask=ok, other=0.0),
                _load_gate(gates_t, at, K_I, H, ok),
                _load_gate(gates_t, at, K_F, H, ok),
                _load_gate(gates_t, at, K_G, H, ok),
                _load_gate(gates_t, at, K_O, H, ok),
                tl.load(c_buf + now * B * H + here, mask=ok, other=0.0),
                cp,
                cp,
                cp,
                cp,
                p_i,
                p_f,
                p_o,
                K_I,
                K_F,
                K_O,
                PEEPHOLE,
                COUPLED,
                INPUT_ACT,
                OUTPUT_ACT,
                False,
            )
            dgx_t = dgx + t * B * G * H
            _store_gate(dgx_t, at, dz_i, K_I, H, ok)
            _store_gate(dgx_t, at, dz_f, K_F, H, ok)
            _store_gate(dgx_t, at, dz_g, K_G, H, ok)
            _store_gate(dgx_t, at, dz_o, K_O, H, ok)
            tl.store(dc + t * B * H + here, d, mask=ok)
            tl.store(dc_carry + here, d_prev, mask=ok)
        tl.debug_barrier()  # ∂L/∂gx_t is complete before the product reads it
        _back_product(
            dgx + t * B * G * H,
            rows,
            row_ok,
            w_hh,
            dh_next,
            dh_next,
            G * H,
            H,
            False,
            BLOCK_B,
            BLOCK_H,
            BLOCK_K,
            PRECISION,
        )
        tl.debug_barrier()  # ∂L/∂h_{t−1} is complete before step t−1 reads it
        s += 1


# -- persistent GRU and Elman RNN sweeps ----------------------------------------------------------------


@triton.jit
def gru_forward_sweep(
    gx,
    w_hh,
    b_hh,
    h_buf,
    gates_buf,
    ghn_buf,
    T,
    B,
    H: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    REVERSE: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_ok = rows < B
    s = T * 0
    while s < T:
        t, prev, now = _position(s, T, REVERSE, False)
        h_prev = h_buf + prev * B * H
        for j0 in range(0, H, BLOCK_H):
            cols, col_ok, ok, here, at = _tile(rows, row_ok, j0, H, 3, BLOCK_H)
            # gh_t = W_hh h_{t−1} + b_hh (b_hn stays inside r_t ⊙ (·)), all gates in one product
            gh_r, gh_z, gh_n, _ = _gates_product(
                h_prev, w_hh, rows, row_ok, j0, 3, H, BLOCK_B, BLOCK_H, BLOCK_K, PRECISION
            )
            if HAS_BIAS:
                gh_r += tl.load(b_hh + cols, mask=col_ok, other=0.0)[None, :]
                gh_z += tl.load(b_hh + H + cols, mask=col_ok, other=0.0)[None, :]
                gh_n += tl.load(b_hh + 2 * H + cols, mask=col_ok, other=0.0)[None, :]
            gx_t = gx + t * B * 3 * H
            r, z, nn, hh = _gru_cell(
                tl.load(gx_t + at, mask=ok, other=0.0),
                tl.load(gx_t + at + H, mask=ok, other=0.0),
                tl.load(gx_t + at + 2 * H, mask=ok, other=0.0),
                gh_r,
                gh_z,
                gh_n,
                tl.load(h_prev + here, mask=ok, other=0.0),
            )
            gates_t = gates_buf + now * B * 3 * H
            tl.store(gates_t + at, r, mask=ok)
            tl.store(gates_t + at + H, z, mask=ok)
            tl.store(gates_t + at + 2 * H, nn, mask=ok)
            tl.store(ghn_buf + t * B * H + here, gh_n, mask=ok)
            tl.store(h_buf + now * B * H + here, hh, mask=ok)
        tl.debug_barrier()  # h_t is complete before step t+1 reads it
        s += 1


@triton.jit
def gru_backward_sweep(
    grad_out,
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
    REVERSE: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_ok = rows < B
    s = T * 0
    while s < T:
        t, prev, now = _position(s, T, REVERSE, True)
        for j0 in range(0, H, BLOCK_H):
            _cols, _col_ok, ok, here, at = _tile(rows, row_ok, j0, H, 3, BLOCK_H)
            # ∂L/∂h_t = ∂ℓ/∂h_t + ∂L/∂h_t via step t+1
            d = tl.load(grad_out + t * B * H + here, mask=ok, other=0.0) + tl.load(
                dh_next + here, mask=ok, other=0.0
            )
            tl.store(dh + t * B * H + here, d, mask=ok)
            gates_t = gates_buf + now * B * 3 * H
            r = tl.load(gates_t + at, mask=ok, other=0.0)
            z = tl.load(gates_t + at + H, mask=ok, other=0.0)
            dz_r, dz_z, dz_n = _gru_cell_backward(
                d,
                r,
                z,
                tl.load(gates_t + at + 2 * H, mask=ok, other=0.0),
                tl.load(h_buf + prev * B * H + here, mask=ok, other=0.0),
                tl.load(ghn_buf + t * B * H + here, mask=ok, other=0.0),
            )
            dgx_t, dgh_t = dgx + t * B * 3 * H, dgh + t * B * 3 * H
            tl.store(dgx_t + at, dz_r, mask=ok)
            tl.store(dgx_t + at + H, dz_z, mask=ok)
            tl.store(dgx_t + at + 2 * H, dz_n, mask=ok)
            tl.store(dgh_t + at, dz_r, mask=ok)
            tl.store(dgh_t + at + H, dz_z, mask=ok)
            tl.store(dgh_t + at + 2 * H, dz_n * r, mask=ok)  # ∂L/∂(W_hn h_{t−1} + b_hn) = ∂L/∂z_n ⊙ r_t
            tl.store(direct + here, d * z, mask=ok)  # the direct path: ∂h_t/∂h_{t−1} ⊃ diag(z_t)
        tl.debug_barrier()  # ∂L/∂gh_t and the direct path are complete before the product reads them
        # ∂L/∂h_{t−1} = W_hhᵀ ∂L/∂gh_t + z_t ⊙ ∂L/∂h_t
        _back_product(
            dgh + t * B * 3 * H,
            rows,
            row_ok,
            w_hh,
            direct,
            dh_next,
            3 * H,
            H,
            True,
            BLOCK_B,
            BLOCK_H,
            BLOCK_K,
            PRECISION,
        )
        tl.debug_barrier()  # ∂L/∂h_{t−1} is complete before step t−1 reads it
        s += 1


@triton.jit
def rnn_forward_sweep(
    gx,
    w_hh,
    h_buf,
    T,
    B,
    H: tl.constexpr,
    ACT: tl.constexpr,
    REVERSE: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_ok = rows < B
    s = T * 0
    while s < T:
        t, prev, now = _position(s, T, REVERSE, False)
        for j0 in range(0, H, BLOCK_H):
            cols, col_ok, ok, here, _at = _tile(rows, row_ok, j0, H, 1, BLOCK_H)
            # z_t = W_ih x_t + b + W_hh h_{t−1}
            z = _gate_product(
                h_buf + prev * B * H,
                w_hh,
                rows,
                row_ok,
                cols,
                col_ok,
                0,
                H,
                H,
                BLOCK_B,
                BLOCK_H,
                BLOCK_K,
                PRECISION,
            )
            z += tl.load(gx + t * B * H + here, mask=ok, other=0.0)
            tl.store(h_buf + now * B * H + here, _activate(z, ACT), mask=ok)  # h_t = a(z_t)
        tl.debug_barrier()  # h_t is complete before step t+1 reads it
        s += 1


@triton.jit
def rnn_backward_sweep(
    grad_out,
    dh_next,
    w_hh,
    h_buf,
    dh,
    dgx,
    T,
    B,
    H: tl.constexpr,
    ACT: tl.constexpr,
    REVERSE: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    row_ok = rows < B
    s = T * 0
    while s < T:
        t, _prev, now = _position(s, T, REVERSE, True)
        for j0 in range(0, H, BLOCK_H):
            _cols, _col_ok, ok, here, _at = _tile(rows, row_ok, j0, H, 1, BLOCK_H)
            # ∂L/∂h_t = ∂ℓ/∂h_t + ∂L/∂h_t via step t+1
            d = tl.load(grad_out + t * B * H + here, mask=ok, other=0.0) + tl.load(
                dh_next + here, mask=ok, other=0.0
            )
            tl.store(dh + t * B * H + here, d, mask=ok)
            a_grad = _activation_grad(tl.load(h_buf + now * B * H + here, mask=ok, other=0.0), ACT)
            tl.store(dgx + t * B * H + here, d * a_grad, mask=ok)  # ∂L/∂z_t = ∂L/∂h_t ⊙ a'(z_t)
        tl.debug_barrier()  # ∂L/∂z_t is complete before the product reads it
        _back_product(
            dgx + t * B * H,
            rows,
            row_ok,
            w_hh,
            dh_next,
            dh_next,
            H,
            H,
            False,
            BLOCK_B,
            BLOCK_H,
            BLOCK_K,
            PRECISION,
        )
        tl.debug_barrier()  # ∂L/∂h_{t−1} is complete before step t−1 reads it
        s += 1
