"""The README's Python examples run as they are written (in order, in one namespace)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


# the default suite runs the examples at small sizes (the same calls); `-m slow` runs them as written
SMALL = {
    "(35, 20)": "(6, 3)",
    "torch.randn(200, 32, 2)": "torch.randn(20, 4, 2)",
    "LSTM(2, 64)": "LSTM(2, 8)",
}


@pytest.mark.parametrize("size", ["small", pytest.param("as written", marks=pytest.mark.slow)])
def test_every_python_example_of_the_readme_runs(
    size: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = blocks()
    if size == "small":
        for old, new in SMALL.items():
            assert any(old in block for block in code), f"the README no longer has {old}"
            code = [block.replace(old, new) for block in code]
    assert len(code) >= 3
    monkeypatch.chdir(tmp_path)  # the Monitor's example writes runs/mine here
    torch.manual_seed(0)
    names: dict[str, object] = {}
    exec(code[0], names)
    model = names["model"]
    assert isinstance(model, torch.nn.Module)
    names.update(  # what the training-loop example takes from its surroundings
        batches=[(torch.randint(1000, (5, 2)), torch.randint(1000, (5, 2))) for _ in range(2)],
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        criterion=torch.nn.functional.cross_entropy,
    )
    for block in code[1:]:
        exec(block, names)
    assert (tmp_path / "runs" / "mine" / "diagnostics.jsonl").is_file()
    tr = names["tr"]
    assert tr.contribution_norms().shape == ((200,) if size == "as written" else (20,))
