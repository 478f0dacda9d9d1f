"""Every bad input is one clear line on stderr and exit status 2, never a traceback.

A table of the mistakes users make, command by command, and property-based tests that throw random
flag values and corrupted files at every command: each must exit 0 (or 1 where the guard says why),
or exit 2 with one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bptt import cli


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of `bptt ARGV` (argparse's exits included)."""
    try:
        code = cli.main(argv)
    except SystemExit as exit_info:
        code = int(exit_info.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, message: str | None = None) -> None:
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    if message is not None:
        assert message in err, err


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A tiny trained run, model and input files, and files that are not what they claim."""
    root = tmp_path_factory.mktemp("files")
    torch.manual_seed(0)
    torch.save(torch.nn.LSTM(2, 3).state_dict(), root / "lstm.pt")
    torch.save(torch.nn.GRU(1, 3).state_dict(), root / "gru.pt")
    torch.save(torch.randn(6, 2, 2), root / "x.pt")
    (root / "garbage.pt").write_bytes(b"\x00\x01 not a tensor file")
    (root / "a_file").write_text("a file, not a directory")
    (root / "a_dir").mkdir()
    (root / "empty_run").mkdir()
    run = root / "run"
    assert cli.main(["train", "--dry-run", "--task", "adding", "--cell", "gru", "--out", str(run)]) == 0
    torn = root / "torn_run"
    torn.mkdir()
    text = (run / "summary.json").read_text()
    (torn / "summary.json").write_text(text[: len(text) // 2])
    (root / "bad_checkpoint").mkdir()
    (root / "bad_checkpoint" / "checkpoint.pt").write_bytes(b"\x00\x01 not a checkpoint")
    listed = root / "list_run"
    listed.mkdir()
    (listed / "summary.json").write_text("[1, 2]")
    return {p.name: p for p in root.iterdir()}


def cases(f: dict[str, Path]) -> dict[str, list[tuple[list[str], str]]]:
    """Bad inputs per command: (argv, a fragment of the expected message)."""
    F, D, run = str(f["a_file"]), str(f["a_dir"]), str(f["run"])
    train = ["train", "--dry-run", "--out", D + "/t"]
    return {
        "train": [
            ([*train, "--hidden-size", "0"], "--hidden-size: expected an integer ≥ 1, got 0"),
            ([*train, "--hidden-size", "-3"], "expected an integer ≥ 1, got -3"),
            ([*train, "--hidden-size", "abc"], "expected an integer, got 'abc'"),
            ([*train, "--hidden-size", "1e3"], "expected an integer, got '1e3'"),
            ([*train, "--momentum", "-1", "--optimizer", "sgd"], "--momentum: expected a finite number ≥ 0"),
            ([*train, "--momentum", "1.5", "--optimizer", "sgd"], "< 1"),
            ([*train, "--momentum", "0.5"], "--momentum applies only with --optimizer sgd or rmsprop"),
            ([*train, "--lr", "0"], "--lr: expected a finite number > 0"),
            ([*train, "--lr", "nan"], "--lr: expected a finite number > 0, got 'nan'"),
            ([*train, "--lr", "inf"], "got 'inf'"),
            (
                [*train, "--clip", "none", "--clip-threshold", "2"],
                "--clip-threshold applies only with --clip norm or value",
            ),
            ([*train, "--clip", "norm", "--clip-threshold", "0"], "expected a finite number > 0"),
            ([*train, "--symbols", "3"], "--symbols applies only with --task temporal_order"),
            ([*train, "--symbols", "4", "--task", "temporal_order"], "invalid choice: 4"),
            ([*train, "--nonlinearity", "relu"], "--nonlinearity applies only with --cell rnn"),
            ([*train, "--cell", "gru", "--variant", "cifg"], "--variant applies only with --cell lstm"),
            ([*train, "--cell", "gru", "--forget-bias", "1"], "--forget-bias applies only with --cell lstm"),
            ([*train, "--cell", "rnn", "--chrono", "100"], "--chrono applies only with --cell lstm"),
            ([*train, "--max-skipped", "0.5"], "--max-skipped applies only with --nonfinite skip"),
            ([*train, "--nonfinite", "skip", "--max-skipped", "2"], "≤ 1"),
            ([*train, "--tbptt", "5,7"], "k2 a multiple of k1"),
            ([*train, "--tbptt", "a,b"], "expected two integers A,B"),
            ([*train, "--tbptt", "0,4"], "expected integers ≥ 1"),
            ([*train, "--seq-len", "0"], "--seq-len: expected an integer ≥ 1, got 0"),
            ([*train, "--seed", "-1"], "--seed: expected an integer ≥ 0"),
            ([*train, "--steps", "0"], "--steps: expected an integer ≥ 1"),
            ([*train, "--log-every", "0"], "--log-every: expected an integer ≥ 1"),
            ([*train, "--task", "sorting"], "invalid choice: 'sorting'"),
            ([*train, "--protocol", "nonsense"], "protocol"),
            ([*train, "--core", "torch", "--variant", "cifg"], "torch.nn has no lstm with variant 'cifg'"),
            ([*train, "--cell", "lstm", "--init", "identity"], "identity"),
            (["train", "--dry-run", "--out", F], "expected a directory to write into, got the existing file"),
            (["train", "--dry-run", "--out", F + "/run"], "is a file"),
            (
                ["train", "--hidden-size", "2000000", "--steps", "1", "--out", D + "/big"],
                "more than this machine's",
            ),
            (["train", "--batch-size", "100000000", "--seq-len", "100000", "--out", D + "/big"], "GiB"),
            (
                ["train", "--dry-run", "--resume", "--out", str(f["bad_checkpoint"])],
                "not a file torch.save wrote",
            ),
        ],
        "diagnose": [
            (["diagnose", str(f["a_dir"]) + "/missing.pt"], "no file or directory"),
            (
                ["diagnose", str(f["lstm.pt"]), "--task", "adding", "--seq-len", "0"],
                "expected an integer ≥ 1",
            ),
            (["diagnose", str(f["lstm.pt"]), "--task", "adding", "--samples", "0"], "--samples"),
            (["diagnose", str(f["lstm.pt"]), "--inputs", D], "expected a file, got the directory"),
            (["diagnose", str(f["lstm.pt"]), "--inputs", str(f["garbage.pt"])], "cannot read"),
            (["diagnose", str(f["lstm.pt"]), "--task", "adding", "--batch-first"], "--batch-first describes"),
            (
                ["diagnose", str(f["lstm.pt"]), "--inputs", str(f["x.pt"]), "--protocol", "le"],
                "--protocol is",
            ),
            (
                ["diagnose", str(f["lstm.pt"]), "--inputs", str(f["x.pt"]), "--seq-len", "5"],
                "--seq-len is for",
            ),
            (
                ["diagnose", str(f["lstm.pt"]), "--task", "adding", "--nonlinearity", "relu"],
                "--nonlinearity applies to state dicts of the rnn cell",
            ),
            (["diagnose", str(f["gru.pt"]), "--task", "adding", "--variant", "cifg"], "does not fit"),
            (["diagnose", str(f["lstm.pt"]), "--task", "adding", "--module", "rnn"], "--module 'rnn'"),
            (["diagnose", str(f["lstm.pt"])], "expected exactly one source of inputs"),
            (["diagnose", str(f["lstm.pt"]), "--task", "adding", "--inputs", str(f["x.pt"])], "exactly one"),
            (["diagnose", str(f["lstm.pt"]), "--task", "adding", "--loss", "task"], "--loss task needs"),
            (["diagnose", str(f["garbage.pt"]), "--task", "adding"], "cannot read"),
            (["diagnose", D, "--task", "adding"], "no model file"),
            (["diagnose", str(f["gru.pt"]), "--task", "adding"], "the inputs have 2 features"),
            (["diagnose", run, "--task", "latch"], "readout is for the adding task"),
            (["diagnose", run, "--nonlinearity", "relu"], "does not apply to a bptt checkpoint"),
            (["diagnose", str(f["lstm.pt"]), "--task", "adding", "--out", F], "existing file"),
            (
                ["diagnose", str(f["lstm.pt"]), "--task", "adding", "--samples", str(10**12)],
                "out of memory for --samples",
            ),
        ],
        "report": [
            (["report", D + "/missing"], "no run directory"),
            (["report", str(f["empty_run"])], "holds no run"),
            (["report", F], "no run directory"),
            (["report", str(f["torn_run"])], "cannot read"),
            (["report", str(f["list_run"])], "to hold a JSON object, got list"),
            (["report", run, "--out", D], "expected a file to write, got the directory"),
            (["report", run, "--title", ""], "expected a non-empty line of text"),
        ],
        "bench": [
            (["bench", "--device", "foo"], "expected cpu, cuda or cuda:N, got 'foo'"),
            (["bench", "--repeats", "0"], "--repeats: expected an integer ≥ 1"),
            (["bench", "--warmup", "-1"], "--warmup: expected an integer ≥ 0"),
            (["bench", "--cells", "tree"], "unknown tree"),
            (["bench", "--shapes", "1x2"], "expected a shape BxTxIxH"),
            (["bench", "--shapes", "0x1x1x1"], "expected sizes ≥ 1"),
            (["bench", "--json", D], "expected a file to write, got the directory"),
        ],
        "demo": [
            (["demo", "--dry-run", "--seq-len", "0"], "--seq-len: expected an integer ≥ 1"),
            (["demo", "--dry-run", "--hidden-size", "-1"], "--hidden-size"),
            (["demo", "--dry-run", "--steps", "x"], "expected an integer, got 'x'"),
            (["demo", "--dry-run", "--seed", "-5"], "--seed"),
            (["demo", "--dry-run", "--out", F], "existing file"),
        ],
        "theory": [
            (["theory", "--json", D], "got the directory"),
            (["theory", "--json", F + "/t.json"], "is a file"),
        ],
        "sweep": [
            (["sweep", "--workers", "0", "--out", D + "/s"], "expected --workers ≥ 1, got 0"),
            (
                ["sweep", "--seq-len", "10,abc", "--out", D + "/s"],
                "--seq-len: expected an integer, got 'abc'",
            ),
            (["sweep", "--executor", "foo"], "invalid choice: 'foo'"),
            (["sweep", "status", D + "/nowhere"], "expected " + D + "/nowhere/ledger.sqlite"),
            (["sweep", "--spec", D + "/missing.toml", "--out", D + "/s"], "found no such file"),
            (["sweep", "--max-attempts", "0", "--out", D + "/s"], "expected --max-attempts ≥ 1, got 0"),
            (["sweep", "--deadline", "-1", "--out", D + "/s"], "expected a positive --deadline"),
            (["sweep", "--cell", "rnn,tree", "--out", D + "/s"], "invalid choice: 'tree'"),
        ],
        "reproduce": [
            (["reproduce", "nothing"], "invalid choice: 'nothing'"),
            (["reproduce", "vanishing", "--cells", "tree"], "unknown cells tree"),
            (["reproduce", "vanishing", "--seq-lens", "0"], "expected positive integers, got '0'"),
            (["reproduce", "vanishing", "--seeds", "0"], "expected --seeds ≥ 1, got 0"),
            (["reproduce", "vanishing", "--steps", "-3"], "--steps: expected an integer ≥ 1, got -3"),
            (["reproduce", "hs97-adding", "--seq-len", "7"], "expected seq_len ≥ 10"),
            (["reproduce", "hs97-adding", "--trials", "0"], "expected trials ≥ 1, got 0"),
        ],
    }


COMMANDS = ["train", "diagnose", "report", "bench", "demo", "theory", "sweep", "reproduce"]


@pytest.mark.parametrize("command", COMMANDS)
def test_bad_inputs_of_every_command(command: str, files, capsys, monkeypatch) -> None:
    if command == "bench":
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for argv, message in cases(files)[command]:
        code, _, err = run(argv, capsys)
        assert_one_line_error(code, err, message)


def test_the_count_of_bad_inputs_per_command(files) -> None:
    counts = {c: len(v) for c, v in cases(files).items()}
    assert counts == {
        "train": 36,
        "diagnose": 21,
        "report": 7,
        "bench": 7,
        "demo": 5,
        "theory": 2,
        "sweep": 8,
        "reproduce": 7,
    }


# -- property-based: random flag values and corrupted files ---------------------------------------

NUMBERS = st.one_of(
    st.integers(-(10**12), 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["0", "-1", "1", "2", "3", "1e400", "nan", "-inf", "0x10", "", " ", "1,2", "ten"]),
)
TEXT = st.text(min_size=0, max_size=12)


def value_for(flag: str) -> st.SearchStrategy[str]:
    return (
        st.one_of(NUMBERS, TEXT) if flag not in ("--task", "--cell") else st.sampled_from(["adding", "lstm"])
    )


TRAIN_FLAGS = [
    "--seq-len", "--hidden-size", "--num-layers", "--batch-size", "--steps", "--test-size", "--lr",
    "--momentum", "--clip-threshold", "--init-scale", "--forget-bias", "--input-bias", "--chrono",
    "--tbptt", "--seed", "--log-every", "--eval-every", "--monitor-every", "--checkpoint-every",
    "--symbols", "--protocol", "--variant", "--nonlinearity", "--max-skipped",
]  # fmt: skip

SMALL = settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))


def assert_clean_exit(code: int, out: str, err: str, allowed: tuple[int, ...] = (0,)) -> None:
    """Exit 0 (or another allowed status that the output explains), or 2 with one line."""
    assert "Traceback" not in err + out
    if code == 2:
        assert err.count("\n") == 1, err
    else:
        assert code in allowed, (code, err)


@SMALL
@given(flags=st.lists(st.sampled_from(TRAIN_FLAGS), min_size=1, max_size=3, unique=True), data=st.data())
def test_random_train_flags(flags, data, tmp_path_factory, capsys) -> None:
    argv = ["train", "--dry-run", "--out", str(tmp_path_factory.mktemp("fuzz"))]
    for flag in flags:
        argv += [flag, data.draw(value_for(flag), label=flag)]
    code, out, err = run(argv, capsys)
    assert_clean_exit(code, out, err, allowed=(0, 1))
    if code == 1:  # the guard stopped the run, or it skipped too much: said on stdout
        assert "stopped:" in out or "failed:" in out


DIAGNOSE_FLAGS = ["--seq-len", "--samples", "--seed", "--protocol", "--module", "--nonlinearity", "--variant"]


@SMALL
@given(flags=st.lists(st.sampled_from(DIAGNOSE_FLAGS), min_size=1, max_size=2, unique=True), data=st.data())
def test_random_diagnose_flags(flags, data, files, tmp_path_factory, capsys) -> None:
    argv = ["diagnose", str(files["lstm.pt"]), "--task", "adding", "--out", str(tmp_path_factory.mktemp("d"))]
    for flag in flags:
        value = data.draw(value_for(flag), label=flag)
        if flag == "--seq-len" and value.isdigit() and int(value) > 50:
            value = "50"  # a valid length is a valid length; keep the trace small
        argv += [flag, value]
    code, out, err = run(argv, capsys)
    assert_clean_exit(code, out, err)


@SMALL
@given(
    flag=st.sampled_from(["--repeats", "--warmup", "--device", "--cells", "--shapes"]),
    value=st.one_of(NUMBERS, TEXT, st.sampled_from(["cpu", "cuda:0", "rnn", "1x2x1x2", "2x3x2x4 1x1x1x0"])),
)
def test_random_bench_flags(flag, value, capsys, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    if flag in ("--repeats", "--warmup") and value.lstrip("-").isdigit():
        value = str(min(int(value), 2))  # a valid count is a valid count; keep the timing short
    base = ["bench", "--cells", "rnn", "--shapes", "1x2x1x2", "--repeats", "1", "--warmup", "0", "--no-watch"]
    code, out, err = run([*base, "--no-contributions", "--no-trace", flag, *value.split(" ")], capsys)
    assert_clean_exit(code, out, err)


def corrupt(data: bytes, draw) -> bytes:
    """Truncated, bit-flipped, or replaced by junk."""
    how = draw(st.sampled_from(["truncate", "flip", "junk"]))
    if how == "truncate":
        return data[: draw(st.integers(0, max(len(data) - 1, 0)))]
    if how == "flip":
        i = draw(st.integers(0, len(data) - 1))
        return data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1 :]
    return draw(st.binary(max_size=200))


@SMALL
@given(data=st.data())
def test_corrupted_model_and_input_files(data, files, tmp_path_factory, capsys) -> None:
    tmp = tmp_path_factory.mktemp("c")
    which = data.draw(st.sampled_from(["model", "inputs"]))
    bad = tmp / "bad.pt"
    bad.write_bytes(corrupt((files["lstm.pt" if which == "model" else "x.pt"]).read_bytes(), data.draw))
    if which == "model":
        argv = ["diagnose", str(bad), "--task", "adding", "--seq-len", "5", "--out", str(tmp / "o")]
    else:
        argv = ["diagnose", str(files["lstm.pt"]), "--inputs", str(bad), "--out", str(tmp / "o")]
    code, out, err = run(argv, capsys)
    assert_clean_exit(code, out, err)


@SMALL
@given(data=st.data())
def test_corrupted_checkpoints_on_resume(data, files, tmp_path_factory, capsys) -> None:
    tmp = tmp_path_factory.mktemp("r")
    for name in ("config.json", "metrics.csv", "checkpoint.prev.pt"):
        (tmp / name).write_bytes((files["run"] / name).read_bytes())
    (tmp / "checkpoint.pt").write_bytes(corrupt((files["run"] / "checkpoint.pt").read_bytes(), data.draw))
    argv = ["train", "--dry-run", "--task", "adding", "--cell", "gru", "--out", str(tmp), "--resume"]
    code, out, err = run(argv, capsys)
    assert_clean_exit(code, out, err)


@SMALL
@given(data=st.data())
def test_corrupted_run_files_given_to_report(data, files, tmp_path_factory, capsys) -> None:
    tmp = tmp_path_factory.mktemp("rep")
    for p in files["run"].iterdir():
        if p.is_file():
            (tmp / p.name).write_bytes(p.read_bytes())
    name = data.draw(
        st.sampled_from(["summary.json", "final_diagnostics.json", "config.json", "metrics.csv"])
    )
    (tmp / name).write_bytes(corrupt((files["run"] / name).read_bytes(), data.draw))
    code, out, err = run(["report", str(tmp), "--out", str(tmp / "r.html")], capsys)
    assert_clean_exit(code, out, err)


def test_json_written_by_a_run_is_strict(files) -> None:
    def refuse(constant: str) -> None:
        raise AssertionError(f"bare {constant} in strict JSON")

    for path in files["run"].rglob("*.json"):
        json.loads(path.read_text(), parse_constant=refuse)


# demo and theory run for minutes here: their property tests replace the work itself (training the
# four runs, measuring the claims) with an empty result and check everything around it


@SMALL
@given(
    flags=st.lists(
        st.sampled_from(["--seq-len", "--hidden-size", "--steps", "--seed", "--out"]),
        min_size=1,
        max_size=3,
        unique=True,
    ),
    data=st.data(),
)
def test_random_demo_flags(flags, data, tmp_path_factory, capsys, monkeypatch) -> None:
    import bptt.demo

    monkeypatch.setattr(
        bptt.demo, "run", lambda cfg, progress=None: {"runs": [], "claims": [], "report": "-"}
    )
    monkeypatch.chdir(tmp_path_factory.mktemp("demo"))
    argv = ["demo", "--dry-run"]
    for flag in flags:
        argv += [flag, data.draw(value_for(flag), label=flag)]
    code, out, err = run(argv, capsys)
    assert_clean_exit(code, out, err)


@SMALL
@given(path=st.one_of(TEXT, st.sampled_from(["a_file", "a_dir", "a_file/x.json", "new/t.json", ""])))
def test_random_theory_json_paths(path, files, capsys, monkeypatch) -> None:
    import bptt.theory

    monkeypatch.setattr(bptt.theory, "claims", lambda: [])
    monkeypatch.chdir(files["a_dir"].parent)
    code, out, err = run(["theory", "--json", path], capsys)
    assert_clean_exit(code, out, err)
