"""Files from elsewhere: no code runs from any file bptt reads, and diagnose finds the recurrent weights.

Every loading path gets a malicious file — a pickle whose unpickling would create a marker file —
in torch's zip format and in its legacy format, whole or hidden inside a dict, through the command
line and the Python API; the marker must never appear and the error must say what to do.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from bptt import cli
from bptt.diagnose import diagnose, load_inputs, load_subject, read_file
from bptt.training import TrainConfig, train
from bptt.training import checkpoint as ckpt


class Payload:
    """Unpickling this calls open(marker, "w"): code from the file, run by the loader."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (builtins.open, (str(self.marker), "w"))


def evil_objects(marker: Path) -> dict[str, object]:
    """The shapes an attack takes: the payload alone, inside a state dict, inside a checkpoint."""
    lstm = torch.nn.LSTM(2, 3)
    return {
        "bare": Payload(marker),
        "state_dict": {**lstm.state_dict(), "extra": Payload(marker)},
        "lightning": {"state_dict": lstm.state_dict(), "hyper_parameters": Payload(marker)},
        "checkpoint": {"config": {}, "model": lstm.state_dict(), "step": Payload(marker)},
        "inputs": {"x": torch.randn(5, 2, 2), "meta": Payload(marker)},
    }


def save(obj: object, path: Path, legacy: bool) -> Path:
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path


def test_the_payload_does_run_when_unpickled(tmp_path) -> None:
    # the control: without weights_only the file does run its code, so the tests below can fail
    marker = tmp_path / "ran"
    path = save(Payload(marker), tmp_path / "evil.pt", legacy=False)
    torch.load(path, weights_only=False).close()  # the payload's open file
    assert marker.exists()


FORMATS = [False, True]


def cli_paths(tmp_path: Path, evil: Path) -> dict[str, list[str]]:
    """Every command-line way of making bptt read `evil`."""
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    (run / "checkpoint.pt").write_bytes(evil.read_bytes())
    prev = tmp_path / "prev"
    prev.mkdir(exist_ok=True)
    (prev / "checkpoint.pt").write_bytes(b"torn")
    (prev / "checkpoint.prev.pt").write_bytes(evil.read_bytes())
    good = tmp_path / "good.pt"
    torch.save(torch.nn.GRU(2, 3).state_dict(), good)
    out = str(tmp_path / "out")
    return {
        "diagnose FILE": ["diagnose", str(evil), "--task", "adding", "--seq-len", "5", "--out", out],
        "diagnose RUN_DIR": ["diagnose", str(run), "--out", out],
        "diagnose --inputs": ["diagnose", str(good), "--inputs", str(evil), "--out", out],
        "train --resume": ["train", "--dry-run", "--resume", "--out", str(run)],
        "train --resume, previous": ["train", "--dry-run", "--resume", "--out", str(prev)],
    }


@pytest.mark.parametrize("legacy", FORMATS, ids=["zip", "legacy"])
@pytest.mark.parametrize("shape", ["bare", "state_dict", "lightning", "checkpoint", "inputs"])
def test_no_command_runs_code_from_a_file(shape: str, legacy: bool, tmp_path, capsys) -> None:
    marker = tmp_path / "ran"
    evil = save(evil_objects(marker)[shape], tmp_path / "evil.pt", legacy)
    for name, argv in cli_paths(tmp_path, evil).items():
        code = cli.main(argv)
        err = capsys.readouterr().err
        assert not marker.exists(), f"{name} ran code from a {shape} file"
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, (name, err)


def api_paths(tmp_path: Path, evil: Path) -> dict[str, Callable[[], object]]:
    """Every Python way of making bptt read `evil`."""
    run = tmp_path / "api-run"
    run.mkdir(exist_ok=True)
    (run / "checkpoint.pt").write_bytes(evil.read_bytes())
    tiny = TrainConfig(task="adding", seq_len=5, hidden_size=4, batch_size=2, steps=2, test_size=8)
    return {
        "read_file": lambda: read_file(evil),
        "load_subject": lambda: load_subject(evil),
        "load_subject(run dir)": lambda: load_subject(run),
        "load_inputs": lambda: load_inputs(evil),
        "diagnose": lambda: diagnose(evil, tmp_path / "o", task="adding", seq_len=5),
        "checkpoint.read": lambda: ckpt.read(evil),
        "checkpoint.load": lambda: ckpt.load(run),
        "train(resume=True)": lambda: train(tiny, run, resume=True),
    }


@pytest.mark.parametrize("legacy", FORMATS, ids=["zip", "legacy"])
@pytest.mark.parametrize("shape", ["bare", "state_dict", "lightning", "checkpoint", "inputs"])
def test_no_python_entry_runs_code_from_a_file(shape: str, legacy: bool, tmp_path) -> None:
    marker = tmp_path / "ran"
    evil = save(evil_objects(marker)[shape], tmp_path / "evil.pt", legacy)
    for name, call in api_paths(tmp_path, evil).items():
        with pytest.raises(ValueError):  # InputError and CheckpointError are ValueErrors
            call()
        assert not marker.exists(), f"{name} ran code from a {shape} file"


def test_a_pickled_model_is_refused_with_the_choices(tmp_path, capsys) -> None:
    torch.save(torch.nn.LSTM(2, 3), tmp_path / "whole.pt")
    assert cli.main(["diagnose", str(tmp_path / "whole.pt"), "--task", "adding"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "can run any code" in err and "state_dict()" in err and "--trust-pickle" in err


class Seq2Seq(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(10, 2)
        self.encoder = torch.nn.GRU(2, 5)
        self.decoder = torch.nn.LSTM(2, 4, num_layers=2)
        self.head = torch.nn.Linear(4, 10)


def test_a_trusted_pickled_model_is_diagnosed_and_its_modules_chosen(tmp_path, capsys) -> None:
    torch.manual_seed(0)
    model = Seq2Seq().double()
    torch.save(model, tmp_path / "whole.pt")
    torch.save(model.decoder.state_dict(), tmp_path / "decoder.pt")
    argv = ["diagnose", str(tmp_path / "whole.pt"), "--task", "adding", "--seq-len", "6", "--trust-pickle"]
    assert cli.main([*argv, "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "several recurrent modules: decoder, encoder; choose one with --module NAME" in err
    assert cli.main([*argv, "--module", "decoder", "--out", str(tmp_path / "a")]) == 0
    direct = diagnose(tmp_path / "decoder.pt", tmp_path / "b", task="adding", seq_len=6)
    whole = json.loads((tmp_path / "a" / "final_diagnostics.json").read_text())
    assert whole == json.loads((tmp_path / "b" / "final_diagnostics.json").read_text())
    assert direct["record"].cell == whole["cell"]


@pytest.mark.parametrize("wrap", ["model", "lightning"])
def test_a_whole_models_state_dict_finds_the_recurrent_weights(wrap: str, tmp_path) -> None:
    torch.manual_seed(0)
    model = Seq2Seq()
    sd = model.state_dict()
    if wrap == "lightning":  # a LightningModule holding the model as self.model
        sd = {"state_dict": {f"model.{k}": v for k, v in sd.items()}, "epoch": 3, "global_step": 120}
        prefix = "model."
    else:
        prefix = ""
    torch.save(sd, tmp_path / "m.pt")
    torch.save(model.encoder.state_dict(), tmp_path / "enc.pt")
    with pytest.raises(ValueError, match=f"several recurrent modules: {prefix}decoder, {prefix}encoder"):
        load_subject(tmp_path / "m.pt")
    with pytest.raises(ValueError, match="--module 'rnn' is not a recurrent module"):
        load_subject(tmp_path / "m.pt", module="rnn")
    subject = load_subject(tmp_path / "m.pt", module=f"{prefix}encoder")
    assert subject.description["module"] == f"{prefix}encoder"
    a = diagnose(tmp_path / "m.pt", tmp_path / "a", task="adding", seq_len=7, module=f"{prefix}encoder")
    b = diagnose(tmp_path / "enc.pt", tmp_path / "b", task="adding", seq_len=7)
    assert a["record"] == b["record"]


@pytest.mark.parametrize(
    ("make", "kwargs", "message"),
    [
        (
            lambda: torch.nn.LSTM(2, 3).state_dict(),
            {"nonlinearity": "relu"},
            "--nonlinearity applies to state dicts of the rnn cell",
        ),
        (
            lambda: torch.nn.RNN(2, 3).state_dict(),
            {"variant": "cifg"},
            "--variant applies to state dicts of the lstm cell",
        ),
        (lambda: torch.nn.GRU(2, 3).state_dict(), {"variant": "cifg"}, "does not fit a LSTM.*Missing key"),
        (lambda: {"embed.weight": torch.zeros(3, 2)}, {}, "holds no torch.nn RNN/LSTM/GRU weights"),
        (lambda: [1, 2, 3], {}, "holds a list"),
    ],
)
def test_flags_that_do_not_apply_to_the_file_are_errors(make, kwargs, message, tmp_path) -> None:
    torch.save(make(), tmp_path / "m.pt")
    with pytest.raises(ValueError, match=message) as info:
        load_subject(tmp_path / "m.pt", **kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "cannot read"),
        (b"PK\x03\x04 a torn zip", "cannot read"),
        (b"\x80\x02}q\x00", "cannot read"),  # a pickle cut short
        (b"not a model at all\n" * 10, "cannot read"),
    ],
)
def test_corrupt_model_files_are_one_clear_error(content: bytes, message: str, tmp_path) -> None:
    (tmp_path / "m.pt").write_bytes(content)
    with pytest.raises(ValueError, match=message):
        load_subject(tmp_path / "m.pt")


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (torch.zeros(3, 2, 2, dtype=torch.long), "token ids\\? embed them first"),
        (torch.tensor([[[float("nan")]]]), "expected finite inputs"),
        (torch.zeros(0, 2, 2), "non-empty tensor"),
        (torch.zeros(2), "got a 1-d tensor"),
        ({"y": torch.zeros(3, 2, 2)}, "got NoneType"),
    ],
)
def test_bad_input_files_are_one_clear_error(obj, message: str, tmp_path) -> None:
    torch.save(obj, tmp_path / "x.pt")
    with pytest.raises(ValueError, match=message):
        load_inputs(tmp_path / "x.pt")
