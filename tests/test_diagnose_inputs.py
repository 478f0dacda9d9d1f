"""bptt diagnose on real inputs: lengths, masks, packed sequences, an initial state, float32 or float64."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import bptt
from bptt._records import to_json
from bptt.diagnose import diagnose

F64 = torch.float64


def save_model(tmp_path: Path, module: torch.nn.Module, name: str = "m.pt") -> Path:
    torch.save(module.state_dict(), tmp_path / name)
    return tmp_path / name


def test_a_model_saved_in_float32_or_float64_gets_the_same_diagnosis(tmp_path: Path) -> None:
    torch.manual_seed(0)
    gru = torch.nn.GRU(2, 5)
    m32 = save_model(tmp_path, gru, "m32.pt")
    m64 = save_model(tmp_path, gru.double(), "m64.pt")
    torch.save(torch.randn(8, 3, 2, dtype=F64), tmp_path / "x.pt")
    a = to_json(diagnose(m32, tmp_path / "a", inputs=tmp_path / "x.pt")["record"])
    b = to_json(diagnose(m64, tmp_path / "b", inputs=tmp_path / "x.pt")["record"])
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-12)
    assert a["dh_mean"][0] == pytest.approx(b["dh_mean"][0], rel=1e-12)
    assert a["jacobian_log_state"] == pytest.approx(b["jacobian_log_state"], rel=1e-10)


def record_by_sequence(tmp_path: Path, model: Path, x: torch.Tensor, lengths: list[int]) -> list[dict]:
    out = []
    for b, L in enumerate(lengths):
        torch.save(x[:L, b : b + 1].clone(), tmp_path / f"x{b}.pt")
        out.append(to_json(diagnose(model, tmp_path / f"one{b}", inputs=tmp_path / f"x{b}.pt")["record"]))
    return out


@pytest.mark.parametrize("bidirectional", [False, True])
def test_each_sequence_counts_from_its_own_end(tmp_path: Path, bidirectional: bool) -> None:
    """Each sequence of a batch of lengths is diagnosed as if alone: the reverse direction starts at its
    own end (the batch runs packed)."""
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(2, 4, num_layers=2, dtype=F64, bidirectional=bidirectional)
    model = save_model(tmp_path, lstm)
    T, lengths = 9, [9, 5, 3]
    x = torch.randn(T, 3, 2, dtype=F64)
    for b, L in enumerate(lengths):
        x[L:, b] = 1e6  # padding: nothing of it may show
    torch.save({"x": x, "lengths": torch.tensor(lengths)}, tmp_path / "xl.pt")
    rec = to_json(diagnose(model, tmp_path / "batch", inputs=tmp_path / "xl.pt")["record"])
    alone = record_by_sequence(tmp_path, model, x, lengths)
    assert rec["loss"] == pytest.approx(sum(r["loss"] for r in alone), rel=1e-12)  # the loss at each own end
    for row in range(len(rec["dh_mean"])):  # layers × directions
        reverse = bidirectional and row % 2 == 1
        for d in range(T):
            # a forward direction by distance d from each sequence's own end, a reverse one (whose sweep
            # ends at t = 0 in every sequence) by position: the mean over the sequences that long
            at = d if reverse else T - 1 - d
            expected = [
                r["dh_mean"][row][d if reverse else L - 1 - d]
                for r, L in zip(alone, lengths, strict=True)
                if d < L
            ]
            assert rec["dh_mean"][row][at] == pytest.approx(sum(expected) / len(expected), rel=1e-10)
    for d in range(T):
        expected = [r["jacobian_log_state"][L - 1 - d] for r, L in zip(alone, lengths, strict=True) if d < L]
        assert rec["jacobian_log_state"][T - 1 - d] == pytest.approx(sum(expected) / len(expected), rel=1e-9)
    assert rec["horizon_end"] is None and 0 <= rec["horizon"] <= 8
    # the same sequences as a mask, and packed
    mask = torch.arange(T)[:, None] < torch.tensor(lengths)[None, :]
    torch.save({"x": x, "mask": mask}, tmp_path / "xm.pt")
    torch.save(pack_padded_sequence(x, torch.tensor(lengths), enforce_sorted=False), tmp_path / "xp.pt")
    for name in ("xm.pt", "xp.pt"):
        other = to_json(diagnose(model, tmp_path / f"out-{name}", inputs=tmp_path / name)["record"])
        for layer in range(2):
            assert other["dh_mean"][layer] == pytest.approx(rec["dh_mean"][layer], rel=1e-12)
        assert other["saturation"] == pytest.approx(rec["saturation"], rel=1e-12)


def test_the_initial_state_is_used(tmp_path: Path) -> None:
    torch.manual_seed(0)
    gru = torch.nn.GRU(2, 3, dtype=F64)
    model = save_model(tmp_path, gru)
    x, h0 = torch.randn(6, 2, 2, dtype=F64), torch.randn(1, 2, 3, dtype=F64)
    torch.save(x, tmp_path / "x.pt")
    torch.save(h0, tmp_path / "h0.pt")
    rec = to_json(
        diagnose(model, tmp_path / "out", inputs=tmp_path / "x.pt", hx=tmp_path / "h0.pt")["record"]
    )
    r = torch.randn(3, generator=torch.Generator().manual_seed(0), dtype=F64)
    with torch.no_grad():
        out, _ = gru(x, h0)
    assert rec["loss"] == pytest.approx(float((out[-1] * (r / r.norm())).sum()), rel=1e-12)
    with pytest.raises(ValueError, match=r"expected .*h0.pt to hold the LSTM's \(h_0, c_0\)"):
        lstm_file = save_model(tmp_path, torch.nn.LSTM(2, 3), "lstm.pt")
        diagnose(lstm_file, tmp_path / "out2", inputs=tmp_path / "x.pt", hx=tmp_path / "h0.pt")


def test_bad_lengths_and_masks_are_refused(tmp_path: Path) -> None:
    model = save_model(tmp_path, torch.nn.RNN(2, 3))
    x = torch.randn(4, 2, 2)
    cases = {
        "long": ({"x": x, "lengths": torch.tensor([5, 2])}, r"expected every length .* in \[1, 4\]"),
        "count": ({"x": x, "lengths": torch.tensor([2])}, "expected 2 lengths"),
        "holes": ({"x": x, "mask": torch.tensor([[1, 1], [0, 1], [1, 1], [0, 0]])}, "true up to each"),
    }
    for name, (obj, message) in cases.items():
        torch.save(obj, tmp_path / f"{name}.pt")
        with pytest.raises(ValueError, match=message):
            diagnose(model, tmp_path / name, inputs=tmp_path / f"{name}.pt")


def test_trace_hints_at_token_ids_and_whole_models() -> None:
    class LM(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(10, 2)
            self.encoder = torch.nn.LSTM(2, 3)

    with pytest.raises(TypeError, match=r"recurrent submodules encoder: pass one of them \(model.encoder\)"):
        bptt.trace(LM(), torch.randn(4, 2, 2), lambda o, s: o.sum())
    with pytest.raises(TypeError, match="token ids\\? embed them first"):
        bptt.trace(torch.nn.LSTM(2, 3), torch.randint(10, (4, 2)), lambda o, s: o.sum())
