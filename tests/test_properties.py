"""Properties over random shapes (hypothesis): parity with torch.nn, step-by-step = whole sequence."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

import bptt

from helpers import rel_err, weighted_loss

F64 = torch.float64

shapes = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["rnn_tanh", "rnn_relu", "lstm", "lstm_proj", "gru"]),
        "T": st.integers(1, 6),
        "B": st.integers(1, 4),
        "I": st.integers(1, 5),
        "H": st.integers(2, 6),
        "num_layers": st.integers(1, 3),
        "bidirectional": st.booleans(),
        "batch_first": st.booleans(),
        "bias": st.booleans(),
        "seed": st.integers(0, 2**16),
    }
)


def torch_module(s: dict) -> torch.nn.Module:
    kw = dict(
        input_size=s["I"],
        hidden_size=s["H"],
        num_layers=s["num_layers"],
        bidirectional=s["bidirectional"],
        batch_first=s["batch_first"],
        bias=s["bias"],
        dtype=F64,
    )
    kind = s["kind"]
    if kind.startswith("rnn"):
        return torch.nn.RNN(nonlinearity=kind[4:], **kw)
    if kind == "lstm_proj":
        return torch.nn.LSTM(proj_size=s["H"] - 1, **kw)
    return torch.nn.LSTM(**kw) if kind == "lstm" else torch.nn.GRU(**kw)


@given(shapes)
def test_any_shape_matches_torch_nn(s: dict) -> None:
    torch.manual_seed(s["seed"])
    ref = torch_module(s)
    ours = bptt.from_torch(ref)
    shape = (s["B"], s["T"], s["I"]) if s["batch_first"] else (s["T"], s["B"], s["I"])
    x = torch.randn(shape, dtype=F64)
    out_r, state_r = ref(x)
    out, state = ours(x)
    assert rel_err(out, out_r) < 1e-10
    g_r = torch.autograd.grad(weighted_loss(out_r, state_r), list(ref.parameters()))
    g = torch.autograd.grad(weighted_loss(out, state), list(ours.parameters()))
    for a, b in zip(g, g_r, strict=True):
        assert rel_err(a, b) < 1e-10


@given(shapes)
def test_step_by_step_equals_whole_sequence(s: dict) -> None:
    """Feeding one step at a time and carrying the state gives the whole-sequence result (unidirectional)."""
    torch.manual_seed(s["seed"])
    model = bptt.from_torch(torch_module({**s, "bidirectional": False, "batch_first": False}))
    x = torch.randn(s["T"], s["B"], s["I"], dtype=F64)
    out, state = model(x)
    outs, carried = [], None
    for t in range(s["T"]):
        o, carried = model(x[t : t + 1], carried)
        outs.append(o)
    assert rel_err(torch.cat(outs), out) < 1e-12
    for a, b in zip(
        carried if isinstance(carried, tuple) else (carried,),
        state if isinstance(state, tuple) else (state,),
        strict=True,
    ):
        assert rel_err(a, b) < 1e-12


@given(shapes, st.sampled_from(sorted(bptt.VARIANTS)))
def test_trace_contributions_sum_to_grads_for_any_shape(s: dict, variant: str) -> None:
    torch.manual_seed(s["seed"])
    model = bptt.LSTM(
        s["I"],
        s["H"],
        num_layers=s["num_layers"],
        bidirectional=s["bidirectional"],
        variant=variant,
        dtype=F64,
    )
    tr = bptt.trace(model, torch.randn(s["T"], s["B"], s["I"], dtype=F64), weighted_loss)
    contributions = [tr.contribution(k) for k in range(s["T"])]
    for name, g in tr.grads.items():
        assert rel_err(sum(c[name] for c in contributions), g) < 1e-10, name
    assert tr.dh.shape == (s["num_layers"] * (2 if s["bidirectional"] else 1), s["T"], s["B"], s["H"])


@given(
    values=st.lists(
        st.one_of(
            st.floats(allow_nan=True, allow_infinity=True, width=32),
            st.sampled_from([3.0e38, -3.0e38, 65504.0]),  # sums past the dtype's range stay finite
        ),
        min_size=0,
        max_size=40,
    ),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.float16]),
)
def test_the_first_non_finite_entry_is_found_from_one_sum(values: list[float], dtype: torch.dtype) -> None:
    """`_checks.first_non_finite` (the trace's input check, the NaN guard): whether there is one from
    x summed (NaN and ±inf carry through a sum), the index only where the sum is not finite; the
    same as isfinite's first, entries huge enough that their sum overflows (or that overflow in
    float16) included."""
    from bptt import _checks

    x = torch.tensor(values, dtype=dtype).reshape(-1, 1) if values else torch.empty(0, 1, dtype=dtype)
    bad = (~torch.isfinite(x)).reshape(-1).nonzero()
    expected = None if len(bad) == 0 else (int(bad[0, 0]), 0)
    assert _checks.first_non_finite(x) == expected


@given(
    parts=st.lists(
        st.tuples(*[st.floats(allow_nan=True, allow_infinity=True, width=32)] * 2), min_size=1, max_size=20
    ),
    conj=st.booleans(),
)
def test_the_first_non_finite_complex_entry_is_found_in_either_part(
    parts: list[tuple[float, float]], conj: bool
) -> None:
    """A complex input (the LRU's): a NaN or ±inf in the real or the imaginary part, a conjugate view too."""
    from bptt import _checks

    x = torch.complex(*(torch.tensor(p, dtype=torch.float32) for p in zip(*parts, strict=True)))
    x = x.conj() if conj else x
    bad = (~torch.isfinite(x)).nonzero()
    assert _checks.first_non_finite(x) == (None if len(bad) == 0 else (int(bad[0, 0]),))
