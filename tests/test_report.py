"""Reports: the HTML page, its plots and tables, user text escaped, and the page in a real browser."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
import torch
from markupsafe import escape
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import bptt
from bptt import cli, demo
from bptt.cli.sweep import parse_train
from bptt.diagnose import diagnose, infer_from_state_dict
from bptt.reports import load_run, write_report
from bptt.reports.data import far_over_near
from bptt.reports.plots import FIGURES, draw_all, grad_norms, gradient_heatmap
from bptt.reports.style import from_log10, ratio, sci
from bptt.sweep import SweepOptions, axes_from_flags, points, run_sweep, write_sweep_report
from bptt.sweep.ledger import status_rows
from bptt.sweep.report import curves, figures

EVIL = '<img src=x onerror=alert(1)> & "quoted"'


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    """A dry-run demo, plus one run renamed to something a browser must not execute."""
    out = tmp_path_factory.mktemp("demo")
    demo.run(demo.DemoConfig(out=str(out), dry_run=True))
    shutil.copytree(out / "lstm-adding", out / EVIL)
    return out


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    """A dry-run train run, diagnoses of a small LSTM and a small GRU, a watch folder and a tiny sweep."""
    root = tmp_path_factory.mktemp("sources")
    out = {k: root / k for k in ("train", "lstm", "gru", "watch", "sweep")}
    assert (
        cli.main(["train", "--dry-run", "--task", "copy", "--cell", "gru", "--out", str(out["train"])]) == 0
    )
    torch.manual_seed(0)
    for name, module in (("lstm", torch.nn.LSTM(2, 6)), ("gru", torch.nn.GRU(2, 6))):
        torch.save(module.state_dict(), root / f"{name}.pt")
        diagnose(root / f"{name}.pt", out[name], task="adding", seq_len=12, samples=2)
    lstm = torch.nn.LSTM(2, 6, batch_first=True)
    monitor = bptt.Monitor(lstm, every=1, run_dir=out["watch"], tensorboard=False, samples=2)
    for _ in range(3):
        with monitor.step() as step:
            loss = lstm(torch.randn(3, 10, 2))[0][:, -1].pow(2).sum()
            loss.backward()
            step.loss = loss
    flags = {
        "--task": "adding",
        "--hidden-size": "4",
        "--batch-size": "4",
        "--test-size": "8",
        "--steps": "2",
    }
    grid = points(axes_from_flags({**flags, "--cell": "rnn,lstm", "--seq-len": "4"}), parse_train)
    run_sweep(grid, out["sweep"], SweepOptions(workers=1))
    write_sweep_report(out["sweep"])
    for k in ("train", "watch"):
        write_report([out[k]], out[k] / "report.html")
    return out


def test_the_demo_writes_four_runs_a_report_and_claims(demo_dir: Path) -> None:
    result = json.loads((demo_dir / "demo.json").read_text())
    assert [r["run"] for r in result["runs"]] == [
        "rnn-adding",
        "lstm-adding",
        "rnn-explode-unclipped",
        "rnn-explode-clipped",
    ]
    assert (demo_dir / "report.html").stat().st_size > 10_000
    assert any("orders of magnitude" in c for c in result["claims"])
    for r in result["runs"]:
        assert r["baseline_loss"] == pytest.approx(1 / 6)


def test_the_report_has_every_section_with_a_caption(demo_dir: Path) -> None:
    page = (demo_dir / "report.html").read_text()
    runs = [load_run(demo_dir / n) for n in ("rnn-adding", "lstm-adding")]
    for key, _title, _ in FIGURES:
        assert f'id="{key}"' in page and f'href="#{key}"' in page, key  # a section and its contents line
    for _key, _title, drawn in draw_all(runs):  # each caption names the runs it shows
        assert "rnn-adding" in drawn.caption or "lstm-adding" in drawn.caption
    assert page.count("<figcaption>") == len(FIGURES)
    assert 'id="bounds"' in page and 'id="settings"' in page and 'id="summary"' in page
    assert page.count('<li class="bad">') == 4  # a verdict per run, none solved in a dry run
    assert (
        "http://" not in page and "https://" not in page and "<script" not in page
    )  # offline, nothing to run


def test_user_text_is_escaped(demo_dir: Path, tmp_path: Path) -> None:
    out = write_report([demo_dir / EVIL], tmp_path / "r.html")
    page = out.read_text()
    assert EVIL not in page
    assert str(escape(EVIL)) in page


def test_report_command_and_its_errors(demo_dir: Path, tmp_path: Path, capsys) -> None:
    assert (
        cli.main(
            [
                "report",
                str(demo_dir / "rnn-adding"),
                str(demo_dir / "lstm-adding"),
                "--out",
                str(tmp_path / "two.html"),
            ]
        )
        == 0
    )
    assert (tmp_path / "two.html").exists()
    assert cli.main(["report", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip().endswith(f"no run directory at {tmp_path / 'missing'}")
    (tmp_path / "empty").mkdir()
    assert cli.main(["report", str(tmp_path / "empty")]) == 2
    assert "holds no run" in capsys.readouterr().err


def test_diagnose_a_saved_torch_state_dict_equals_a_direct_trace(tmp_path: Path) -> None:
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(2, 6, num_layers=2, bidirectional=True, dtype=torch.float64)
    torch.save(lstm.state_dict(), tmp_path / "m.pt")
    twin = infer_from_state_dict(torch.load(tmp_path / "m.pt"))
    assert (twin.num_layers, twin.bidirectional, twin.hidden_size) == (2, True, 6)
    result = diagnose(tmp_path / "m.pt", tmp_path / "out", task="adding", seq_len=15, samples=3)
    rec = result["record"]
    assert rec.steps == 15 and (tmp_path / "out" / "report.html").exists()
    assert result["config"]["train"]["loss"] == "random"
    page = load_run(tmp_path / "out")
    assert page.final is not None and page.summary is None


def test_diagnose_a_bptt_checkpoint_uses_its_readout(tmp_path: Path) -> None:
    assert (
        cli.main(["train", "--dry-run", "--task", "copy", "--cell", "gru", "--out", str(tmp_path / "run")])
        == 0
    )
    result = diagnose(tmp_path / "run", tmp_path / "out")
    assert (
        result["config"]["train"]["loss"] == "task"
        and result["config"]["train"]["source"] == "bptt checkpoint"
    )
    # the same trace as the run's own final diagnostics: same sequences, same float64 copy
    assert result["record"] == load_run(tmp_path / "run").final
    with pytest.raises(ValueError, match="readout is for the copy task, not adding"):
        diagnose(tmp_path / "run", tmp_path / "out2", task="adding")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["diagnose", "nowhere.pt", "--task", "adding"], "no file or directory at 'nowhere.pt'"),
        (["train", "--task", "adding", "--hidden-size", "0", "--dry-run"], "expected an integer ≥ 1, got 0"),
        (["train", "--cell", "lstm", "--variant", "gated", "--dry-run"], "invalid choice: 'gated'"),
    ],
)
def test_user_mistakes_are_one_line_without_a_traceback(argv, message, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and err.count("\n") == 0 and "Traceback" not in err
    assert message in err


def test_help_lists_every_command_with_an_example(capsys) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    for c in cli.COMMANDS:
        assert c.name in text and c.example in text


def drawn_texts(fig: Figure) -> list[tuple[str, Any]]:
    """Every piece of text the renderer actually draws (titles, labels, tick labels, legends,
    colorbars), with its window extent: the renderer's draw_text is watched while the figure draws."""
    renderer = FigureCanvasAgg(fig).get_renderer()
    seen: dict[int, Any] = {}
    draw_text = renderer.draw_text

    def spy(
        gc: Any, x: float, y: float, s: str, prop: Any, angle: float, ismath: Any = False, mtext: Any = None
    ) -> None:
        if mtext is not None and s.strip():
            seen[id(mtext)] = mtext
        draw_text(gc, x, y, s, prop, angle, ismath=ismath, mtext=mtext)

    renderer.draw_text = spy  # type: ignore[method-assign]
    fig.draw(renderer)
    return [(t.get_text(), t.get_window_extent(renderer)) for t in seen.values()]


def overlaps(fig: Figure) -> list[str]:
    """Pairs of drawn texts that overlap by more than a pixel, and texts outside the figure."""
    texts = drawn_texts(fig)
    W, H = fig.bbox.width, fig.bbox.height
    out = [f"{a!r} outside" for a, b in texts if b.x0 < -1 or b.y0 < -1 or b.x1 > W + 1 or b.y1 > H + 1]
    for (a, ba), (b, bb) in combinations(texts, 2):
        dx = min(ba.x1, bb.x1) - max(ba.x0, bb.x0)
        dy = min(ba.y1, bb.y1) - max(ba.y0, bb.y0)
        if dx > 1 and dy > 1:
            out.append(f"{a!r} over {b!r}")
    return out


def test_no_figure_has_overlapping_text(demo_dir: Path, sources: dict[str, Path]) -> None:
    demo_runs = [
        load_run(demo_dir / n)
        for n in ("rnn-adding", "lstm-adding", "rnn-explode-unclipped", "rnn-explode-clipped")
    ]
    reports = [demo_runs, [load_run(sources[k]) for k in ("train", "lstm", "gru", "watch")]]
    seen, bad = set(), []
    for runs in reports:
        for i, r in enumerate(runs):
            r.color = i
        for key, _title, drawn in draw_all(runs):
            seen.add(key)
            bad += [f"{key}: {o}" for o in overlaps(drawn.figure)]
    for what, drawn in figures(curves(status_rows(sources["sweep"]))).items():
        seen.add(what)
        bad += [f"sweep {what}: {o}" for o in overlaps(drawn.figure)]
    assert bad == []
    assert seen == {k for k, _, _ in FIGURES} | {"success", "sequences", "loss"}  # every figure was checked


def test_the_overlap_check_finds_overlapping_text() -> None:
    fig = Figure(figsize=(3, 2))
    ax = fig.add_subplot()
    ax.set_title("a title")
    ax.text(0.5, 1.0, "text on the title", transform=ax.transAxes, ha="center", va="bottom")
    assert overlaps(fig)


def test_captions_carry_each_runs_own_numbers(sources: dict[str, Path]) -> None:
    captions = {}
    for name in ("lstm", "gru"):
        run = load_run(sources[name])
        distance, r = far_over_near(run.final)
        drawn = {key: d for key, _, d in draw_all([run])}
        captions[name] = drawn["distance"].caption
        assert (
            f"at distance {distance} the gradient is {ratio(r)} of its value at distance 0" in captions[name]
        )
        assert run.final is not None and run.final.lyapunov is not None
        assert f"λ_max = {run.final.lyapunov.max:.3f}".replace("-", "−") in drawn["lyapunov"].caption
        sat = run.final.saturation
        assert all(
            f"{g} {round(100 * v)} %" in drawn["saturation"].caption for g, v in sat.items() if v is not None
        )
    assert captions["lstm"] != captions["gru"]


def test_a_diagnosis_reads_as_a_diagnosis(sources: dict[str, Path]) -> None:
    page = (sources["gru"] / "report.html").read_text()
    for absent in (
        'id="loss"',
        'id="gradnorm"',
        "<th>test loss</th>",
        "<th>chance</th>",
        "yellow",
        "λ1 (σ_max",
    ):
        assert absent not in page, absent
    assert 'id="saturation"' in page and "does not apply to a gated cell" in page
    assert 'href="#saturation"' in page  # in the contents
    lstm = load_run(sources["lstm"])
    cec = {key: d for key, _, d in draw_all([lstm])}["cec"].caption
    assert "the forget gates' mean is" in cec


def test_small_numbers_are_shown_never_as_zero() -> None:
    assert sci(3e-41) == "3e−41" and sci(0.62) == "0.62"
    assert ratio(0.0) == "below 1e−300" and sci(1e-320) == "below 1e−300"
    assert from_log10(-350.2) == "1e−350" and from_log10(-2.0) == "0.01"


def test_clipping_is_a_rate_and_a_heatmap_has_few_ticks(sources: dict[str, Path]) -> None:
    run = load_run(sources["train"])
    m = run.metrics[0]
    run.metrics = [{**m, "step": k, "clipped": 1, "grad_norm": 1.0 + k % 7} for k in range(3000)]
    drawn = grad_norms([run])
    assert drawn is not None
    ax = drawn.figure.axes[0]
    assert len(ax.patches) <= 40 and len(ax.lines) <= 2  # not one line per clipped step
    assert "clipping fired at 3000 of 3000 logged steps (100 %)" in drawn.caption
    watch = load_run(sources["watch"])
    watch.snapshots = [dataclasses.replace(watch.snapshots[k % 3], step=10 * k) for k in range(60)]
    heat = gradient_heatmap([watch])
    assert heat is not None
    drawn_texts(heat.figure)
    labels = [t.get_text() for t in heat.figure.axes[0].get_yticklabels() if t.get_text()]
    assert 2 <= len(labels) <= 8 and {int(t) for t in labels} <= {s.step for s in watch.snapshots}


CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.mark.skipif(
    (CHROMIUM is None or DRIVER is None) and not os.environ.get("BPTT_REQUIRE_BROWSER"),
    reason="Debian's chromium and chromium-driver are not installed (.ci/run installs them)",
)
def test_every_kind_of_report_in_headless_chromium(
    demo_dir: Path, sources: dict[str, Path], tmp_path: Path
) -> None:
    """A demo, a training run, a diagnosis, a watch folder and a sweep, in one browser: each page
    renders, logs no error, runs no script, and every image loads."""
    os.environ["SE_OFFLINE"] = "true"  # never let selenium fetch a driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    page = write_report(
        [
            demo_dir / n
            for n in ("rnn-adding", "lstm-adding", "rnn-explode-unclipped", "rnn-explode-clipped", EVIL)
        ],
        tmp_path / "report.html",
    )
    pages = {
        "demo": page,
        "train": sources["train"] / "report.html",
        "diagnosis": sources["gru"] / "report.html",
        "watch": sources["watch"] / "report.html",
        "sweep": sources["sweep"] / "report.html",
    }
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1300,900",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    try:
        for kind, path in pages.items():
            driver.get(path.resolve().as_uri())
            images = driver.execute_script(
                "return Array.from(document.images).map(i => [i.complete, i.naturalWidth])"
            )
            figures_on_page = path.read_text().count("<figure>")
            assert len(images) == figures_on_page >= 3 and all(done and w > 0 for done, w in images), kind
            assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == [], kind
            assert driver.execute_script("return document.querySelectorAll('script').length") == 0
            assert driver.find_element("id", "contents").is_displayed(), kind
            height = driver.execute_script("return document.body.scrollHeight")
            driver.set_window_size(1300, min(height, 12000))
            shot = tmp_path / f"{kind}.png"
            assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 30_000, kind
        driver.get(page.resolve().as_uri())
        assert EVIL in driver.find_element("tag name", "body").text  # shown as text, not run
    finally:
        driver.quit()
