"""Reports: the HTML page, its plots and tables, user text escaped, and the page in a real browser."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from markupsafe import escape

from bptt import cli, demo
from bptt.diagnose import diagnose, infer_from_state_dict
from bptt.reports import load_run, write_report
from bptt.reports.plots import FIGURES

EVIL = '<img src=x onerror=alert(1)> & "quoted"'


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    """A dry-run demo, plus one run renamed to something a browser must not execute."""
    out = tmp_path_factory.mktemp("demo")
    demo.run(demo.DemoConfig(out=str(out), dry_run=True))
    shutil.copytree(out / "lstm-adding", out / EVIL)
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
    for key, _title, _, caption in FIGURES:
        assert f'id="{key}"' in page, key
        assert str(escape(caption)) in page
    assert page.count("<figcaption>") == len(FIGURES)
    assert 'id="bounds"' in page and 'id="settings"' in page and 'id="summary"' in page
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
    assert rec["steps"] == 15 and (tmp_path / "out" / "report.html").exists()
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
    assert result["record"] == json.loads((tmp_path / "run" / "final_diagnostics.json").read_text())
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


CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.mark.skipif(
    (CHROMIUM is None or DRIVER is None) and not os.environ.get("BPTT_REQUIRE_BROWSER"),
    reason="Debian's chromium and chromium-driver are not installed (.ci/run installs them)",
)
def test_the_report_in_headless_chromium(demo_dir: Path, tmp_path: Path) -> None:
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
        driver.get(page.resolve().as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth])"
        )
        assert len(images) == len(FIGURES) and all(done and width > 0 for done, width in images)
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []
        assert driver.execute_script("return document.querySelectorAll('script').length") == 0
        assert EVIL in driver.find_element("tag name", "body").text  # shown as text, not run
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1300, min(height, 12000))
        shot = Path(os.environ.get("BPTT_SCREENSHOT", tmp_path / "report.png"))
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 50_000
    finally:
        driver.quit()
