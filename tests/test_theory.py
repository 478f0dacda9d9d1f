"""bptt.theory: every claim holds, and its numbers are the references' numbers."""

from __future__ import annotations

import pytest

from bptt import cli, theory


def test_every_claim_holds() -> None:
    claims = theory.claims()
    assert len(claims) >= 20
    failing = [(c.name, c.closed_form, c.measured) for c in claims if not c.holds]
    assert failing == []


def test_the_published_numbers() -> None:
    u, g = theory.gain_optimum("sigmoid")
    assert u == pytest.approx(1.5434046, abs=5e-8)
    assert g == pytest.approx(0.2238716, abs=5e-8)
    by_name = {c.name: c for c in theory.claims()}
    assert by_name["σ(10)"].measured == pytest.approx(0.9999546, abs=5e-8)
    assert by_name["forget-gate decay over 1000 steps"].measured == pytest.approx(0.9556, abs=5e-5)


def test_golden_section_finds_a_known_maximum() -> None:
    x, fx = theory.golden_max(lambda x: -((x - 0.3) ** 2) + 2, 0, 1)
    assert x == pytest.approx(0.3, abs=1e-6) and fx == pytest.approx(
        2.0, abs=1e-14
    )  # a flat maximum: x to √ε


def test_a_claim_that_does_not_hold_says_so() -> None:
    c = theory.Claim("x", "x = 1", 1.0, 1.1, "by hand", 1e-6)
    assert not c.holds and c.rel_err == pytest.approx(0.1)


def test_relu_has_no_gain_optimum() -> None:
    with pytest.raises(ValueError, match="not 'relu'"):
        theory.gain_optimum("relu")


def test_theory_command_prints_the_table(capsys, tmp_path) -> None:
    assert cli.main(["theory", "--json", str(tmp_path / "t.json")]) == 0
    out = capsys.readouterr().out
    assert "0.2238716023" in out and "claims hold" in out
    assert (tmp_path / "t.json").exists()
