"""Each task generator against its protocol: lengths, markers, targets, baselines, criteria."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from bptt.tasks import (
    TASKS,
    Adding,
    CopyMemory,
    Latch,
    Multiplication,
    Reber,
    SequentialDigits,
    TemporalOrder,
    make_task,
)
from bptt.tasks.reber import REBER, SYMBOLS


def g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("protocol", ["hs97", "pascanu", "le"])
def test_adding_lengths_markers_and_targets(protocol: str) -> None:
    T = 100
    task = Adding(protocol, seq_len=T)
    lengths = set()
    for batch in task.generate(400, g()):
        L, B, _ = batch.x.shape
        lengths.add(L)
        marked = batch.x[:, :, 1] == 1.0
        assert bool((marked.sum(0) == 2).all())
        pos = marked.T.nonzero()[:, 1].view(B, 2)  # (B, 2) sorted positions
        vals = batch.x[:, :, 0]
        x_at = vals.T.gather(1, pos)
        if protocol == "hs97":
            assert 100 <= L <= 110
            assert bool((vals.abs() <= 1).all())
            first_marker = torch.where(marked[:10].any(0), 0, 1)
            assert bool((first_marker == 0).all())  # one of the first ten pairs is marked
            assert bool((pos[:, 1] < T // 2).all())  # the other among the first T/2 − 1 unmarked
            assert bool(((batch.x[0, :, 1] == -1) | marked[0]).all()) and bool(
                ((batch.x[-1, :, 1] == -1) | marked[-1]).all()
            )
            x1 = torch.where(pos[:, 0] == 0, 0.0, x_at[:, 0])
            expected = 0.5 + (x1 + x_at[:, 1]) / 4
            # X1 is the one chosen among the first ten: when both lie there, either could be X1
            both_early = pos[:, 1] < 10
            ok = torch.isclose(batch.y[:, 0], expected) | both_early
            assert bool(ok.all())
        elif protocol == "pascanu":
            assert 100 <= L < 110
            assert bool((pos[:, 0] < math.ceil(0.1 * L)).all()) and bool(
                (pos[:, 1] >= math.ceil(0.1 * L)).all()
            )
            assert bool((pos[:, 1] < 0.5 * L).all())
            assert torch.allclose(batch.y[:, 0], x_at.mean(1))
        else:
            assert L == T
            assert bool((pos[:, 0] < T // 2).all()) and bool((pos[:, 1] >= T // 2).all())
            assert torch.allclose(batch.y[:, 0], x_at.sum(1))
    assert len(lengths) > 1 if protocol != "le" else lengths == {T}


@pytest.mark.parametrize(
    "task",
    [
        Adding("hs97", 60),
        Adding("pascanu", 60),
        Adding("le", 60),
        Multiplication(seq_len=60),
        Latch(seq_len=30),
    ],
    ids=["adding-hs97", "adding-pascanu", "adding-le", "multiplication", "latch"],
)
def test_regression_baseline_is_the_variance_of_the_target(task) -> None:
    y = torch.cat([b.y for b in task.generate(60000, g(1))])
    assert float(((y - y.mean()) ** 2).mean()) == pytest.approx(task.baseline_loss, rel=0.03)


def test_multiplication_targets_are_products() -> None:
    for batch in Multiplication(seq_len=40).generate(200, g()):
        marked = batch.x[:, :, 1] == 1.0
        pos = marked.T.nonzero()[:, 1].view(-1, 2)
        x_at = batch.x[:, :, 0].T.gather(1, pos)
        prod = torch.where(pos[:, 0] == 0, 1.0, x_at[:, 0]) * x_at[:, 1]
        assert bool((torch.isclose(batch.y[:, 0], prod) | (pos[:, 1] < 10)).all())


@pytest.mark.parametrize(("protocol", "symbols"), [("hs97", 2), ("hs97", 3), ("pascanu", 2), ("pascanu", 3)])
def test_temporal_order_symbols_positions_and_classes(protocol: str, symbols: int) -> None:
    task = TemporalOrder(protocol, seq_len=100, symbols=symbols)
    ys = []
    for batch in task.generate(800, g()):
        L = batch.x.shape[0]
        sym = batch.x.argmax(-1)  # (L, B)
        relevant = sym >= 4
        if protocol == "hs97":
            assert 100 <= L <= 110
            assert bool((sym[0] == 6).all() and (sym[-1] == 7).all())
            relevant = (sym == 4) | (sym == 5)
        assert bool((relevant.sum(0) == symbols).all())
        for b in range(batch.size):
            pos = relevant[:, b].nonzero()[:, 0]
            for p, (lo, hi) in zip(pos.tolist(), task.windows(L), strict=True):
                assert lo <= p <= hi
            code = [int(sym[p, b] - 4) for p in pos]
            assert int(batch.y[b]) == int("".join(map(str, code)), 2)
        ys.append(batch.y)
    counts = torch.bincount(torch.cat(ys), minlength=task.output_size).double()
    freq = counts / counts.sum()
    assert float(-(freq * freq.log()).sum()) == pytest.approx(
        task.baseline_loss, rel=0.01
    )  # uniform classes: ln C


def test_copy_layout_and_baseline() -> None:
    task = CopyMemory(seq_len=30)
    (b,) = task.generate(500, g())
    sym = b.x.argmax(-1)
    assert b.x.shape[0] == 50
    assert bool((sym[:10] < 8).all()) and bool((sym[10:39] == 8).all()) and bool((sym[39] == 9).all())
    assert torch.equal(b.y[-10:], sym[:10]) and bool((b.y[:-10] == 8).all())
    # the best prediction that ignores the input: blank, then uniform over 8
    logits = torch.full((50, 500, 9), -1e9)
    logits[:-10, :, 8] = 0
    logits[-10:, :, :8] = 0
    assert float(task.loss(logits, b)) == pytest.approx(task.baseline_loss, rel=1e-6)
    assert task.baseline_loss == pytest.approx(10 * math.log(8) / 50)
    assert CopyMemory(seq_len=100).baseline_loss == pytest.approx(0.1733, abs=1e-4)


def test_latch_class_is_in_the_first_inputs_only() -> None:
    (b,) = Latch(seq_len=40, informative=2, noise=0.1).generate(2000, g())
    sign = torch.sign(b.y[:, 0])
    assert float((b.x[:2, :, 0] * sign).mean()) == pytest.approx(1.0, abs=0.02)
    assert abs(float((b.x[2:, :, 0] * sign).mean())) < 0.01
    assert float(b.x[2:].std()) == pytest.approx(0.1, rel=0.05)


def test_reber_strings_follow_the_grammar() -> None:
    task = Reber()
    (b,) = task.generate(300, g())
    for n in range(b.size):
        steps = int(b.mask[:, n].sum())
        s = "".join(SYMBOLS[int(i)] for i in b.x[:steps, n].argmax(-1)) + SYMBOLS[int(b.y[steps - 1, n])]
        assert s[0] == "B" and s[2] == "B" and s[-1] == "E" and s[1] == s[-2] and s[1] in "TP"
        state = 0
        for c in s[3:-3]:  # the inner Reber string after its B and before its E
            state = dict(REBER[state])[c]
        assert state == 5 and s[-3] == "E"
        for t in range(steps):  # the actual next symbol is always legal
            assert bool(b.legal[t, n, b.y[t, n]])
    assert task.baseline_loss == pytest.approx(math.log(7))


def test_reber_criterion_needs_the_legal_symbols_on_top() -> None:
    task = Reber()
    (b,) = task.generate(20, g())
    perfect = torch.where(b.legal, 5.0, -5.0)
    assert bool(task.correct(perfect, b).all())
    wrong_branch = perfect.clone()
    t_branch = b.mask.sum(0) - 2  # the step that predicts the second T or P
    for n in range(b.size):
        wrong_branch[t_branch[n], n] = -wrong_branch[t_branch[n], n]
    assert not bool(task.correct(wrong_branch, b).any())


def test_digits_are_the_bundled_scikit_learn_images() -> None:
    task = SequentialDigits(test_size=300)
    (test,) = task.test_set()
    assert test.x.shape == (64, 300, 1) and 0 <= float(test.x.min()) and float(test.x.max()) <= 1
    train = next(task.batches(1000, g()))
    assert len(set(task._test_idx.tolist()) & set(task._train_idx.tolist())) == 0
    freq = torch.bincount(train.y, minlength=10).double() / 1000
    assert float(freq.min()) > 0.05
    permuted = SequentialDigits("permuted", test_size=300)
    assert not torch.equal(permuted.test_set()[0].x, test.x)
    assert torch.equal(
        permuted.test_set()[0].x.sort(0).values, test.x.sort(0).values
    )  # the same pixels, reordered


@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_is_seeded_and_its_test_set_fixed(name: str) -> None:
    kw = {} if name in ("reber", "digits") else {"seq_len": 20}
    a, b = make_task(name, **kw), make_task(name, **kw)
    x1 = next(a.batches(4, g(5))).x
    x2 = next(b.batches(4, g(5))).x
    assert torch.equal(x1, x2)
    assert not torch.equal(x1, next(b.batches(4, g(6))).x)  # another seed, other sequences
    t1, t2 = a.test_set(), make_task(name, **kw).test_set()
    assert all(torch.equal(p.x, q.x) and torch.equal(p.y, q.y) for p, q in zip(t1, t2, strict=True))
    assert sum(t.size for t in t1) == a.test_size


@pytest.mark.parametrize("name", list(TASKS))
def test_perfect_predictions_solve_and_chance_does_not(name: str) -> None:
    kw = {} if name in ("reber", "digits") else {"seq_len": 20}
    task = make_task(name, test_size=200, **kw) if name != "digits" else make_task(name)

    def perfect(x: torch.Tensor) -> torch.Tensor:
        batch = next(b for b in task.test_set() if b.x.data_ptr() == x.data_ptr())
        if task.target == "regression":
            return batch.y
        if name == "reber":
            return torch.where(batch.legal, 5.0, -5.0)
        return F.one_hot(batch.y, task.output_size).float() * 20

    def chance(x: torch.Tensor) -> torch.Tensor:
        batch = next(b for b in task.test_set() if b.x.data_ptr() == x.data_ptr())
        if task.target == "regression":
            return batch.y.mean().expand_as(batch.y)
        shape = (*batch.y.shape, task.output_size)
        return torch.zeros(shape)

    good = task.evaluate(perfect)
    assert good["solved"] == 1.0 and good["error_rate"] == 0.0
    bad = task.evaluate(chance)
    assert bad["solved"] == 0.0
    if task.target == "class":
        assert bad["loss"] == pytest.approx(math.log(task.output_size))


def test_bad_task_requests() -> None:
    with pytest.raises(
        ValueError, match=r"unknown task 'parity'; expected one of 'adding', 'multiplication'"
    ):
        make_task("parity")
    with pytest.raises(
        ValueError, match=r"unknown protocol 'arjovsky'; expected one of 'le', 'hs97', 'pascanu'"
    ):
        make_task("adding", "arjovsky")
    with pytest.raises(ValueError, match="leave seq_len out"):
        make_task("reber", seq_len=50)
    with pytest.raises(ValueError, match="expected symbols 2 or 3, got 4"):
        make_task("temporal_order", symbols=4)
    with pytest.raises(ValueError, match="expected seq_len ≥ 1, got 0"):
        make_task("copy", seq_len=0)
