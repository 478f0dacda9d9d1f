"""bptt.Monitor in a user's own training loop, and the summary it records."""

from __future__ import annotations

import json
import sys

import pytest
import torch

import bptt
from bptt.diagnostics import monitor as monitor_module
from bptt.diagnostics import summarize


def test_monitor_records_every_n_steps_of_a_torch_training_loop(tmp_path) -> None:
    torch.manual_seed(0)
    lstm, head = torch.nn.LSTM(2, 6, batch_first=True), torch.nn.Linear(6, 1)
    opt = torch.optim.SGD([*lstm.parameters(), *head.parameters()], lr=0.1)
    monitor = bptt.Monitor(lstm, every=3, run_dir=tmp_path, tensorboard=False, samples=2)
    before = [p.detach().clone() for p in lstm.parameters()]
    for _ in range(7):
        x, y = torch.randn(5, 12, 2), torch.randn(5, 1)

        def loss_fn(out, state, y=y):
            return torch.nn.functional.mse_loss(head(out[:, -1]), y)

        opt.zero_grad()
        loss = loss_fn(*lstm(x))
        loss.backward()
        grads = [p.grad.clone() for p in lstm.parameters()]
        weights = [p.detach().clone() for p in lstm.parameters()]
        rec = monitor.step(x, loss_fn)
        for p, g, w in zip(lstm.parameters(), grads, weights, strict=True):
            assert torch.equal(p.grad, g) and torch.equal(p, w)  # .grad and the weights untouched
        opt.step()
    records = monitor_module.load(tmp_path)
    assert [r["step"] for r in records] == [0, 3, 6]
    assert json.loads(json.dumps(rec)) == records[-1]  # the last call (step 6) returned what it wrote
    r = records[0]
    assert len(r["contribution"]) == 12 and len(r["jacobian_log_state"]) == 12
    assert r["jacobian_log_state"][-1] == pytest.approx(0.0)  # ‖∂s_{T−1}/∂s_{T−1}‖ = 1
    assert 0 <= r["horizon"] <= 11 and set(r["saturation"]) == set("ifgo")
    assert not all(torch.equal(a, b) for a, b in zip(before, lstm.parameters(), strict=True))  # it trained


def test_records_are_plain_json_with_no_infinities(tmp_path) -> None:
    model = bptt.RNN(1, 2, nonlinearity="relu")
    with torch.no_grad():
        model.weight_hh_l0.zero_()  # ∂s_{T−1}/∂s_k = 0 for k < T − 1: log 0 = −inf
    mon = bptt.Monitor(model, every=1, run_dir=tmp_path, tensorboard=False)
    mon.record(torch.randn(4, 2, 1), lambda out, h: out.sum())
    text = (tmp_path / "diagnostics" / "step_00000000.json").read_text()
    assert "Infinity" not in text and "NaN" not in text
    assert json.loads(text)["jacobian_log_state"][0] is None


def test_monitor_sends_scalars_to_tensorboard_when_it_can(tmp_path) -> None:
    class Writer:
        def __init__(self) -> None:
            self.scalars: list[tuple[str, float]] = []

        def add_scalar(self, tag, value, step) -> None:
            self.scalars.append((tag, value))

        def flush(self) -> None: ...

        def close(self) -> None: ...

    mon = bptt.Monitor(torch.nn.GRU(2, 3), every=1, run_dir=tmp_path, tensorboard=False)
    mon.writer = Writer()
    rec = mon.step(torch.randn(6, 2, 2), lambda out, h: out.sum())
    sent = dict(mon.writer.scalars)
    assert sent["bptt/loss"] == rec["loss"] and sent["bptt/horizon"] == rec["horizon"]
    assert {f"bptt/saturation/{g}": v for g, v in rec["saturation"].items()}.items() <= sent.items()


def test_monitor_without_tensorboard_still_records(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # the import fails
    mon = bptt.Monitor(torch.nn.GRU(2, 3), every=1, run_dir=tmp_path, tensorboard=True)
    assert mon.writer is None
    mon.step(torch.randn(6, 2, 2), lambda out, h: out.sum())
    assert [r["step"] for r in monitor_module.load(tmp_path)] == [0]


def test_monitor_refuses_a_whole_model() -> None:
    with pytest.raises(TypeError, match="got Sequential; pass the recurrent submodule"):
        bptt.Monitor(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_samples_slice_the_batch_without_changing_the_numbers() -> None:
    torch.manual_seed(0)
    tr = bptt.trace(
        bptt.LSTM(2, 4, dtype=torch.float64),
        torch.randn(9, 5, 2, dtype=torch.float64),
        lambda out, s: out.sum(),
    )
    full = tr.jacobian_norms()
    assert torch.allclose(tr.jacobian_norms(samples=slice(1, 3)), full[1:3], rtol=1e-12)
    rec = summarize(tr, samples=2)
    assert rec["jacobian_log_state"] == pytest.approx(full[:2].log().mean(0).tolist())
