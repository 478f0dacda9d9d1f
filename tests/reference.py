"""Independent reference implementations: every cell unrolled step by step with plain autograd.

Written from the papers' equations (PyTorch's documentation for RNN/LSTM/GRU, Greff et al. 2015
for the peephole variants), sharing no code with the library. Per-step states are returned as the
very tensors the loop computed, so autograd gives ∂loss/∂h_t and ∂loss/∂c_t for each of them.
"""

from __future__ import annotations

import torch
from torch import Tensor

# name: (gates present, peepholes, coupled f = 1 − i, input activation, output activation, gate recurrence)
LSTM_VARIANTS = {
    "vanilla": ("ifgo", False, False, True, True, False),
    "np": ("ifgo", False, False, True, True, False),
    "peephole": ("ifgo", True, False, True, True, False),
    "original": ("igo", False, False, True, True, False),
    "nig": ("fgo", True, False, True, True, False),
    "nfg": ("igo", True, False, True, True, False),
    "nog": ("ifg", True, False, True, True, False),
    "niaf": ("ifgo", True, False, False, True, False),
    "noaf": ("ifgo", True, False, True, False, False),
    "cifg": ("igo", True, True, True, True, False),
    "fgr": ("ifgo", True, False, True, True, True),
}

ACT = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid, "linear": lambda z: z}


def _lin(x: Tensor, W: Tensor, b: Tensor | None) -> Tensor:
    return x @ W.T + (b if b is not None else 0)


def rnn_step(P: dict, x: Tensor, state: tuple, nonlinearity: str) -> tuple:
    (h,) = state
    h = ACT[nonlinearity](
        _lin(x, P["weight_ih"], P.get("bias_ih")) + _lin(h, P["weight_hh"], P.get("bias_hh"))
    )
    return (h,), {}


def gru_step(P: dict, x: Tensor, state: tuple) -> tuple:
    (h,) = state
    H = h.shape[-1]
    gi = _lin(x, P["weight_ih"], P.get("bias_ih"))
    gh = _lin(h, P["weight_hh"], P.get("bias_hh"))
    r = torch.sigmoid(gi[..., :H] + gh[..., :H])
    z = torch.sigmoid(gi[..., H : 2 * H] + gh[..., H : 2 * H])
    n = torch.tanh(gi[..., 2 * H :] + r * gh[..., 2 * H :])
    h = (1 - z) * n + z * h
    return (h,), {"r": r, "z": z, "n": n}


def lstm_step(P: dict, x: Tensor, state: tuple, variant: str) -> tuple:
    gates, peep, coupled, in_act, out_act, fgr = LSTM_VARIANTS[variant]
    h, c, prev = state
    H = c.shape[-1]
    z_all = _lin(x, P["weight_ih"], P.get("bias_ih")) + _lin(h, P["weight_hh"], P.get("bias_hh"))
    z = {name: z_all[..., k * H : (k + 1) * H] for k, name in enumerate(gates)}
    if fgr:
        rec = torch.cat([prev["i"], prev["f"], prev["o"]], -1) @ P["weight_gg"].T
        z = {
            **z,
            "i": z["i"] + rec[..., :H],
            "f": z["f"] + rec[..., H : 2 * H],
            "o": z["o"] + rec[..., 2 * H :],
        }
    one = torch.ones_like(c)
    i = torch.sigmoid(z["i"] + (P["weight_ci"] * c if peep else 0)) if "i" in gates else one
    if "f" in gates:
        f = torch.sigmoid(z["f"] + (P["weight_cf"] * c if peep else 0))
    else:
        f = 1 - i if coupled else one
    g = torch.tanh(z["g"]) if in_act else z["g"]
    c_new = f * c + i * g
    o = torch.sigmoid(z["o"] + (P["weight_co"] * c_new if peep else 0)) if "o" in gates else one
    m = o * (torch.tanh(c_new) if out_act else c_new)
    h_new = m @ P["weight_hr"].T if "weight_hr" in P else m
    return (h_new, c_new, {"i": i, "f": f, "o": o}), {"i": i, "f": f, "g": g, "o": o}


def _unroll_layers(
    params: dict, x: Tensor, num_layers: int, bidirectional: bool, first, step, has_cell: bool
) -> dict:
    """The loop over layers, directions and time every reference shares: `first(k, P, B)` is the
    initial state of layer-direction k (P its parameters by suffix), `step(P, x_t, state)` one step
    returning (state, gates); state[0] is h_t and, with `has_cell`, state[1] the cell state."""
    T, D = x.shape[0], 2 if bidirectional else 1
    layer_in = x
    h_n, c_n, hs, cs, gates = [], [], [], [], []
    for layer in range(num_layers):
        outs = []
        for d in range(D):
            suffix = f"_l{layer}" + ("_reverse" if d else "")
            P = {name[: -len(suffix)]: v for name, v in params.items() if name.endswith(suffix)}
            state = first(layer * D + d, P, x.shape[1])
            h_t: list = [None] * T
            c_t: list = [None] * T
            g_t: list = [None] * T
            for t in range(T - 1, -1, -1) if d else range(T):
                state, g = step(P, layer_in[t], state)
                h_t[t], g_t[t] = state[0], g
                if has_cell:
                    c_t[t] = state[1]
            outs.append(torch.stack(h_t))
            hs.append(h_t)
            cs.append(c_t)
            gates.append(g_t)
            h_n.append(state[0])
            if has_cell:
                c_n.append(state[1])
        layer_in = torch.cat(outs, -1)
    return {
        "output": layer_in,
        "h_n": torch.stack(h_n),
        "c_n": torch.stack(c_n) if c_n else None,
        "h": hs,
        "c": cs,
        "gates": gates,
    }


def unroll(kind: str, params: dict, x: Tensor, hx, num_layers: int, bidirectional: bool, **cfg) -> dict:
    """Time-major batched x (T, B, I); params by full PyTorch names; hx as the module takes it.

    Returns output, h_n (and c_n), and per layer-direction lists (by time position) of h_t, c_t and gates.
    """
    h0, c0 = (hx if kind == "lstm" else (hx, None)) if hx is not None else (None, None)
    variant = cfg.get("variant", "vanilla")

    def first(k: int, P: dict, B: int) -> tuple:
        gate_blocks = {"rnn": 1, "gru": 3, "lstm": len(LSTM_VARIANTS[variant][0])}[kind]
        Hc, Ph = P["weight_hh"].shape[0] // gate_blocks, P["weight_hh"].shape[1]
        h = h0[k] if h0 is not None else x.new_zeros(B, Ph)
        if kind != "lstm":
            return (h,)
        c = c0[k] if c0 is not None else x.new_zeros(B, Hc)
        zero = x.new_zeros(B, Hc)
        return (h, c, {"i": zero, "f": zero, "o": zero})

    def step(P: dict, x_t: Tensor, state: tuple) -> tuple:
        if kind == "rnn":
            return rnn_step(P, x_t, state, cfg.get("nonlinearity", "tanh"))
        if kind == "gru":
            return gru_step(P, x_t, state)
        return lstm_step(P, x_t, state, variant)

    return _unroll_layers(params, x, num_layers, bidirectional, first, step, kind == "lstm")


def hs97_unroll(
    weight: Tensor, weight_out: Tensor, x: Tensor, blocks: int, cells: int, truncate: bool
) -> Tensor:
    """HS97's memory-block LSTM on one sequence x (T, I), unit by unit; returns the output (O,).

    Hidden units in the order cells, input gates, output gates; u_t = [x_t, y(t−1), 1];
    g = 4σ − 2, h = 2σ − 1; `truncate` detaches y(t−1) where it enters the net inputs.
    """
    T = x.shape[0]
    C = blocks * cells
    s = [x.new_zeros(()) for _ in range(C)]
    y_prev = x.new_zeros(C + 2 * blocks)
    y_cells: list = []
    for t in range(T):
        prev = y_prev.detach() if truncate else y_prev
        u = torch.cat([x[t], prev, x.new_ones(1)])
        y_cells, y_ins, y_outs = [], [], []
        for j in range(blocks):
            y_in = torch.sigmoid(weight[C + j] @ u)
            y_out = torch.sigmoid(weight[C + blocks + j] @ u)
            for k in range(cells):
                c = j * cells + k
                s[c] = s[c] + y_in * (4 * torch.sigmoid(weight[c] @ u) - 2)
                y_cells.append(y_out * (2 * torch.sigmoid(s[c]) - 1))
            y_ins.append(y_in)
            y_outs.append(y_out)
        y_prev = torch.stack(y_cells + y_ins + y_outs)
    return torch.sigmoid(weight_out @ torch.cat([torch.stack(y_cells), x.new_ones(1)]))


# -- the LSTM's successors, from Beck et al. 2024 (sLSTM), Feng et al. 2024 (minGRU, minLSTM) and
# Orvieto et al. 2023 (LRU). The cell state is one tensor, as the modules keep it: sLSTM [c | n | m],
# LRU [Re x | Im x].


def slstm_step(P: dict, x: Tensor, state: tuple, forget_gate: str = "sigmoid") -> tuple:
    h, cnm = state
    H = h.shape[-1]
    c, n, m = cnm[..., :H], cnm[..., H : 2 * H], cnm[..., 2 * H :]
    pre = _lin(x, P["weight_ih"], P.get("bias_ih")) + _lin(h, P["weight_hh"], P.get("bias_hh"))
    i_t, f_t, z_t, o_t = pre.split(H, dim=-1)
    log_f = torch.nn.functional.logsigmoid(f_t) if forget_gate == "sigmoid" else f_t
    empty = n == 0
    m_new = torch.where(empty, i_t, torch.where(i_t >= log_f + m, i_t, log_f + m))
    i = torch.exp(i_t - m_new)
    f = torch.where(empty, torch.zeros_like(n), torch.exp(log_f + m - m_new))
    z = torch.tanh(z_t)
    o = torch.sigmoid(o_t)
    cnm_new = torch.cat([f * c + i * z, f * n + i, m_new], -1)  # the state tensor h_t reads, as the next step
    h_new = o * cnm_new[..., :H] / cnm_new[..., H : 2 * H]
    return (h_new, cnm_new), {"i": i, "f": f, "g": z, "o": o}


def _candidate(u: Tensor, candidate: str) -> Tensor:
    return u if candidate == "linear" else torch.where(u >= 0, u + 0.5, torch.sigmoid(u))


def mingru_step(P: dict, x: Tensor, state: tuple, candidate: str = "linear") -> tuple:
    (h,) = state
    H = h.shape[-1]
    a = _lin(x, P["weight_ih"], P.get("bias_ih"))
    z = torch.sigmoid(a[..., :H])
    h_tilde = _candidate(a[..., H:], candidate)
    return ((1 - z) * h + z * h_tilde,), {"z": z}


def minlstm_step(P: dict, x: Tensor, state: tuple, candidate: str = "linear") -> tuple:
    (h,) = state
    H = h.shape[-1]
    a = _lin(x, P["weight_ih"], P.get("bias_ih"))
    f, i = torch.sigmoid(a[..., :H]), torch.sigmoid(a[..., H : 2 * H])
    h_tilde = _candidate(a[..., 2 * H :], candidate)
    f_prime, i_prime = f / (f + i), i / (f + i)
    return (f_prime * h + i_prime * h_tilde,), {"f": f_prime, "i": i_prime}


def lru_step(P: dict, u: Tensor, state: tuple) -> tuple:
    """In complex arithmetic, as the paper writes it."""
    _, x_ri = state
    N = P["nu_log"].shape[0]
    lam = torch.exp(-torch.exp(P["nu_log"]) + 1j * torch.exp(P["theta_log"]))
    B = torch.complex(P["weight_ih"][:N], P["weight_ih"][N : 2 * N])
    D = P["weight_ih"][2 * N :]
    C = torch.complex(P["weight_hc"][:, :N], P["weight_hc"][:, N:])
    x = torch.complex(x_ri[..., :N], x_ri[..., N:])
    x = lam * x + torch.exp(P["gamma_log"]) * (u.to(B.dtype) @ B.T)
    x_ri = torch.cat([x.real, x.imag], -1)  # the state tensor y_t reads, as the next step
    y = (torch.complex(x_ri[..., :N], x_ri[..., N:]) @ C.T).real + u @ D.T
    return (y, x_ri), {}


SUCCESSOR_STEPS = {"slstm": slstm_step, "mingru": mingru_step, "minlstm": minlstm_step, "lru": lru_step}


def unroll_successor(
    kind: str, params: dict, x: Tensor, hx, num_layers: int, bidirectional: bool, **cfg
) -> dict:
    """As `unroll`, for the successors; hx is h_0 (minGRU, minLSTM) or (h_0, c_0) (sLSTM, LRU)."""
    has_cell = kind in ("slstm", "lru")

    def first(k: int, P: dict, B: int) -> tuple:
        return (hx[0][k], hx[1][k]) if has_cell else (hx[k],)

    def step(P: dict, x_t: Tensor, state: tuple) -> tuple:
        return SUCCESSOR_STEPS[kind](P, x_t, state, **cfg)

    return _unroll_layers(params, x, num_layers, bidirectional, first, step, has_cell)
