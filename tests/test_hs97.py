"""HS97's memory blocks and truncated gradient, against an unrolled reference; the reproduction's protocol."""

from __future__ import annotations

import pytest
import torch

from bptt._checks import InputError
from bptt.cells.hs97 import MemoryBlockLSTM, block_forward, truncated_grad
from bptt.reproduce.hs97 import HS97Config, run

from reference import hs97_unroll


def net(truncate: bool = True, seed: int = 0) -> MemoryBlockLSTM:
    g = torch.Generator().manual_seed(seed)
    m = MemoryBlockLSTM(2, 2, 2, 1, truncate, (-1.0, -2.0), init_range=0.5, generator=g).double()
    return m


def test_the_adding_network_has_the_papers_93_weights() -> None:
    m = MemoryBlockLSTM(2, blocks=2, cells_per_block=2, input_gate_bias=(-3.0, -6.0))
    assert sum(p.numel() for p in m.parameters()) == 93
    assert m.weight[4:6, -1].tolist() == [-3.0, -6.0]  # the input gates' biases


@pytest.mark.parametrize("truncate", [True, False])
def test_output_and_gradient_equal_the_unrolled_reference(truncate: bool) -> None:
    m = net(truncate)
    x = torch.randn(12, 3, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = m(x)
    y.sum().backward()
    ref_w = m.weight.detach().clone().requires_grad_()
    ref_o = m.weight_out.detach().clone().requires_grad_()
    ref = torch.stack([hs97_unroll(ref_w, ref_o, x[:, b], 2, 2, truncate) for b in range(3)])
    ref.sum().backward()
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(m.weight.grad, ref_w.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(m.weight_out.grad, ref_o.grad, rtol=1e-10, atol=1e-12)


def test_the_full_gradient_equals_finite_differences() -> None:
    m = net(truncate=False)
    x = torch.randn(6, 2, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    w, wo = m.weight.detach().clone().requires_grad_(), m.weight_out.detach().clone().requires_grad_()

    def f(w: torch.Tensor, wo: torch.Tensor) -> torch.Tensor:
        from bptt.cells.hs97 import block_output

        return block_output(wo, block_forward(w, x, 2, 2, truncate=False).y_cells)

    assert torch.autograd.gradcheck(f, (w, wo))


def test_the_closed_form_truncated_gradient_equals_autograd_with_lengths() -> None:
    m = net(truncate=True, seed=3)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(15, 4, 2, generator=g, dtype=torch.float64)
    lengths = torch.tensor([15, 11, 13, 9])
    active = torch.arange(15).unsqueeze(1) < lengths
    target = torch.rand(4, 1, generator=g, dtype=torch.float64)
    tape = block_forward(m.weight.detach(), x, 2, 2, active)
    E, d_w, d_wo = truncated_grad(tape, m.weight.detach(), m.weight_out.detach(), target, 2, 2)
    for k in range(4):
        m.zero_grad()
        L = int(lengths[k])
        e = 0.5 * (m(x[:L, k : k + 1]) - target[k]).pow(2).sum()
        e.backward()
        torch.testing.assert_close(E[k], e.detach(), rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(d_w[k], m.weight.grad, rtol=1e-9, atol=1e-13)
        torch.testing.assert_close(d_wo[k], m.weight_out.grad, rtol=1e-9, atol=1e-13)


def test_truncation_drops_the_error_that_leaves_through_the_gates() -> None:
    x = torch.randn(10, 1, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    grads = []
    for truncate in (True, False):
        m = net(truncate)
        m(x).sum().backward()
        grads.append(m.weight.grad)
    assert not torch.allclose(grads[0], grads[1])
    # the last step's output gates see no recurrence either way: their rows agree
    torch.testing.assert_close(grads[0][6:], grads[1][6:], rtol=0.5, atol=1.0)


def test_a_wrong_weight_shape_or_bias_count_is_refused() -> None:
    with pytest.raises(InputError, match=r"expected weight of shape \(8, 11\)"):
        block_forward(torch.zeros(8, 10), torch.zeros(3, 1, 2), 2, 2)
    with pytest.raises(InputError, match="one input-gate bias per block"):
        MemoryBlockLSTM(2, 2, 2, input_gate_bias=(-3.0,))


def test_the_quick_reproduction_trains_online_and_tests_every_trial() -> None:
    cfg = HS97Config(seq_len=10, trials=2, max_sequences=300, window=50, test_size=64, report_every=100)
    seen = []
    result = run(cfg, progress=lambda n, done, mse: seen.append(n))
    s = result.summary()
    assert s["trials"] == 2 and len(s["per_trial"]) == 2
    assert seen and seen[0] == 100
    for t in result.trials:
        assert 0 <= t.wrong <= 64 and 50 <= t.sequences <= 300
        assert t.solved == (t.sequences < 300) or t.sequences == 300
    assert s["paper_sequences"] is None  # Table 7 has T = 100, 500, 1000 only
    assert HS97Config().seq_len == 100 and s["settings"]["lr"] == 0.5
    # the trials are seeded: the same config gives the same nets and the same test errors
    again = run(cfg)
    assert [t.test_mse for t in again.trials] == [t.test_mse for t in result.trials]
    other = run(HS97Config(seq_len=10, trials=2, max_sequences=300, window=50, test_size=64, seed=1))
    assert [t.test_mse for t in other.trials] != [t.test_mse for t in result.trials]


def test_the_c_loop_takes_the_same_online_step_as_the_pytorch_code() -> None:
    from bptt.reproduce import native

    if native.library() is None:
        pytest.skip("no C compiler")
    g = torch.Generator().manual_seed(6)
    K = 3
    nets = [net(seed=k) for k in range(K)]
    W = torch.stack([m.weight.detach() for m in nets]).contiguous()
    Wo = torch.stack([m.weight_out.detach() for m in nets]).contiguous()
    x = torch.randn(17, K, 2, generator=g, dtype=torch.float64)
    target = torch.rand(K, 1, generator=g, dtype=torch.float64)
    learning = torch.tensor([True, False, True])
    tape = block_forward(W, x, 2, 2)
    E, d_w, d_wo = truncated_grad(tape, W, Wo, target, 2, 2)
    rate = (0.5 * learning.double()).view(K, 1, 1)
    W_c, Wo_c = W.numpy().copy(), Wo.numpy().copy()
    E_c = native.step(x.numpy(), target.numpy(), W_c, Wo_c, learning.numpy(), 0.5, 2, 2)
    assert E_c is not None
    torch.testing.assert_close(torch.from_numpy(E_c), E, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(torch.from_numpy(W_c), W - rate * d_w, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(torch.from_numpy(Wo_c), Wo - rate * d_wo, rtol=1e-12, atol=1e-14)
    assert torch.equal(torch.from_numpy(W_c)[1], W[1])  # a network that no longer learns keeps its weights


def test_the_c_and_pytorch_reproductions_agree() -> None:
    cfg = HS97Config(seq_len=10, trials=2, max_sequences=60, window=20, test_size=32)
    a, b = run(cfg), run(HS97Config(**{**cfg.__dict__, "engine": "python"}))
    assert b.engine == "python"
    for ta, tb in zip(a.trials, b.trials, strict=True):
        assert ta.sequences == tb.sequences and ta.wrong == tb.wrong
        assert ta.test_mse == pytest.approx(tb.test_mse, rel=1e-9)
