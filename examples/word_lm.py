"""A small word-level language model with `torch.nn.LSTM`, watched by bptt every N steps.

The model is the classic one (pytorch/examples' word_language_model): embedding → 2-layer LSTM
with dropout → linear decoder, trained on consecutive windows of one long token stream with the
hidden state carried over (detached) from window to window. Nothing in it knows about bptt; the
training loop only wraps its step in `monitor.step()`, which is a `bptt.watch` of the model on every
N-th step and records the diagnostics of that very step.

The text is made here, so the example needs no download: sentences of a small grammar whose
verbs agree in number with a subject several words back ("the dog that the cats chase runs ."),
so the model has something long-range to learn and the lag horizon has something to show.

    python examples/word_lm.py --out runs/word-lm      # a few minutes on two cores
    python examples/word_lm.py --dry-run               # tiny sizes, a few seconds (the test runs this)
    bptt report runs/word-lm                           # (written at the end anyway)
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

import bptt
from bptt import _io
from bptt.diagnostics import monitor as monitor_records
from bptt.reports import write_report

NOUNS = [("dog", "dogs"), ("cat", "cats"), ("bird", "birds"), ("child", "children"), ("farmer", "farmers")]
VERBS = [("runs", "run"), ("sleeps", "sleep"), ("sings", "sing"), ("waits", "wait")]
OBJECT_VERBS = ["chase", "see", "follow", "like"]
ADJECTIVES = ["old", "small", "quiet", "happy", "tired"]


def sentence(g: torch.Generator) -> list[str]:
    """One sentence: the subject's number decides the main verb, after an optional relative clause."""

    def pick(options: Sequence[str]) -> str:
        return options[int(torch.randint(len(options), (), generator=g))]

    plural = bool(torch.randint(2, (), generator=g))
    noun = NOUNS[int(torch.randint(len(NOUNS), (), generator=g))][int(plural)]
    words = ["the", *([pick(ADJECTIVES)] if torch.rand((), generator=g) < 0.5 else []), noun]
    if torch.rand((), generator=g) < 0.7:  # a relative clause between subject and verb
        inner_plural = bool(torch.randint(2, (), generator=g))
        inner = NOUNS[int(torch.randint(len(NOUNS), (), generator=g))][int(inner_plural)]
        verb = pick(OBJECT_VERBS) + ("" if inner_plural else "s")
        words += [
            "that",
            "the",
            *([pick(ADJECTIVES)] if torch.rand((), generator=g) < 0.5 else []),
            inner,
            verb,
        ]
    words += [VERBS[int(torch.randint(len(VERBS), (), generator=g))][int(plural)], "."]
    return words


def corpus(words: int, seed: int) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    out: list[str] = []
    while len(out) < words:
        out += sentence(g)
    return out[:words]


def batchify(ids: Tensor, batch_size: int) -> Tensor:
    """One stream of token ids → (N, B) columns, each a contiguous piece of the stream."""
    n = ids.numel() // batch_size
    return ids[: n * batch_size].view(batch_size, n).t().contiguous()


class WordLM(nn.Module):
    """embedding → LSTM → linear decoder (time-major: tokens (T, B) → logits (T, B, vocab))."""

    def __init__(self, vocab: int, emsize: int, nhid: int, nlayers: int, dropout: float) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.embed = nn.Embedding(vocab, emsize)
        self.rnn = nn.LSTM(emsize, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, vocab)

    def forward(
        self, tokens: Tensor, hidden: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        out, hidden = self.rnn(self.drop(self.embed(tokens)), hidden)
        return self.decoder(self.drop(out)), hidden


def evaluate(model: WordLM, data: Tensor, bptt_len: int) -> float:
    """Perplexity over a held-out stream."""
    model.eval()
    total, count, hidden = 0.0, 0, None
    with torch.no_grad():
        for i in range(0, data.shape[0] - 1, bptt_len):
            x, y = data[i : i + bptt_len], data[i + 1 : i + 1 + bptt_len]
            x = x[: y.shape[0]]
            logits, hidden = model(x, hidden)
            total += float(nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum"))
            count += y.numel()
    model.train()
    return math.exp(total / count)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--words", type=int, default=60_000, help="length of the training text in words")
    p.add_argument("--emsize", type=int, default=64, help="size of the word embeddings")
    p.add_argument("--nhid", type=int, default=128, help="hidden units per LSTM layer")
    p.add_argument("--nlayers", type=int, default=2, help="number of LSTM layers")
    p.add_argument(
        "--dropout",
        type=float,
        default=0.2,
        help="dropout on the embeddings, between layers and on the output",
    )
    p.add_argument("--lr", type=float, default=2e-3, help="Adam's learning rate")
    p.add_argument("--clip", type=float, default=0.5, help="gradient norm clipping threshold")
    p.add_argument("--batch-size", type=int, default=20, help="sequences per batch")
    p.add_argument(
        "--bptt", type=int, default=35, help="steps per window of truncated backpropagation through time"
    )
    p.add_argument("--epochs", type=int, default=2, help="passes over the training text")
    p.add_argument("--every", type=int, default=50, help="watch every N-th training step")
    p.add_argument("--seed", type=int, default=0, help="seed of the text, the weights and dropout")
    p.add_argument(
        "--out", default="runs/word-lm", help="where diagnostics.jsonl, summary and report.html go"
    )
    p.add_argument("--dry-run", action="store_true", help="tiny sizes and a few steps, to check that it runs")
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    args = parser().parse_args(argv)
    if args.dry_run:
        args.words, args.emsize, args.nhid, args.batch_size, args.bptt = 1200, 8, 16, 4, 12
        args.epochs, args.every = 1, 5
    torch.manual_seed(args.seed)
    text = corpus(args.words, args.seed)
    held_out = corpus(max(args.words // 10, 4 * args.bptt), args.seed + 1)
    vocab = sorted(set(text) | set(held_out))
    index = {w: i for i, w in enumerate(vocab)}
    train_data = batchify(torch.tensor([index[w] for w in text]), args.batch_size)
    valid_data = batchify(torch.tensor([index[w] for w in held_out]), args.batch_size)

    model = WordLM(len(vocab), args.emsize, args.nhid, args.nlayers, args.dropout)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _io.write_json(out / "config.json", {"train": vars(args), "vocab": len(vocab)})
    monitor = bptt.Monitor(model, every=args.every, run_dir=out, tensorboard=False)
    for epoch in range(args.epochs):
        hidden = None
        for i in range(0, train_data.shape[0] - 1 - args.bptt, args.bptt):
            x, y = train_data[i : i + args.bptt], train_data[i + 1 : i + 1 + args.bptt]
            if hidden is not None:
                hidden = (hidden[0].detach(), hidden[1].detach())  # truncate the gradient at the window
            opt.zero_grad()
            with monitor.step() as s:  # a bptt.watch of this step, every N-th step
                logits, hidden = model(x, hidden)
                loss = nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
                loss.backward()
                s.loss = loss
            nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            opt.step()
        print(f"epoch {epoch + 1}: validation perplexity {evaluate(model, valid_data, args.bptt):.2f}")
    monitor.close()
    records = monitor_records.load(out)
    summary = {
        "cell": "lstm",
        "steps": monitor.calls,
        "valid_perplexity": evaluate(model, valid_data, args.bptt),
        "vocab": len(vocab),
        "horizon": records[-1]["horizon"] if records else None,
        "horizon_end": records[-1]["horizon_end"] if records else None,
    }
    _io.write_json(out / "summary.json", summary)
    report = write_report([out], out / "report.html", title="bptt: a word-level LSTM language model, watched")
    print(
        f"horizon {summary['horizon']} steps (distance to the end: {summary['horizon_end']}); report: {report}"
    )
    return summary


if __name__ == "__main__":
    main()
