"""The guided tour (examples/seeds_tour.ipynb) runs at small sizes, without errors, and draws its figures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_the_tour_notebook_is_stripped_and_matches_its_generator() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_seeds_tour", EXAMPLES / "make_seeds_tour.py")
    assert spec is not None and spec.loader is not None
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    committed = maker.nbformat.read(EXAMPLES / "seeds_tour.ipynb", as_version=4)
    assert all(
        not c.get("outputs") and c.get("execution_count") is None
        for c in committed["cells"]
        if c["cell_type"] == "code"
    )
    assert [c["source"] for c in committed["cells"]] == [c["source"] for c in maker.build().cells]


def test_the_tour_runs_at_small_sizes_and_draws_a_figure_per_claim(tmp_path, monkeypatch) -> None:
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("BPTT_TOUR_SMALL", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    src = str(Path(__file__).resolve().parent.parent / "src")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
    nb = nbformat.read(EXAMPLES / "seeds_tour.ipynb", as_version=4)
    nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(figures) == 5  # one per claim
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "max over w of w·σ'(w·1) = 0.2239 at w = 1.5434"  # seed 002: 0.224 at w = 1.5434 in text
    assert "λ1 per gate block" in text and "gradient norm" in text
