"""The LSTM as Hochreiter & Schmidhuber (1997) built it: memory blocks and the truncated gradient.

The `original` variant of `bptt.LSTM` keeps the 1997 cell (no forget gate) in PyTorch's layout:
one input and one output gate per cell, tanh squashing, the full gradient. The paper's networks
differ in three ways, all here:

* memory blocks: S cells share one input gate and one output gate;
* every hidden unit — each cell and each gate — reads the input, every hidden unit's activation
  at t − 1 (cells' outputs and gates alike) and a bias, and the output layer reads the cells only;
* the truncated gradient: errors arriving at the net inputs of cells and gates are not propagated
  further back in time; the error flows back only along the cell states (the Constant Error
  Carousel), with ∂s_c(t)/∂s_c(t−1) = 1.

With N = K blocks × S cells + 2K gates hidden units, u_t = [x_t, y(t−1), 1] and cell c in block j:

    y^in_j(t)  = f(W_in,j · u_t)                    input gate,  f = σ
    y^out_j(t) = f(W_out,j · u_t)                   output gate
    s_c(t)     = s_c(t−1) + y^in_j(t) g(W_c · u_t)  the CEC,     g(z) = 4σ(z) − 2 ∈ [−2, 2]
    y^c(t)     = y^out_j(t) h(s_c(t))               cell output, h(z) = 2σ(z) − 1 ∈ [−1, 1]
    y^k(t)     = f(W_k · [y^c(t), 1])               output units read the cells only

The adding experiment (Exp. 4): 2 inputs, 2 blocks × 2 cells, 1 output: 8 hidden units × (2 + 8 + 1)
+ 1 × (4 + 1) = 93 weights, as the paper counts.

Rows of `weight` (N, I + N + 1): the C = K·S cells (block by block), then the K input gates, then the
K output gates; columns: the input, the hidden units in the same order, the bias.

`truncated_grad` computes the truncated gradient of a loss at the last step in closed form, one
pass over the stored forward: with one target at the end, ∂E/∂s_c(t) is the same at every t along
the carousel, so every weight's gradient is that constant times a sum over time of forward
quantities (what the paper's RTRL-like accumulators hold).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .. import _checks


@dataclass
class BlockTape:
    """What the forward pass keeps for `truncated_grad`; K independent sequences (or trials)."""

    u: Tensor  # (T, K, I + N + 1): the inputs of every hidden unit at each step
    y_in: Tensor  # (T, K, blocks)
    g_net: Tensor  # (T, K, C): σ(W_c · u_t), from which g and g' follow
    active: Tensor  # (T, K): whether step t is part of sequence k
    s: Tensor  # (K, C): s_c at each sequence's last step
    y_out: Tensor  # (K, blocks): the output gates at the last step
    u_last: Tensor  # (K, I + N + 1): u at the last step
    y_cells: Tensor  # (K, C): the cells' outputs at the last step


def _expand(w: Tensor, K: int) -> Tensor:
    return w.expand(K, *w.shape[-2:]) if w.dim() == 2 else w


def block_forward(
    weight: Tensor,
    x: Tensor,
    blocks: int,
    cells_per_block: int,
    active: Tensor | None = None,
    truncate: bool = True,
) -> BlockTape:
    """Run the memory blocks over x (T, K, I); `weight` (N, I + N + 1) shared or (K, N, I + N + 1) per sequence.

    `active` (T, K) marks the steps of each sequence (sequences of different lengths in one batch):
    past its end a sequence's state stays as it was. With `truncate`, the recurrent inputs enter
    the net inputs detached, so autograd computes the truncated gradient too.
    """
    T, K, I = x.shape
    B, S = blocks, cells_per_block
    C = B * S
    N = C + 2 * B
    if weight.shape[-2:] != (N, I + N + 1):
        raise _checks.InputError(
            f"expected weight of shape ({N}, {I + N + 1}) for {B} blocks of {S} cells "
            f"and input size {I}, got {_checks.shape_str(weight.shape)}"
        )
    W = _expand(weight, K)
    W_h = W[:, :, I : I + N]
    # the input and bias parts of every net input, for all steps at once: W_x x_t + b   (T, K, N)
    net_x = torch.einsum("kni,tki->tkn", W[:, :, :I], x) + W[:, :, -1]
    y = x.new_zeros(K, N)  # y(0) = 0: cells, input gates, output gates
    s = x.new_zeros(K, B, S)
    ys, y_ins, g_nets = [y], [], []
    for t in range(T):
        prev = y.detach() if truncate else y
        net = torch.baddbmm(net_x[t].unsqueeze(-1), W_h, prev.unsqueeze(-1)).squeeze(-1)  # W · u_t
        sig = torch.sigmoid(net)
        g_sig = sig[:, :C].view(K, B, S)
        y_in, y_out = sig[:, C : C + B], sig[:, C + B :]
        s_new = torch.addcmul(s, y_in.unsqueeze(-1), 4 * g_sig - 2)  # s_c(t) = s_c(t−1) + y^in_j g(net_c)
        y_c = y_out.unsqueeze(-1) * torch.tanh(
            s_new / 2
        )  # y^c(t) = y^out_j h(s_c(t)),  h(s) = 2σ(s) − 1 = tanh(s/2)
        y_new = torch.cat([y_c.view(K, C), sig[:, C:]], dim=-1)
        if active is None:
            s, y = s_new, y_new
        else:
            a = active[t].view(K, 1)
            s, y = torch.where(a.unsqueeze(-1), s_new, s), torch.where(a, y_new, y)
        ys.append(y)
        y_ins.append(y_in)
        g_nets.append(sig[:, :C])
    act = torch.ones(T, K, dtype=torch.bool) if active is None else active
    prevs = torch.stack(ys[:-1])  # y(t−1) for every t   (T, K, N)
    u = torch.cat([x, prevs, x.new_ones(T, K, 1)], dim=-1)  # u_t = [x_t, y(t−1), 1]
    last = act.long().cumsum(0).argmax(0) if active is not None else torch.full((K,), T - 1)
    return BlockTape(
        u=u,
        y_in=torch.stack(y_ins),
        g_net=torch.stack(g_nets),
        active=act,
        s=s.reshape(K, C),
        y_out=y[:, C + B :],
        u_last=u[last, torch.arange(K)],
        y_cells=y[:, :C],
    )


def block_output(weight_out: Tensor, y_cells: Tensor) -> Tensor:
    """y^k = σ(W_k · [y^c, 1]); weight_out (O, C + 1) shared or (K, O, C + 1)."""
    one = y_cells.new_ones(y_cells.shape[0], 1)
    W = _expand(weight_out, y_cells.shape[0])
    return torch.sigmoid(torch.bmm(W, torch.cat([y_cells, one], dim=-1).unsqueeze(-1)).squeeze(-1))


def truncated_grad(
    tape: BlockTape, weight: Tensor, weight_out: Tensor, target: Tensor, blocks: int, cells_per_block: int
) -> tuple[Tensor, Tensor, Tensor]:
    """(E, ∂E/∂weight, ∂E/∂weight_out) per sequence, E = ½ Σ_k (y^k − target_k)², truncated gradient.

    Shapes: target (K, O); returns E (K,), (K, N, I + N + 1), (K, O, C + 1).
    """
    C = blocks * cells_per_block
    K = target.shape[0]
    W, Wo = _expand(weight, K), _expand(weight_out, K)
    y_k = block_output(Wo, tape.y_cells)
    err = y_k - target
    E = 0.5 * err.pow(2).sum(-1)
    d_net_k = err * y_k * (1 - y_k)  # ∂E/∂net_k = (y^k − t_k) f'(net_k)
    d_wo = d_net_k.unsqueeze(-1) * torch.cat([tape.y_cells, tape.y_cells.new_ones(K, 1)], -1).unsqueeze(1)
    e_c = torch.bmm(Wo[:, :, :C].transpose(1, 2), d_net_k.unsqueeze(-1)).squeeze(-1)  # ∂E/∂y^c(T)
    h_sig = torch.sigmoid(tape.s)
    h = 2 * h_sig - 1
    y_out_c = tape.y_out.repeat_interleave(cells_per_block, dim=-1)
    # ∂E/∂net_out,j(T) = Σ_{c ∈ j} ∂E/∂y^c h(s_c) · f'(net_out,j)
    d_out = (e_c * h).view(K, blocks, cells_per_block).sum(-1) * tape.y_out * (1 - tape.y_out)
    # ∂E/∂s_c(t) = ∂E/∂y^c(T) y^out_j h'(s_c(T)) for every t: the carousel carries it back unchanged
    d_s = e_c * y_out_c * 2 * h_sig * (1 - h_sig)
    mask = tape.active.unsqueeze(-1).to(tape.u.dtype)
    y_in_c = tape.y_in.repeat_interleave(cells_per_block, dim=-1)
    g = 4 * tape.g_net - 2
    # ∂E/∂net_c(t) = ∂E/∂s_c · y^in_j(t) g'(net_c(t)),  g' = 4σ(1 − σ)
    d_net_c = d_s * y_in_c * 4 * tape.g_net * (1 - tape.g_net) * mask
    # ∂E/∂net_in,j(t) = Σ_{c ∈ j} ∂E/∂s_c · g(net_c(t)) · f'(net_in,j(t))
    T = g.shape[0]
    d_net_in = (d_s * g).view(T, K, blocks, cells_per_block).sum(-1) * tape.y_in * (1 - tape.y_in) * mask
    d_w = torch.cat(
        [
            torch.einsum("tkn,tkm->knm", d_net_c, tape.u),  # Σ_t ∂E/∂net(t) u_tᵀ
            torch.einsum("tkn,tkm->knm", d_net_in, tape.u),
            d_out.unsqueeze(-1) * tape.u_last.unsqueeze(1),  # the output gates: only at the last step
        ],
        dim=1,
    )
    del W
    return E, d_w, d_wo


class MemoryBlockLSTM(nn.Module):
    """HS97's LSTM: `blocks` memory blocks of `cells_per_block` cells, a sigmoid output layer on the cells.

    Arguments:
        input_size: features per step.
        blocks, cells_per_block: the memory blocks (Exp. 4: 2 and 2).
        output_size: output units (read at the last step).
        truncate: HS97's truncated gradient under autograd (True) or the full gradient (False).
        input_gate_bias: per block (Exp. 4: −3, −6); other weights U[−init_range, init_range].

    Shapes: x (T, B, input_size) → (B, output_size).

    Example:
        >>> import torch
        >>> net = MemoryBlockLSTM(2, blocks=2, cells_per_block=2, input_gate_bias=(-3.0, -6.0))
        >>> sum(p.numel() for p in net.parameters())  # the paper's 93 weights
        93
        >>> net(torch.randn(10, 3, 2)).shape
        torch.Size([3, 1])
    """

    def __init__(
        self,
        input_size: int,
        blocks: int = 2,
        cells_per_block: int = 2,
        output_size: int = 1,
        truncate: bool = True,
        input_gate_bias: tuple[float, ...] | None = None,
        init_range: float = 0.1,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.input_size = _checks.positive_int("input_size", input_size)
        self.blocks = _checks.positive_int("blocks", blocks)
        self.cells_per_block = _checks.positive_int("cells_per_block", cells_per_block)
        self.truncate = _checks.flag("truncate", truncate)
        C = blocks * cells_per_block
        N = C + 2 * blocks
        self.weight = nn.Parameter(torch.empty(N, input_size + N + 1))
        self.weight_out = nn.Parameter(torch.empty(_checks.positive_int("output_size", output_size), C + 1))
        with torch.no_grad():
            self.weight.uniform_(-init_range, init_range, generator=generator)
            self.weight_out.uniform_(-init_range, init_range, generator=generator)
            if input_gate_bias is not None:
                if len(input_gate_bias) != blocks:
                    raise _checks.InputError(
                        f"expected one input-gate bias per block ({blocks}), got {len(input_gate_bias)}"
                    )
                self.weight[C : C + blocks, -1] = torch.tensor(input_gate_bias)

    def forward(self, x: Tensor, active: Tensor | None = None) -> Tensor:
        tape = block_forward(self.weight, x, self.blocks, self.cells_per_block, active, self.truncate)
        return block_output(self.weight_out, tape.y_cells)
