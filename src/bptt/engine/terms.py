"""Parameter gradients as sums over time of per-step terms.

Every parameter gradient of a recurrent layer is a sum over steps k of the seeds' temporal
contribution ∂L/∂θ|_k = ∂L/∂(step k) · ∂(step k)/∂θ, the earlier states held constant. For the
cells here each such term has one of two forms:

* `Outer(u, v)`: ∂L/∂W = Σ_k Σ_b u[k, b] v[k, b]ᵀ, e.g. ∂L/∂W_ih = Σ_k dgx_kᵀ x_k;
* `Sum(x)`:      ∂L/∂p = Σ_k Σ_b x[k, b],           e.g. ∂L/∂b_ih = Σ_k Σ_b dgx_k.

One description gives three things, so each gradient formula is written once:
`total()` (one matmul over all T·B rows after the sweep), `at(k)` (the step-k contribution) and
`sq_norms()` (the (T,) squared Frobenius norms, in float64, of every step's contribution, computed through
B×B Gram matrices: ‖uᵀv‖²_F = Σ_{b,b'} (u uᵀ)_{bb'} (v vᵀ)_{bb'}, never T parameter-sized tensors).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .matmul import matmul_tn

if TYPE_CHECKING:
    from .tape import Tape

_CHUNK_ELEMENTS = 1 << 24  # bound on the temporary (chunk, B, B) or (chunk, m, n) tensors


@dataclass(frozen=True)
class Outer:
    """Σ_{k,b} u[k, b] v[k, b]ᵀ with u: (T, B, m), v: (T, B, n); the gradient has shape (m, n)."""

    u: Tensor
    v: Tensor

    def total(self) -> Tensor:
        m, n = self.u.shape[-1], self.v.shape[-1]
        return matmul_tn(self.u.reshape(-1, m), self.v.reshape(-1, n))

    def at(self, k: int) -> Tensor:
        return self.u[k].T @ self.v[k]

    def sq_norms(self) -> Tensor:
        T, B, m = self.u.shape
        n = self.v.shape[-1]
        # Gram form costs B²(m+n) per step, the direct form B·m·n; take the cheaper.
        gram = B * (m + n) <= m * n
        chunk = max(1, _CHUNK_ELEMENTS // max(B * B if gram else m * n, 1))
        if chunk >= T:  # one chunk (the usual case): no buffer to gather the chunks in
            return _sq_norms(self.u, self.v, gram)
        out = self.u.new_empty(T, dtype=torch.float64)
        for s in range(0, T, chunk):
            out[s : s + chunk] = _sq_norms(self.u[s : s + chunk], self.v[s : s + chunk], gram)
        return out


def _sq_norms(u: Tensor, v: Tensor, gram: bool) -> Tensor:
    """(c,) ‖u_kᵀ v_k‖²_F for u (c, B, m), v (c, B, n), in float64 (the squares of small terms
    underflow float32; `double()` of a float64 factor is the factor itself)."""
    c = u.shape[0]
    u, v = u.double(), v.double()
    if gram:  # ‖uᵀv‖²_F = Σ (u uᵀ) ⊙ (v vᵀ)
        a, b = torch.bmm(u, u.transpose(1, 2)), torch.bmm(v, v.transpose(1, 2))
    else:
        a = b = torch.bmm(u.transpose(1, 2), v)
    # Σ a ⊙ b over each step's entries as one batched product, (c, 1, N)(c, N, 1)
    return torch.bmm(a.reshape(c, 1, -1), b.reshape(c, -1, 1)).view(c)


@dataclass(frozen=True)
class Sum:
    """Σ_{k,b} x[k, b] with x: (T, B, *shape); the gradient has shape `shape`."""

    x: Tensor

    def total(self) -> Tensor:
        return self.x.sum((0, 1))

    def at(self, k: int) -> Tensor:
        return self.x[k].sum(0)

    def sq_norms(self) -> Tensor:
        return self.x.sum(1).double().pow(2).flatten(1).sum(1)


Term = Outer | Sum


def sq_norms(terms: Iterable[Term]) -> Tensor:
    """(T,) Σ over `terms` (at least one) of their squared norms at every step, in float64: one
    `Outer` per left factor.

    Terms with the same left factor u are one term: ‖uᵀv₁‖² + ‖uᵀv₂‖² = ‖uᵀ[v₁ v₂]‖², and a
    `Sum(u)` is `Outer(u, 1)`. So a layer's W_ih, W_hh, b_ih and b_hh (u = ∂L/∂gx_t for all four in an
    LSTM) cost one Gram product instead of four terms' worth of small ones.

    Example:
        >>> u, x, h = torch.randn(5, 3, 8), torch.randn(5, 3, 2), torch.randn(5, 3, 4)
        >>> parts = [Outer(u, x), Outer(u, h), Sum(u), Sum(u)]
        >>> bool(torch.allclose(sq_norms(parts), sum(t.sq_norms() for t in parts)))
        True
    """
    groups: dict[int, tuple[Tensor, list[Tensor], list[Sum]]] = {}  # by u: u, the v's, the Sum(u)'s
    alone: list[Term] = []
    for term in terms:
        u = term.u if isinstance(term, Outer) else term.x
        if u.dim() != 3:  # a Sum over more than one axis of features
            alone.append(term)
            continue
        _, vs, sums = groups.setdefault(id(u), (u, [], []))
        if isinstance(term, Outer):
            vs.append(term.v)
        else:
            sums.append(term)
    out = [Outer(u, _joined(u, vs, len(sums))).sq_norms() for u, vs, sums in groups.values()]
    out += [term.sq_norms() for term in alone]
    return sum(out[1:], out[0])


def _joined(u: Tensor, vs: list[Tensor], sums: int) -> Tensor:
    """The v's side by side, and a column of ones for each of the `sums` terms Sum(u) (in one
    operator). The ones are float64 where the whole concatenation in float64 stays within
    `_CHUNK_ELEMENTS`: it then comes out float64 in one operator, with no cast after it; else they
    are in u's dtype and each chunk is cast."""
    if sums == 0 and len(vs) == 1:
        return vs[0]
    if sums:
        T, B = u.shape[:2]
        small = T * B * (sum(v.shape[-1] for v in vs) + sums) <= _CHUNK_ELEMENTS
        vs = [*vs, u.new_ones((T, B, sums), dtype=torch.float64 if small else u.dtype)]
    return vs[0] if len(vs) == 1 else torch.cat(vs, dim=-1)


def projection_terms(tape: Tape, p: Mapping[str, Tensor]) -> dict[str, Term]:
    """The terms every cell shares: W_ih, W_hh and the two biases.

    ∂L/∂W_ih = Σ_k dgx_kᵀ x_k,  ∂L/∂W_hh = Σ_k dgh_kᵀ h_{k−1},  ∂L/∂b_ih = Σ_k dgx_k,  ∂L/∂b_hh = Σ_k dgh_k.
    """
    dgx, dgh = tape.dgx, tape.dgh
    if dgx is None or dgh is None:
        raise RuntimeError("the gradient terms need a tape the backward sweep has filled")
    terms: dict[str, Term] = {"weight_ih": Outer(dgx, tape.x)}
    if "weight_hh" in p:
        terms["weight_hh"] = Outer(dgh, tape.h_prev)
    if "bias_ih" in p:
        terms["bias_ih"] = Sum(dgx)
    if "bias_hh" in p:
        terms["bias_hh"] = terms["bias_ih"] if dgh is dgx else Sum(dgh)
    return terms
