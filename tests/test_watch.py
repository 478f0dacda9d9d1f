"""bptt.watch on whole models: traces from the user's own step, against autograd and an independent unroll."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import bptt
from bptt._checks import InputError

from helpers import rel_err
from reference import unroll

F64 = torch.float64


class WordModel(nn.Module):
    """embedding → recurrent core → linear decoder, a loss at every step: a small language model."""

    def __init__(self, core: nn.Module, vocab: int = 11, emb: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, emb)
        self.drop = nn.Dropout(dropout)
        self.rnn = core
        width = (getattr(core, "proj_size", 0) or core.hidden_size) * (2 if core.bidirectional else 1)
        self.decoder = nn.Linear(width, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.drop(self.embed(tokens)))
        return self.decoder(self.drop(out))


def lm_loss(model: WordModel, tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = model(tokens)
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def data(T: int = 7, B: int = 3, vocab: int = 11, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(vocab, (T, B), generator=g), torch.randint(vocab, (T, B), generator=g)


CORES = {
    "lstm-2-bi": lambda: nn.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=F64),
    "gru-2": lambda: nn.GRU(3, 4, num_layers=2, dtype=F64),
    "rnn-relu": lambda: nn.RNN(3, 4, nonlinearity="relu", dtype=F64),
    "lstm-proj": lambda: nn.LSTM(3, 5, proj_size=2, dtype=F64),
    "bptt-lstm-peephole": lambda: bptt.LSTM(3, 4, num_layers=2, variant="peephole", dtype=F64),
    "bptt-gru-bi": lambda: bptt.GRU(3, 4, bidirectional=True, dtype=F64),
}


def kind_of(core: nn.Module) -> tuple[str, dict]:
    if isinstance(core, (nn.LSTM, bptt.LSTM)):
        return "lstm", {"variant": getattr(core, "variant", "vanilla")}
    if isinstance(core, (nn.GRU, bptt.GRU)):
        return "gru", {}
    return "rnn", {"nonlinearity": core.nonlinearity}


@pytest.mark.parametrize("name", list(CORES))
def test_watched_grads_equal_unwatched_autograd_and_dh_equals_the_unrolled_reference(name: str) -> None:
    torch.manual_seed(0)
    model = WordModel(CORES[name]()).double()
    tokens, targets = data()
    lm_loss(model, tokens, targets).backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    with bptt.watch(model) as w:
        loss = lm_loss(model, tokens, targets)
        loss.backward()
        w.loss = loss
    for n, p in model.named_parameters():
        assert rel_err(p.grad, expected[n]) < 1e-12, n
    tr = w.traces["rnn"]
    assert list(w.traces) == ["rnn"] and tr is w.trace
    core = model.rnn
    for n, p in core.named_parameters():
        assert rel_err(tr.grads[n], p.grad) < 1e-12, n
    assert float(tr.loss) == pytest.approx(loss.item(), rel=1e-14)
    # dh[l, t] is the total ∂loss/∂h_t, through later steps and the layers above
    kind, cfg = kind_of(core)
    x = model.embed(tokens)
    ref = unroll(kind, dict(core.named_parameters()), x, None, core.num_layers, core.bidirectional, **cfg)
    ref_loss = nn.functional.cross_entropy(model.decoder(ref["output"]).reshape(-1, 11), targets.reshape(-1))
    hs = [h for layer in ref["h"] for h in layer]
    *dh, dx = torch.autograd.grad(ref_loss, [*hs, x])
    assert rel_err(tr.dh, torch.stack(dh).view_as(tr.dh)) < 1e-11
    assert rel_err(tr.dx, dx) < 1e-11  # ∂loss/∂x_t, the gradient at every input step


def test_batch_first_and_a_model_with_two_recurrent_modules_called_twice() -> None:
    torch.manual_seed(0)

    class EncoderDecoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.GRU(2, 4, batch_first=True, dtype=F64)
            self.decoder = bptt.LSTM(2, 4, batch_first=True, dtype=F64)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            _, h = self.encoder(x)
            out1, state = self.decoder(x[:, :3], (h, torch.zeros_like(h)))
            out2, _ = self.decoder(x[:, 3:], state)  # called twice: two traces
            return out1.pow(2).sum() + out2.sum()

    model = EncoderDecoder()
    x = torch.randn(2, 5, 2, dtype=F64)  # (B, T, I)
    model(x).backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    with bptt.watch(model) as w:
        model(x).backward()
    assert list(w.traces) == ["encoder", "decoder", "decoder#1"]
    for n, p in model.named_parameters():
        assert rel_err(p.grad, expected[n]) < 1e-12, n
    assert w.traces["encoder"].h.shape == (1, 5, 2, 4)  # time-major whatever batch_first
    assert w.traces["decoder"].steps == 3 and w.traces["decoder#1"].steps == 2
    with pytest.raises(InputError, match="expected one trace, got 3"):
        _ = w.trace


def test_a_training_run_watched_every_k_steps_equals_the_unwatched_run() -> None:
    """Dropout between layers and around the core: the masks drawn, and so the run, are the same."""

    def run(watch_every: int) -> tuple[list[torch.Tensor], torch.Tensor]:
        torch.manual_seed(0)
        model = WordModel(nn.LSTM(3, 4, num_layers=2, dropout=0.3, dtype=F64), dropout=0.2).double()
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        for step in range(6):
            tokens, targets = data(seed=step)
            opt.zero_grad()
            if watch_every and step % watch_every == 0:
                with bptt.watch(model) as w:
                    lm_loss(model, tokens, targets).backward()
                assert w.traces["rnn"].dh.shape == (2, 7, 3, 4)
            else:
                lm_loss(model, tokens, targets).backward()
            opt.step()
        return [p.detach().clone() for p in model.parameters()], torch.get_rng_state()

    plain, rng = run(0)
    watched, watched_rng = run(2)
    assert torch.equal(rng, watched_rng)  # the same draws from the global generator
    for a, b in zip(plain, watched, strict=True):
        assert rel_err(b, a) < 1e-10


def test_watch_changes_no_mode_and_restores_the_modules() -> None:
    model = WordModel(nn.LSTM(3, 4, dropout=0.0))
    model.eval()
    forward = model.rnn.forward
    with bptt.watch(model) as w:
        assert "forward" in model.rnn.__dict__
        lm_loss(model, *data()).backward()
    assert not model.training and not w.traces["rnn"].model.training
    assert "forward" not in model.rnn.__dict__ and model.rnn.forward == forward


def test_an_evaluation_pass_inside_the_block_is_not_traced() -> None:
    model = WordModel(nn.GRU(3, 4))
    tokens, targets = data()
    with bptt.watch(model) as w:
        with torch.no_grad():
            expected = model(tokens)
        lm_loss(model, tokens, targets).backward()
    assert list(w.traces) == ["rnn"]
    model.zero_grad()
    assert torch.allclose(model(tokens), expected)


def test_from_torch_and_trace_leave_the_global_generator_alone() -> None:
    lstm = nn.LSTM(3, 4, num_layers=2, dropout=0.5)  # eval below, so no dropout draws either
    lstm.eval()
    before = torch.get_rng_state()
    twin = bptt.from_torch(lstm)
    bptt.trace(lstm, torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(1)), lambda o, s: o.sum())
    assert torch.equal(torch.get_rng_state(), before)
    assert all(torch.equal(twin.get_parameter(n), p) for n, p in lstm.named_parameters())


def test_watch_errors_say_what_was_expected() -> None:
    with pytest.raises(InputError, match="found no recurrent module in Linear"):
        bptt.watch(nn.Linear(2, 2))
    model = WordModel(nn.LSTM(3, 4))
    with bptt.watch(model) as w:
        lm_loss(model, *data())
    with pytest.raises(InputError, match=r"call loss.backward\(\) before reading the traces"):
        _ = w.traces
    with bptt.watch(model) as w:
        pass
    with pytest.raises(InputError, match="no watched module ran"):
        _ = w.traces
