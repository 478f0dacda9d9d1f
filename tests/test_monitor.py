"""bptt.Monitor in a user's own training loop, on top of bptt.watch, and the summary it records."""

from __future__ import annotations

import dataclasses
import sys

import pytest
import torch

import bptt
from bptt import _io, cli
from bptt._records import to_json
from bptt.diagnostics import monitor as monitor_module
from bptt.diagnostics import summarize


class Regressor(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(2, 6, batch_first=True)
        self.head = torch.nn.Linear(6, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(x)[0][:, -1])


def test_monitor_records_every_n_steps_of_a_torch_training_loop(tmp_path) -> None:
    torch.manual_seed(0)
    model = Regressor()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    monitor = bptt.Monitor(model, every=3, run_dir=tmp_path, tensorboard=False, samples=2)
    before = [p.detach().clone() for p in model.parameters()]
    losses = []
    for _ in range(7):
        x, y = torch.randn(5, 12, 2), torch.randn(5, 1)
        opt.zero_grad()
        with monitor.step() as s:
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            s.loss = loss
        losses.append(loss.item())
        opt.step()
    records = monitor_module.load(tmp_path)
    assert [(r.step, r.module) for r in records] == [(0, "lstm"), (3, "lstm"), (6, "lstm")]
    assert monitor.records == records[-1:]  # the last watched step (6) returned what it wrote
    r = records[0]
    assert r.jacobian_log_state is not None
    assert r.loss == pytest.approx(losses[0])  # the step's own loss, not a second pass
    assert len(r.contribution) == 12 and len(r.jacobian_log_state) == 12
    assert r.jacobian_log_state[-1] == pytest.approx(0.0)  # ‖∂s_{T−1}/∂s_{T−1}‖ = 1
    assert 0 <= r.horizon <= 11 and r.lag_sources == 1 and set(r.saturation) == set("ifgo")
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))  # it trained


def test_a_monitored_run_equals_the_unmonitored_run(tmp_path) -> None:
    """Dropout's draws, Adam and five steps: the watched steps' gradients come from bptt's twin of
    the LSTM, equal in exact arithmetic; in float64, so that round-off (which Adam's normalised steps
    can magnify in float32) stays far below the tolerance, and a changed draw or mode does not."""

    def run(every: int | None) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = Regressor().double()
        model.lstm.dropout = 0.0
        opt = torch.optim.Adam(model.parameters(), lr=0.05)
        monitor = bptt.Monitor(model, every=every, run_dir=tmp_path, tensorboard=False) if every else None
        for _ in range(5):
            x, y = torch.randn(4, 9, 2, dtype=torch.float64), torch.randn(4, 1, dtype=torch.float64)
            opt.zero_grad()
            with monitor.step() if monitor else torch.enable_grad():
                torch.nn.functional.mse_loss(model(torch.nn.functional.dropout(x, 0.3)), y).backward()
            opt.step()
        return [p.detach().clone() for p in model.parameters()]

    for a, b in zip(run(None), run(2), strict=True):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_records_are_plain_json_with_no_infinities(tmp_path) -> None:
    model = bptt.RNN(1, 2, nonlinearity="relu")
    with torch.no_grad():
        model.weight_hh_l0.zero_()  # ∂s_{T−1}/∂s_k = 0 for k < T − 1: log 0 = −inf
    mon = bptt.Monitor(model, every=1, run_dir=tmp_path, tensorboard=False)
    with mon.step():
        model(torch.randn(4, 2, 1))[0].sum().backward()
    text = (tmp_path / "diagnostics.jsonl").read_text()
    assert "Infinity" not in text and "NaN" not in text
    rec = monitor_module.load(tmp_path)[0]
    assert rec.jacobian_log_state[0] is None and rec.loss is None and rec.module == ""


def test_a_line_cut_short_by_an_interruption_is_left_out(tmp_path) -> None:
    tr = bptt.trace(bptt.RNN(2, 3), torch.randn(5, 2, 2), lambda out, h: out[-1].sum())
    rec = dataclasses.replace(summarize(tr), step=0, module="rnn")
    _io.append_jsonl(tmp_path / "diagnostics.jsonl", to_json(rec))
    with (tmp_path / "diagnostics.jsonl").open("a") as f:
        f.write('{"step": 1, "mod')
    assert monitor_module.load(tmp_path) == [rec]


def test_monitor_sends_scalars_to_tensorboard_when_it_can(tmp_path) -> None:
    class Writer:
        def __init__(self) -> None:
            self.scalars: list[tuple[str, float]] = []

        def add_scalar(self, tag, value, step) -> None:
            self.scalars.append((tag, value))

        def flush(self) -> None: ...

        def close(self) -> None: ...

    gru = torch.nn.GRU(2, 3)
    mon = bptt.Monitor(gru, every=1, run_dir=tmp_path, tensorboard=False)
    mon.writer = Writer()
    with mon.step() as s:
        s.loss = gru(torch.randn(6, 2, 2))[0].sum()
        s.loss.backward()
    (rec,) = mon.records
    sent = dict(mon.writer.scalars)
    assert sent["bptt/loss"] == rec.loss and sent["bptt/horizon"] == rec.horizon
    assert sent["bptt/horizon_end"] == rec.horizon_end
    assert {f"bptt/saturation/{g}": v for g, v in rec.saturation.items()}.items() <= sent.items()


def test_monitor_without_tensorboard_still_records(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # the import fails
    gru = torch.nn.GRU(2, 3)
    mon = bptt.Monitor(gru, every=1, run_dir=tmp_path, tensorboard=True)
    assert mon.writer is None
    with mon.step():
        gru(torch.randn(6, 2, 2))[0].sum().backward()
    assert [r.step for r in monitor_module.load(tmp_path)] == [0]


def test_monitor_needs_a_recurrent_module() -> None:
    with pytest.raises(ValueError, match="found no recurrent module in Sequential"):
        bptt.Monitor(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_bptt_report_renders_a_monitor_folder(tmp_path) -> None:
    model = Regressor()
    mon = bptt.Monitor(model, every=1, run_dir=tmp_path / "run", tensorboard=False, samples=2)
    for _ in range(2):
        with mon.step():
            model(torch.randn(3, 8, 2)).sum().backward()
    assert cli.main(["report", str(tmp_path / "run")]) == 0
    html = (tmp_path / "run" / "report.html").read_text()
    assert "<img" in html or "data:image" in html


def test_samples_slice_the_batch_without_changing_the_numbers() -> None:
    torch.manual_seed(0)
    tr = bptt.trace(
        bptt.LSTM(2, 4, dtype=torch.float64),
        torch.randn(9, 5, 2, dtype=torch.float64),
        lambda out, s: out.sum(),
    )
    full = bptt.diagnostics.jacobian_norms(tr)
    assert torch.allclose(bptt.diagnostics.jacobian_norms(tr, samples=slice(1, 3)), full[1:3], rtol=1e-12)
    rec = summarize(tr, samples=2)
    assert rec.jacobian_log_state == pytest.approx(full[:2].log().mean(0).tolist())
