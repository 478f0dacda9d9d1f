"""`bptt.trace`: one forward and one explicit backward pass, with everything along the way kept.

The seeds write the BPTT gradient as a sum over steps (seed 001):

    ∂L/∂θ = Σ_k ∂L/∂θ|_k,   ∂L/∂θ|_k = ∂L/∂(state_k) · ∂(state_k)/∂θ   (state_{k−1} held constant)

A `Trace` holds the total gradient at every step (`dh`, `dc`), every step's term of that sum
(`contribution(k)`, `contribution_norms()`), and the states and gates the forward pass produced.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from . import _checks
from ._checks import InputError, InputTypeError
from .cells.base import RecurrentBase, State
from .convert import from_torch, torch_recurrent
from .engine import gpu
from .engine.function import LayerPlan
from .engine.sweep import Step, allocate_step_grads
from .engine.tape import Tape
from .engine.terms import Term, sq_norms

LossFn = Callable[[Tensor, State], Tensor]


@dataclass
class Trace:
    """The record of one traced forward and backward pass.

    Per-step tensors have shape (num_layers · num_directions, T, B, features), time-major whatever
    the model's `batch_first`, in h_n's order of layers and directions; an unbatched input has B = 1.

    Attributes:
        loss: the scalar loss.
        output, state: what the model returned (detached), in the model's own layout; a packed output
            padded, (T, B, ·) in the sequences' own order.
        grads: ∂loss/∂θ for every parameter, keyed like `model.named_parameters()` (computed from
            the tapes on first use where the trace came from `bptt.watch`).
        h: h_t for every layer-direction and step; c: c_t (LSTM, else None).
        gates: gate activations by name (LSTM i, f, g, o; GRU r, z, n; none for the Elman RNN).
        dh, dc: the total ∂loss/∂h_t and ∂loss/∂c_t, through all later steps and the layers above.
            Of a single layer-direction, h, c, gates, dh and dc are views of its tape (no copies):
            change a clone of them. A change in place of what the tapes hold (these views, or
            the input the trace ran on) makes the contributions and diagnostics raise, not read it.
        model: the bptt model that ran (a converted twin for a torch.nn module).
        lengths: each sequence's own number of steps (B,) (a packed input, or set by the caller for a
            padded one), or None where every sequence has T;
            the diagnostics count no step after a sequence's end.
    """

    loss: Tensor
    output: Tensor
    state: State
    h: Tensor
    c: Tensor | None
    gates: dict[str, Tensor]
    dh: Tensor
    dc: Tensor | None
    model: RecurrentBase
    tapes: list[Tape] = field(repr=False)
    params: dict[str, Tensor] = field(repr=False)
    _grads: dict[str, Tensor] | None = field(default=None, repr=False)
    lengths: Tensor | None = None  # (B,) each sequence's own number of steps, where they differ
    # what the tapes hold, and its version counters when the trace was built (`_check_tapes`)
    _held: tuple[Tensor, ...] = field(default=(), repr=False, compare=False)
    _versions: tuple[int, ...] | None = field(default=None, repr=False, compare=False)
    # what the diagnostics computed once from this trace (a trace never changes), by request
    memo: dict[tuple[object, ...], Tensor] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def grads(self) -> dict[str, Tensor]:
        """∂loss/∂θ for every parameter: Σ_k ∂loss/∂θ|_k, one matmul per parameter over all T·B rows."""
        if self._grads is None:
            self._check_tapes()
            totals: dict[str, Tensor] = {}
            with torch.no_grad():
                for plan, terms in self._terms:
                    for suffix, name in zip(plan.suffixes, plan.names, strict=True):
                        totals[name] = terms[suffix].total().clone()  # b_ih and b_hh may share a term
            self._grads = {name: totals[name] for name in self.params}
        return self._grads

    @cached_property
    def dx(self) -> Tensor:
        """(T, B, I) ∂loss/∂x_t, the gradient of the loss with respect to every input step ("which inputs matter").

        ∂loss/∂x_t = Σ_directions W_ihᵀ ∂loss/∂gx_t of the first layer, time-major like `dh`.

        Example:
            >>> import torch, bptt
            >>> tr = bptt.trace(bptt.GRU(3, 5), torch.randn(8, 2, 3), lambda out, h: out[-1].sum())
            >>> tr.dx.shape, bool(tr.dx[-1].abs().sum() > 0)
            (torch.Size([8, 2, 3]), True)
        """
        self._check_tapes()
        out = torch.zeros_like(self.tapes[0].x)
        with torch.no_grad():
            for plan, tape in zip(self.model.plans, self.tapes, strict=True):
                if plan.layer == 0:
                    assert tape.dgx is not None
                    T, B, I = tape.x.shape
                    w_ih = self.params[plan.names[plan.suffixes.index("weight_ih")]]
                    out += (tape.dgx.reshape(T * B, -1) @ w_ih).view(T, B, I)  # ∂L/∂x_t = W_ihᵀ ∂L/∂gx_t
        return out

    @property
    def steps(self) -> int:
        """T, the sequence length."""
        return self.h.shape[1]

    def layer(
        self, layer: int = 0, direction: int = 0, samples: slice | None = None
    ) -> tuple[Step, Tape, dict[str, Tensor]]:
        """The step equations, tape (of `samples` only, if given) and parameters (by suffix) of one layer-direction."""
        D = self.model.num_directions
        if not 0 <= layer < self.model.num_layers or direction not in range(D):
            raise InputError(
                f"expected layer in [0, {self.model.num_layers}) and direction in [0, {D}), got {layer} and {direction}"
            )
        self._check_tapes()
        k = layer * D + direction
        plan = self.model.plans[k]
        tape = self.tapes[k] if samples is None else self.tapes[k].samples(samples)
        params = {s: self.params[n].detach() for s, n in zip(plan.suffixes, plan.names, strict=True)}
        return plan.step, tape, params

    @cached_property
    def _terms(self) -> list[tuple[LayerPlan, dict[str, Term]]]:
        out = []
        with torch.no_grad():
            for plan, tape in zip(self.model.plans, self.tapes, strict=True):
                p = {s: self.params[n] for s, n in zip(plan.suffixes, plan.names, strict=True)}
                out.append((plan, plan.step.grad_terms(tape, p)))
        return out

    def contribution(self, k: int) -> dict[str, Tensor]:
        """∂loss/∂θ|_k for every parameter: step k's immediate ∂(step k)/∂θ times the total gradient there.

        Summed over k = 0..T−1 these equal `grads`. For a bidirectional layer, step k is the step
        at time position k in both directions.

        Example:
            >>> import torch, bptt
            >>> rnn = bptt.RNN(2, 4)
            >>> tr = bptt.trace(rnn, torch.randn(6, 3, 2), lambda out, h: out[-1].pow(2).sum())
            >>> total = sum(tr.contribution(k)["weight_hh_l0"] for k in range(6))
            >>> torch.allclose(total, tr.grads["weight_hh_l0"], atol=1e-6)
            True
        """
        T = self.steps
        if isinstance(k, bool) or not isinstance(k, int) or not -T <= k < T:
            raise InputError(f"expected a time step k in [0, {T}), got {k!r}")
        k %= T
        self._check_tapes()
        out = {}
        with torch.no_grad():
            for plan, terms in self._terms:
                for suffix, name in zip(plan.suffixes, plan.names, strict=True):
                    out[name] = terms[suffix].at(k)
        return {name: out[name] for name in self.grads}

    def contribution_norms(self) -> Tensor:
        """(T,) L2 norm of every step's whole contribution vector (all parameters together), in float64.

        Computed from B×B Gram matrices per step, without forming T parameter-sized tensors; the
        squares are summed in float64 so that a float32 model's vanishing contributions (below
        ~1e−19, whose squares float32 cannot hold) do not read 0.
        """
        self._check_tapes()
        with torch.no_grad():
            return sq_norms(term for _, terms in self._terms for term in terms.values()).sqrt()

    def _check_tapes(self) -> None:
        """Raise where something the tapes hold was changed in place since the trace was built."""
        if self._versions is not None and tuple(t._version for t in self._held) != self._versions:
            raise InputError(
                "expected the trace's tapes as they were when it was built, but something they hold was "
                "changed in place since (trace.h, c, gates, dh and dc of a one-layer trace are views of "
                "them, and they hold the input the model ran on): the contributions and diagnostics "
                "would read the changed values; change a clone instead (e.g. trace.h.clone())"
            )


def _held(tapes: list[Tape]) -> tuple[Tensor, ...]:
    """Every tensor the tapes hold that has a version counter (an in-place change bumps it; a view
    shares its base's): not an inference tensor."""
    return tuple(
        t
        for tape in tapes
        for t in (*(getattr(tape, name) for name in _TAPE_FIELDS), *tape.extras.values())
        if isinstance(t, Tensor) and not t.is_inference()
    )


_TAPE_FIELDS = tuple(f.name for f in dataclasses.fields(Tape) if f.name != "extras")


def _stack(tensors: list[Tensor]) -> Tensor:
    """(L·D, T, …) of each layer-direction's (T, …): a view of the one where there is one (no copy,
    `Trace._check_tapes` guards it), else a copy."""
    return (
        tensors[0].detach().unsqueeze(0) if len(tensors) == 1 else torch.stack([t.detach() for t in tensors])
    )


def _filled(t: Tensor | None) -> Tensor:
    """A buffer of the tape that the backward sweep (or `_zero_fill`) has filled."""
    assert t is not None
    return t


def trace(
    model: nn.Module, input: Tensor | PackedSequence, loss_fn: LossFn, hx: State | None = None
) -> Trace:
    """Run `model` on `input`, compute `loss_fn(output, state)` and backpropagate through time, keeping it all.

    Arguments:
        model: a `bptt.RNN`/`LSTM`/`GRU`, or a `torch.nn.RNN`/`LSTM`/`GRU` (traced through its bptt twin).
        input: as the model's forward takes it, a PackedSequence too (`Trace.lengths` then holds each
            sequence's number of steps); must be finite.
        loss_fn: `(output, state) -> scalar tensor`, where state is h_n or (h_n, c_n).
        hx: initial state as the model's forward takes it; zeros when None.

    The model's parameters and their `.grad` are left untouched.

    Example:
        >>> import torch, bptt
        >>> lstm = torch.nn.LSTM(2, 8)
        >>> tr = bptt.trace(lstm, torch.randn(20, 4, 2), lambda out, state: out[-1].sum())
        >>> tr.dc.shape  # (layers · directions, T, B, H)
        torch.Size([1, 20, 4, 8])
        >>> tr.contribution_norms().shape
        torch.Size([20])
    """
    if isinstance(model, torch_recurrent()):
        bmodel = from_torch(model)
    elif isinstance(model, RecurrentBase):
        bmodel = model
    else:
        kind = f"{type(model).__module__}.{type(model).__name__}"
        found = (
            [n for n, m in model.named_modules() if isinstance(m, (RecurrentBase, *torch_recurrent()))]
            if isinstance(model, nn.Module)
            else []
        )
        hint = (
            f"; it holds the recurrent submodules {', '.join(found)}: pass one of them (model.{found[0]}), "
            "or watch the whole model in its own training step with bptt.watch(model)"
            if found
            else "; pass the recurrent submodule of a larger model"
        )
        raise InputTypeError(
            f"trace expects a bptt.RNN/LSTM/GRU or a torch.nn.RNN/LSTM/GRU, got {kind}{hint}"
        )
    if not callable(loss_fn):
        raise InputTypeError(
            f"expected loss_fn to be callable as loss_fn(output, state), got {type(loss_fn).__name__}"
        )
    data = input.data if isinstance(input, PackedSequence) else input
    if isinstance(data, Tensor) and not data.is_floating_point() and not data.is_complex():
        raise InputTypeError(
            f"expected a floating-point input (T, B, {bmodel.input_size}), got {data.dtype} of shape "
            f"{_checks.shape_str(data.shape)}: token ids? embed them first (e.g. with the model's "
            "torch.nn.Embedding) and trace the recurrent module on the embeddings, or watch the whole "
            "model with bptt.watch(model)"
        )
    # (T, B, features) in the sequences' own order, for the check below (the model runs `input` itself)
    x = pad_packed_sequence(input)[0] if isinstance(input, PackedSequence) else bmodel._time_major(input)[0]
    bad = _checks.first_non_finite(x)
    if bad is not None:
        t, b, f = bad
        raise InputError(
            f"expected a finite input, got {x[t, b, f].item()} at time step t={t}, batch index b={b}, feature {f}"
        )

    params = {name: p.detach().requires_grad_(True) for name, p in bmodel.named_parameters()}
    tapes: list[Tape] = []
    with torch.enable_grad():
        output, state = bmodel.run(input, hx, params=params, recorder=tapes)
        loss = loss_fn(output, state)
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            got = (
                f"a tensor of shape {_checks.shape_str(loss.shape)}"
                if isinstance(loss, Tensor)
                else type(loss).__name__
            )
            raise InputError(f"expected loss_fn to return a scalar tensor, got {got}")
        if not loss.requires_grad:
            raise InputError(
                "expected loss_fn's result to depend on the model's output or state; it has no gradient"
            )
        grads = torch.autograd.grad(loss.reshape(()), list(params.values()), allow_unused=True)

    return build(
        bmodel,
        tapes,
        params,
        loss.detach().reshape(()),
        output,
        state,
        {
            n: (g if g is not None else torch.zeros_like(params[n]))
            for n, g in zip(params, grads, strict=True)
        },
    )


def build(
    model: RecurrentBase,
    tapes: list[Tape],
    params: dict[str, Tensor],
    loss: Tensor,
    output: Tensor | PackedSequence,
    state: State,
    grads: dict[str, Tensor] | None = None,
) -> Trace:
    """A `Trace` from the tapes of one forward pass whose backward pass has run (`trace` and `bptt.watch`).

    A packed output is kept padded, (T, B, ·) in the sequences' own order, with their `lengths`.
    """
    step = model.step
    lengths = None
    if isinstance(output, PackedSequence):
        output, lengths = pad_packed_sequence(output)
    for tape in tapes:  # a layer whose outputs the loss never reads gets no backward call
        if tape.dh is None:
            _zero_fill(step, tape)
    gates = [step.gates(t) for t in tapes]
    traced = Trace(
        loss=loss,
        output=output.detach(),
        state=(state[0].detach(), state[1].detach()) if isinstance(state, tuple) else state.detach(),
        h=_stack([t.h for t in tapes]),
        c=_stack([t.c for t in tapes]) if step.has_cell else None,
        gates={name: _stack([g[name] for g in gates]) for name in gates[0]},
        dh=_stack([_filled(t.dh) for t in tapes]),
        dc=_stack([_filled(t.dc) for t in tapes]) if step.has_cell else None,
        model=model,
        tapes=tapes,
        params=params,
        lengths=lengths,
        _grads=grads,
    )
    traced._held = _held(tapes)
    traced._versions = tuple(t._version for t in traced._held)
    # a split sweep whose grid barrier gave up raises here, not later; after the copies above (of
    # a trace of several layer-directions) are queued, so that the GPU works on them while this waits
    gpu.check_barriers(wait=True)
    return traced


def _zero_fill(step: Step, tape: Tape) -> None:
    allocate_step_grads(step, tape, tape.x)
    for t in (tape.dh, tape.dgx, tape.dgh, tape.dc):
        if t is not None:
            t.zero_()
