"""`bptt bench` runs, checks its numbers and writes JSON; its timings are never asserted here."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bptt import bench, cli
from bptt._checks import InputError


def test_bench_measures_every_part_on_tiny_shapes(tmp_path) -> None:
    cfg = bench.BenchConfig(
        cells=("lstm", "gru", "cifg"),
        shapes=((2, 5, 3, 4),),
        repeats=1,
        warmup=0,
        contributions_steps=6,
        watch_shape=(2, 5, 3, 4),
        watch_vocab=7,
    )
    result = bench.run(cfg)
    assert [r.cell for r in result.rows] == ["lstm", "gru", "cifg"]
    for row in result.rows:
        assert row.max_rel_err < 1e-5 and row.reference_rel_err < 1e-5
        assert row.ratio > 0 and row.floor_ms is not None and row.floor_ms > 0
    assert len(result.traces) == 1 and result.traces[0]["ratio"] > 0
    assert result.contributions is not None
    assert result.contributions["max_rel_err"] < 1e-5  # trace norms = the T autograd backward passes
    assert result.build["ok"]
    assert [w["model"] for w in result.watch] == ["LSTM alone", "word LM, vocab 7"]
    assert all(w["ratio"] > 0 and w["record_ratio"] > 0 for w in result.watch)
    bench.write_json(result, tmp_path / "bench.json")
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["rows"][0]["cell"] == "lstm" and saved["config"]["repeats"] == 1


def test_unrolled_baseline_norms_equal_the_trace() -> None:
    torch.manual_seed(0)
    model = bench.LSTM(2, 3)
    x, grad = torch.randn(7, 2, 2), torch.randn(7, 2, 3)
    norms, _ = bench._unrolled_contribution_norms(model, x, grad)
    traced = bench.trace(model, x, lambda out, state: (out * grad).sum()).contribution_norms()
    assert traced.dtype == torch.float64  # summed in float64 whatever the model's dtype
    assert torch.allclose(norms.double(), traced, rtol=1e-5, atol=1e-7)


def test_bench_command_writes_json(tmp_path, capsys) -> None:
    path = tmp_path / "out.json"
    code = cli.main(
        [
            "bench",
            "--cells",
            "rnn",
            "--shapes",
            "2x3x2x4",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--no-contributions",
            "--no-watch",
            "--json",
            str(path),
        ]
    )
    assert code == 0
    assert json.loads(path.read_text())["rows"][0]["shape"] == [2, 3, 2, 4]
    assert "ratio" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench", "--cells", "lstm,tree"], "unknown tree; expected some of"),
        (["bench", "--shapes", "32x200"], "expected a shape BxTxIxH"),
        (["bench", "--shapes", "1x2x3x4x5x6"], "expected a shape BxTxIxH"),
    ],
)
def test_bench_flags_are_checked(argv, message, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("device", ["foo", "cuda:x", "gpu", "cpu:0"])
def test_an_unknown_device_is_a_clear_error(device: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "--device", device])
    assert exit_info.value.code == 2
    assert f"expected cpu, cuda or cuda:N, got {device!r}" in capsys.readouterr().err
    with pytest.raises(InputError, match=f"expected --device cpu, cuda or cuda:N, got {device!r}"):
        bench.check_device(device)  # the library checks where the setting enters, too


def test_a_shape_with_layers_builds_that_many_layers(tmp_path) -> None:
    """BxTxIxHxL: the word-LM shape's two layers, timed and checked like one."""
    cfg = bench.BenchConfig(
        cells=("lstm", "peephole"),
        shapes=((2, 3, 4, 5, 2),),
        repeats=1,
        warmup=0,
        contributions=False,
        watch=False,
    )
    result = bench.run(cfg)
    assert [r.shape for r in result.rows] == [(2, 3, 4, 5, 2)] * 2
    for row in result.rows:
        assert row.max_rel_err < 1e-5 and row.reference_rel_err < 1e-5
    assert result.traces[0]["overhead"] > 0 and result.traces[0]["bptt_fwd_bwd_ms"] > 0
    ref, ours, _, _ = bench._models("lstm", (2, 3, 4, 5, 2), torch.device("cpu"))
    assert ref.num_layers == ours.num_layers == 2
    assert bench.WORD_LM in bench.DEFAULT_SHAPES and bench.layers(bench.WORD_LM) == 2


def test_cuda_without_a_gpu_is_one_line(capsys) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert cli.main(["bench", "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "bptt bench: error: --device cuda asked for, but no CUDA device is available"


def test_bench_times_the_diagnostics_at_several_lengths() -> None:
    cfg = bench.BenchConfig(
        cells=(),
        shapes=(),
        trace=False,
        contributions=False,
        watch=False,
        diagnostics=True,
        diagnostics_steps=(3, 6),
    )
    result = bench.run(cfg)
    assert result.diagnostics is not None
    rows, parts = result.diagnostics["rows"], result.diagnostics["parts"]
    assert [r["T"] for r in rows] == [3, 6]
    assert len(parts) == 6 and all(r[p] > 0 for r in rows for p in ["trace_s", *parts])
    # the exponent is the slope of log(total) against log(T) through the two rows
    slope = math.log(rows[1]["total_s"] / rows[0]["total_s"]) / math.log(6 / 3)
    assert result.diagnostics["exponent"] == pytest.approx(slope, rel=1e-9)
    assert any(f"T^{slope:.2f}" in str(item) for item in bench.render(result))


def test_a_row_that_fails_is_shown_and_the_others_still_run(monkeypatch, tmp_path, capsys) -> None:
    measure = bench.bench_cell

    def flaky(cell, shape, cfg, device):
        if cell == "gru":
            raise RuntimeError("no kernel for this device")
        return measure(cell, shape, cfg, device)

    monkeypatch.setattr(bench, "bench_cell", flaky)
    path = tmp_path / "out.json"
    argv = [
        "bench",
        "--cells",
        "rnn,gru",
        "--shapes",
        "2x3x2x4",
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--no-watch",
    ]
    code = cli.main([*argv, "--no-trace", "--no-contributions", "--json", str(path)])
    assert code == 1  # a failed row is never a silent success
    rows = json.loads(path.read_text())["rows"]
    assert rows[0]["cell"] == "rnn" and rows[0]["error"] == "" and rows[0]["ratio"] > 0
    assert rows[1]["error"] == "RuntimeError: no kernel for this device" and rows[1]["ratio"] is None
    assert "failed: gru at (2, 3, 2, 4): RuntimeError: no kernel for this device" in capsys.readouterr().out


def test_bench_times_each_kernel_against_the_python_loop() -> None:
    cfg = bench.BenchConfig(
        cells=("rnn", "cifg"),
        shapes=((2, 4, 3, 5),),
        repeats=1,
        warmup=0,
        trace=False,
        contributions=False,
        watch=False,
    )
    result = bench.run(dataclasses.replace(cfg, engines=True))
    assert [(e["cell"], e["kernel"]) for e in result.engines] == [("rnn", "native"), ("cifg", "native")]
    for e in result.engines:
        assert e["speedup"] == pytest.approx(e["python_ms"] / e["kernel_ms"], rel=1e-9)
    assert any("kernel against the Python" in str(getattr(t, "title", "")) for t in bench.render(result))


SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
INTERPRETED = {"TRITON_INTERPRET": "1", "BPTT_ENGINE": "triton"}  # the CUDA sweeps' path on the CPU


def run_script(name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """scripts/`name` with `args` in this Python, `env` over this environment."""
    return subprocess.run(
        [sys.executable, str(SCRIPTS / name), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_the_host_profile_script_runs_on_the_cpu() -> None:
    """scripts/gpu_host.py, which profiles a call's host time on a GPU, runs with --device cpu."""
    done = run_script("gpu_host.py", "--device", "cpu", "--repeats", "5", "--top", "3")
    assert done.returncode == 0, done.stderr
    times = re.findall(r"== (bptt\.LSTM|torch\.nn\.LSTM), T = 1: (\d+) µs", done.stdout)
    assert [name for name, _ in times] == ["bptt.LSTM", "torch.nn.LSTM"]
    assert all(int(us) > 0 for _, us in times)
    assert "ncalls" in done.stdout  # cProfile's table
    counts = re.findall(r"(\d+) operators, (\d+) of them not views", done.stdout)
    assert len(counts) == 3 and all(0 < int(rest) <= int(every) for every, rest in counts)
    assert re.search(r"== bptt\.trace with contribution norms, T = 1: \d+ µs", done.stdout)


def test_the_host_profile_script_stubs_the_cuda_kernels_on_the_cpu() -> None:
    """--stub: the CUDA sweeps' host path, each launch a no-op, its operators counted (Triton needed)."""
    pytest.importorskip("triton")
    argv = ["--device", "cpu", "--stub", "--batch", "2", "--hidden", "8"]
    done = run_script("gpu_host.py", *argv, "--steps", "5", "--repeats", "3", "--top", "3", env=INTERPRETED)
    assert done.returncode == 0, done.stderr
    every, rest = (int(n) for n in re.findall(r"(\d+) operators, (\d+) of them not views", done.stdout)[0])
    assert 0 < rest < every  # bptt.LSTM: the tape's views, no kernel behind the sweeps
    # the host's time before, in and after each of the two sweeps' launches
    for sweep in ("forward", "backward"):
        assert re.search(rf"{sweep}: \d+ µs to the sweep's launch, \d+ in it, \d+ after it", done.stdout)
    refused = run_script("gpu_host.py", *argv, env={"TRITON_INTERPRET": "0", "BPTT_ENGINE": "auto"})
    assert refused.returncode == 2 and "--stub needs" in refused.stderr


def test_the_kernel_stub_replaces_a_compiled_triton_kernel_too(monkeypatch) -> None:
    """gpu_host.stub_kernels on a GPU: a compiled Triton kernel (a JITFunction, which has an attribute
    `kernel` of its own) is replaced by the stub, not launched; only gpu_host's own timing wrapper
    keeps its place, with the stub inside it."""
    import importlib.util

    from bptt.engine import gpu

    spec = importlib.util.spec_from_file_location("gpu_host_under_test", SCRIPTS / "gpu_host.py")
    assert spec is not None and spec.loader is not None
    gpu_host = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_host)

    class Compiled:  # what matters of triton.runtime.jit.JITFunction here
        kernel = None

        def __getitem__(self, grid: object) -> None:
            raise AssertionError("the real kernel was launched")

    class Wrapper:  # before_launch's Timed
        def __init__(self, kernel: object) -> None:
            self.wrapped = kernel

    given: list[object] = []
    monkeypatch.setattr(gpu, "_persistent", lambda kernel, *args: given.append(kernel))
    marks: list[float] = []
    gpu_host.stub_kernels("bptt", marks)
    gpu._persistent(Compiled(), 2, 8)
    wrapper = Wrapper(Compiled())
    gpu._persistent(wrapper, 2, 8)
    assert isinstance(given[0], gpu_host._NoKernel) and given[1] is wrapper
    assert isinstance(wrapper.wrapped, gpu_host._NoKernel)
    given[0][(1, 1)](1.0, flag=2)  # the stub launches nothing and marks the time
    assert len(marks) == 1


def test_the_host_chain_script_times_two_trees_in_turn() -> None:
    """scripts/host_chain.py: the host's chain with the kernels stubbed, this tree against another src
    (here the same one, loaded again under another name): a row of four medians each and the ratios;
    with --trace, five for a full trace with its norms; a folder without bptt/ refused."""
    pytest.importorskip("triton")
    src = str(SCRIPTS.parent / "src")
    done = run_script("host_chain.py", "--against", src, "--repeats", "20")
    assert done.returncode == 0, done.stderr
    rows = re.findall(r"^  (this tree|.*src) +([\d.]+) +([\d.]+) +([\d.]+) +([\d.]+)$", done.stdout, re.M)
    assert len(rows) == 2 and rows[0][0] == "this tree"
    for _, *medians in rows:
        forward, after, backward, chain = (float(m) for m in medians)
        assert min(forward, after, backward) > 0 and chain > max(forward, backward)  # each call: their sum
    assert re.search(r"this tree over the other: [\d.]+  [\d.]+  [\d.]+  [\d.]+$", done.stdout, re.M)
    traced = run_script("host_chain.py", "--against", src, "--repeats", "20", "--trace")
    assert traced.returncode == 0, traced.stderr
    rows = re.findall(r"^  (this tree|.*src)" + r" +([\d.]+)" * 5 + "$", traced.stdout, re.M)
    assert len(rows) == 2 and "trace of bptt.LSTM" in traced.stdout
    for _, *medians in rows:
        *parts, whole = (float(m) for m in medians)
        assert min(parts) > 0 and whole > max(parts)  # each call: their sum
    refused = run_script("host_chain.py", "--against", str(SCRIPTS))
    assert refused.returncode == 2 and "expected a src folder holding bptt/" in refused.stderr


def test_the_gpu_tuning_script_runs_in_the_interpreter_and_names_real_settings(tmp_path, monkeypatch) -> None:
    """scripts/gpu_tune.py --dry-run (a tiny LSTM in Triton's interpreter): the default and autotuning,
    each checked against float64, autotuning saying what it chose; every setting it knows sets real
    `bptt.engine.gpu` settings to valid values, and every name scripts/gpu_check.sh asks for exists."""
    pytest.importorskip("triton")
    import importlib.util

    from bptt.engine import gpu

    argv = [
        "--dry-run",
        "--repeats",
        "1",
        "--out",
        str(tmp_path),
        "--settings",
        "auto (the default);autotune",
    ]
    done = run_script("gpu_tune.py", *argv, env=INTERPRETED)
    assert done.returncode == 0, done.stderr
    rows = json.loads((tmp_path / "gpu_tune.json").read_text())["sweeps"]
    assert [row["setting"] for row in rows] == ["auto (the default)", "autotune"]
    assert all(row["error"] < 1e-5 for row in rows)
    assert set(rows[1]["tuned"]) == {"forward", "backward"}
    spec = importlib.util.spec_from_file_location("gpu_tune", SCRIPTS / "gpu_tune.py")
    assert spec is not None and spec.loader is not None
    tune = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tune)
    for name, setting in tune.SETTINGS.items():
        with monkeypatch.context() as m:
            for key, value in setting.items():
                assert key in (*gpu.SETTINGS, "AUTOTUNE"), (name, key)
                m.setattr(gpu, key, value)
            gpu.available(torch.zeros(1))  # raises on a value out of range
    asked = re.search(r'TUNE_SETTINGS=\$\{TUNE_SETTINGS:-"([^"]+)"\}', (SCRIPTS / "gpu_check.sh").read_text())
    assert asked is not None
    assert set(asked[1].split(";")) <= set(tune.SETTINGS)
