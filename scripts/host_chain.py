"""The host's chain of one bptt.LSTM forward + backward with its sweeps' kernels stubbed out: this tree
against another revision's, interleaved in one process.

    python scripts/host_chain.py [--against SRC] [--device cpu|cuda] [--batch B] [--hidden H]
        [--steps T] [--repeats N] [--trace]

`bptt bench` at a few steps measures the host's chain from the forward's call to the backward sweep's
launch almost one for one, and a trim of it is smaller than the noise between two runs of the bench.
This times only that chain, with each persistent sweep's launch (engine/gpu.py `_persistent`)
replaced by nothing, for this tree's `src` and, with `--against`, another revision's `src` (e.g.
`git archive REV src | tar -x -C /tmp/old`, then `--against /tmp/old/src`), loaded side by side
under another package name and called in turn, so that the machine's drift falls on both alike.
Medians of µs, and this tree's over the other's:

    forward → its launch, launch → forward's return, backward's call → its launch, chain (the sum)

With `--trace`, the same for a full `bptt.trace` with its contribution norms (the bench's trace row):

    call → the forward's launch, → the backward's launch, → the trace's return, its norms, whole

On the CPU (the default) it runs the CUDA sweeps' host path in Triton's interpreter
(TRITON_INTERPRET=1 BPTT_ENGINE=triton, set here) at a size where the operators cost little; on
a GPU (`--device cuda`) the operators are CUDA's, as in the bench, without the kernels' time.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent
SRC = SCRIPTS.parent / "src"
OTHER = "bptt_against"  # the package name the other revision is loaded under


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, help="another revision's src folder (holding bptt/)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=8)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=4000)
    parser.add_argument("--trace", action="store_true", help="a full trace with its contribution norms")
    args = parser.parse_args()
    if args.against is not None and not (args.against / "bptt" / "__init__.py").is_file():
        print(f"--against: expected a src folder holding bptt/, got {args.against}", file=sys.stderr)
        return 2
    if args.repeats < 10:
        print(f"--repeats: expected at least 10, got {args.repeats}", file=sys.stderr)
        return 2
    if args.device == "cpu":
        os.environ["TRITON_INTERPRET"], os.environ["BPTT_ENGINE"] = "1", "triton"
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda needs a CUDA GPU", file=sys.stderr)
        return 2
    sys.path.insert(0, str(SRC))
    sys.path.insert(0, str(SCRIPTS))
    import gpu_host  # its kernel stub (after the environment above: it imports bptt)

    marks: list[float] = []
    trees = {"this tree": "bptt"}
    with tempfile.TemporaryDirectory() as tmp:
        if args.against is not None:  # the other revision's bptt/ as `OTHER` (its imports are relative)
            shutil.copytree(args.against / "bptt", Path(tmp) / OTHER)
            sys.path.insert(0, tmp)
            trees[str(args.against)] = OTHER
        models, traces = {}, {}
        for name, package in trees.items():
            torch.manual_seed(0)
            reference = torch.nn.LSTM(2, args.hidden).to(args.device)
            gpu_host.stub_kernels(package, marks)
            models[name] = importlib.import_module(package).from_torch(reference)
            traces[name] = importlib.import_module(package).trace
        x = torch.randn(args.steps, args.batch, 2, device=args.device)
        grad = torch.randn(args.steps, args.batch, args.hidden, device=args.device)
        rows: dict[str, list[tuple[float, ...]]] = {name: [] for name in trees}
        for _ in range(args.repeats):
            for name, model in models.items():
                if args.device == "cuda":
                    torch.cuda.synchronize()
                marks.clear()
                if args.trace:
                    rows[name].append(_traced(traces[name], model, x, grad, marks))
                    continue
                start = time.perf_counter()
                out = model(x)[0]
                returned = time.perf_counter()
                torch.autograd.backward(out, grad)
                forward, backward = marks
                rows[name].append(
                    (forward - start, returned - forward, backward - returned, backward - start)
                )
    medians = {
        name: [1e6 * statistics.median(column) for column in zip(*row[args.repeats // 10 :], strict=True)]
        for name, row in rows.items()
    }
    print(
        f"bptt.{'trace of bptt.' if args.trace else ''}LSTM (B, T, H) = ({args.batch}, {args.steps}, "
        f"{args.hidden}) on {args.device}, kernels stubbed:"
    )
    if args.trace:
        heads = ("→ fwd launch", "→ bwd launch", "→ return", "norms", "whole")
    else:
        heads = ("fwd → launch", "launch → return", "bwd → launch", "chain")
    print(f"  {'':<28} " + " ".join(f"{h:>15}" for h in heads) + "  µs")
    for name, m in medians.items():
        print(f"  {name[-28:]:<28} " + " ".join(f"{v:15.1f}" for v in m))
    if args.against is not None:
        mine, other = medians["this tree"], medians[str(args.against)]
        ratios = "  ".join(f"{a / b:.2f}" for a, b in zip(mine, other, strict=True))
        print(f"  this tree over the other: {ratios}")
    return 0


def _traced(trace: Any, model: Any, x: Any, grad: Any, marks: list[float]) -> tuple[float, ...]:
    """One full trace (the bench's: a loss on every output, all contribution norms): the times from
    its call to the forward's launch, to the backward's, to the trace's return, of the norms, whole."""
    start = time.perf_counter()
    traced = trace(model, x, lambda out, state: (out * grad).sum())
    returned = time.perf_counter()
    traced.contribution_norms()
    end = time.perf_counter()
    forward, backward = marks
    return (forward - start, backward - forward, returned - backward, end - returned, end - start)


if __name__ == "__main__":
    sys.exit(main())
