"""Time the persistent Triton sweeps' settings against cuDNN on one GPU, in one process.

    python scripts/gpu_tune.py [--out DIR] [--repeats N] [--cells lstm,gru,rnn] [--shape B,T,I,H,L]…
        [--settings "name;name"] [--no-barrier]

For each setting of `bptt.engine.gpu` (the loop, the grid barrier, the products' precision, the
forward's and the backward's chunk and warps, the pipeline stages of the chunk loops) and each cell
(`--cells`, default LSTM) and shape, one forward + backward is timed with CUDA events, interleaved
with torch.nn's (cuDNN) on the same weights, and checked against the float64 PyTorch loop; the
ratio is bptt's time over cuDNN's in the same run. A second table times each of the split sweeps'
grid barriers alone: a kernel that does nothing but meet at it every step. Results go to
DIR/gpu_tune.json as well (default runs/gpu). Needs a CUDA GPU and Triton; `--dry-run` runs
the sweeps' table at a tiny shape in Triton's interpreter on the CPU instead, to check the script.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import triton
import triton.language as tl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import bptt
from bptt import bench
from bptt.engine import gpu, native
from bptt.engine.kernels import MAX_PARTS, Tiles, _sync

SHAPES = [(32, 200, 2, 128, 1), (16, 1000, 2, 64, 1), (20, 35, 200, 200, 2)]  # B, T, I, H, layers

# name → gpu module settings; the rest as the defaults (the data barrier forward, the counter barrier
# backward, IEEE backward products, the LSTM's and GRU's backward partial sums of ∂L/∂h_{t−1})
SETTINGS: dict[str, dict[str, object]] = {
    "auto (the default)": {"LOOP": "auto"},
    # the LSTM's and GRU's backward as the Elman's: each program reads all of ∂L/∂gh_t and W_hh's columns
    "auto, gates backward": {"LOOP": "auto", "BACKWARD_EXCHANGE": "gates"},
    "auto, flags barrier": {"LOOP": "auto", "BARRIER": "flags"},
    "auto, data barrier": {"LOOP": "auto", "BARRIER": "data"},
    "auto, counter barrier": {"LOOP": "auto", "BARRIER": "counter"},
    "auto, tf32x3 backward": {"LOOP": "auto", "BACKWARD_PRECISION": "tf32x3"},
    "auto, bwd chunk 64": {"LOOP": "auto", "BACKWARD_CHUNK": 64},
    "auto, bwd chunk 512": {"LOOP": "auto", "BACKWARD_CHUNK": 512},
    "auto, bwd 8 warps": {"LOOP": "auto", "BACKWARD_WARPS": 8},
    "auto, 8 warps": {"LOOP": "auto", "WARPS": 8, "BACKWARD_WARPS": 8},
    "auto, 4 stages": {"LOOP": "auto", "STAGES": 4},
    "persistent": {"LOOP": "persistent"},
    "persistent, tf32x3 backward": {"LOOP": "persistent", "BACKWARD_PRECISION": "tf32x3"},
    "split": {"LOOP": "split"},
    "split, 4 stages": {"LOOP": "split", "STAGES": 4},
    # the products as independent partial sums (kernels._dot): shorter dependent chains, more reshaping
    "auto, 4 accumulators": {"LOOP": "auto", "ACCUMULATORS": 4, "BACKWARD_ACCUMULATORS": 4},
    "auto, 8 accumulators": {"LOOP": "auto", "ACCUMULATORS": 8, "BACKWARD_ACCUMULATORS": 8},
    "auto, 8 accumulators backward": {"LOOP": "auto", "BACKWARD_ACCUMULATORS": 8},
    # 8 warps halve each thread's share of the resident W_hh: no spills at 8 accumulators (sm_90)
    "auto, 8 accumulators, 8 warps": {
        "LOOP": "auto",
        "ACCUMULATORS": 8,
        "BACKWARD_ACCUMULATORS": 8,
        "WARPS": 8,
        "BACKWARD_WARPS": 8,
    },
    # two partial sums a thread on 8 warps backward: in the sm_90 code half the dependent FMAs a step
    # and no more CTA barriers (4 warps, or more sums, add 34 at H = 128)
    "auto, 2 accumulators, 8 warps backward": {
        "LOOP": "auto",
        "BACKWARD_ACCUMULATORS": 2,
        "BACKWARD_WARPS": 8,
    },
    # no grid barrier (each program polls the values it reads) and shorter chains, together
    "auto, data barrier, 8 accumulators": {
        "LOOP": "auto",
        "BARRIER": "data",
        "ACCUMULATORS": 8,
        "BACKWARD_ACCUMULATORS": 8,
    },
    # the forward's products as IEEE float32 FMAs (as the backward's), on 8 warps, and as two partial sums
    "auto, ieee forward, 8 warps": {"LOOP": "auto", "PRECISION": "ieee", "WARPS": 8},
    "auto, ieee forward, 2 accumulators, 8 warps": {
        "LOOP": "auto",
        "PRECISION": "ieee",
        "ACCUMULATORS": 2,
        "WARPS": 8,
    },
    # the LSTM backward's programs exchange partial sums of ∂L/∂h_{t−1} from W_hh's rows kept on chip
    # (BPTT_TRITON_BACKWARD_EXCHANGE=partials), as IEEE FMAs and as three TF32 passes on 8 warps
    "auto, partials backward": {"LOOP": "auto", "BACKWARD_EXCHANGE": "partials"},
    "auto, partials backward, tf32x3, 8 warps": {
        "LOOP": "auto",
        "BACKWARD_EXCHANGE": "partials",
        "BACKWARD_PRECISION": "tf32x3",
        "BACKWARD_WARPS": 8,
    },
    # the backward's partial sums polled where they are read (no grid barrier), on 8 warps, and their
    # products as three TF32 passes on tensor cores
    "auto, data barrier, bwd 8 warps": {"LOOP": "auto", "BARRIER": "data", "BACKWARD_WARPS": 8},
    "auto, data barrier, tf32x3 backward, 8 warps": {
        "LOOP": "auto",
        "BARRIER": "data",
        "BACKWARD_PRECISION": "tf32x3",
        "BACKWARD_WARPS": 8,
    },
    # the fastest of gpu.FORWARD_CANDIDATES and gpu.BACKWARD_CANDIDATES at each shape, timed at its first call
    "autotune": {"AUTOTUNE": "1"},
    # what the forward's products cost: one TF32 pass (cuDNN's float32 accuracy, not bptt's)
    "auto, tf32": {"LOOP": "auto", "PRECISION": "tf32"},
}
# the settings as this process found them (the defaults, or the BPTT_TRITON_* environment)
DEFAULTS = {key: getattr(gpu, key) for key in (*gpu.SETTINGS, "AUTOTUNE")}


DEVICE = torch.device("cuda")


def median_ms(fn, repeats: int) -> float:
    """Median ms of fn() after a warm-up run: CUDA events on a GPU, the wall clock on the CPU."""
    return bench._median_ms(bench._interleaved([lambda: bench._spans(DEVICE, [fn])[0]], 1, repeats)[0])


def sweep_table(
    repeats: int, shapes: list[tuple[int, int, int, int, int]], only: str = "", cells: str = "lstm"
) -> list[dict[str, object]]:
    rows = []
    for cell, (B, T, I, H, L) in [(c, shape) for c in cells.split(",") for shape in shapes]:
        torch.manual_seed(0)
        twin = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell](I, H, num_layers=L).to(
            DEVICE
        )
        ours = bptt.from_torch(twin)
        x = torch.randn(T, B, I, device=DEVICE)
        grad = torch.randn(T, B, H, device=DEVICE)
        with native.use_engine("python"):
            truth_model = bptt.from_torch(twin).double()
            out = truth_model(x.double())[0]
            truth = [out.detach(), *torch.autograd.grad(out, list(truth_model.parameters()), grad.double())]
        cudnn = bench._fwd_bwd(twin, x, grad)
        for name, setting in SETTINGS.items():
            if only and not any(word.strip() == name for word in only.split(";")):
                continue
            for key, value in {**DEFAULTS, **setting}.items():
                setattr(gpu, key, value)
            gpu.clear_tuned()
            try:
                out = ours(x)[0]
                got = [out.detach(), *torch.autograd.grad(out, list(ours.parameters()), grad)]
                err = max(bench._rel(a.double(), b) for a, b in zip(got, truth, strict=True))
                # interleaved with cuDNN's, after 3 warm-ups; (forward s, backward s) each
                ms, ref = bench._interleaved([bench._fwd_bwd(ours, x, grad), cudnn], 3, repeats)
                row = {
                    "cell": cell,
                    "shape": [B, T, I, H, L],
                    "setting": name,
                    "ms": bench._median_ms([sum(t) for t in ms]),
                    "cudnn_ms": bench._median_ms([sum(t) for t in ref]),
                    "fwd_ms": bench._median_ms([t[0] for t in ms]),
                    "bwd_ms": bench._median_ms([t[1] for t in ms]),
                    "cudnn_fwd_ms": bench._median_ms([t[0] for t in ref]),
                    "cudnn_bwd_ms": bench._median_ms([t[1] for t in ref]),
                    "error": err,
                }
                row["ratio"] = row["ms"] / row["cudnn_ms"]
                if gpu.AUTOTUNE == "1":  # what it chose, forward and backward, and each candidate's ms
                    row["tuned"] = {entry.key.direction: entry.label for entry in gpu.tuned()}
                    row["candidates"] = {entry.key.direction: entry.times for entry in gpu.tuned()}
            except Exception as exc:  # a setting that fails to compile or run: say so, go on
                row = {
                    "cell": cell,
                    "shape": [B, T, I, H, L],
                    "setting": name,
                    "failed": f"{type(exc).__name__}: {exc}"[:300],
                }
            rows.append(row)
            print(json.dumps(row), flush=True)
    for key, value in DEFAULTS.items():
        setattr(gpu, key, value)
    return rows


@triton.jit
def only_barrier(sync, T, TILES: tl.constexpr):
    """Meet at the split sweeps' grid barrier T times, nothing else."""
    s = T * 0
    while s < T:
        _sync(sync, s + 1, TILES)
        s += 1


def barrier_table(repeats: int) -> list[dict[str, object]]:
    """µs per step of a split kernel that only meets at the grid barrier, by barrier and programs."""
    rows = []
    for barrier in ("flags", "counter"):  # data: no barrier, polls where it reads; auto: one of these
        tiles = Tiles(
            BLOCK_B=16,
            BLOCK_H=16,
            BLOCK_K=32,
            PRECISION="tf32x3",
            SPLIT=True,
            CACHE=".cg",
            UNITS=16,
            BARRIER=barrier,
        )
        for blocks, parts in [(1, 2), (1, 4), (1, 8), (2, 8), (2, 13), (4, 16), (8, 16)]:
            for T in (1, 1001):
                sync = torch.zeros(blocks * MAX_PARTS.value + 1, dtype=torch.int32, device="cuda")

                def run(sync=sync, T=T, blocks=blocks, parts=parts, tiles=tiles):
                    sync.zero_()
                    only_barrier[(blocks, parts)](
                        sync, T, TILES=tiles, num_warps=4, launch_cooperative_grid=True
                    )

                ms = median_ms(run, repeats)
                if T == 1:
                    base = ms
            stuck = int(sync[-1])
            row = {
                "barrier": barrier,
                "blocks": blocks,
                "programs_per_block": parts,
                "us_per_step": 1e3 * (ms - base) / 1000,
                "gave_up": bool(stuck),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "runs/gpu"))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--dry-run", action="store_true", help="a tiny shape in the interpreter, on the CPU")
    parser.add_argument(
        "--shape", action="append", default=[], help="B,T,I,H,layers (repeatable; default: three shapes)"
    )
    parser.add_argument("--settings", default="", help="only these settings, by name, separated by ';'")
    parser.add_argument("--cells", default="lstm", help="lstm, gru, rnn: comma-separated (default: lstm)")
    parser.add_argument("--no-barrier", action="store_true", help="skip the grid barrier's table")
    args = parser.parse_args()
    global DEVICE
    if args.dry_run:
        DEVICE = torch.device("cpu")
        if not gpu.interpreting() or native.engine() != "triton":
            print("--dry-run needs TRITON_INTERPRET=1 BPTT_ENGINE=triton", file=sys.stderr)
            return 2
    elif not torch.cuda.is_available() or gpu.kernels() is None:
        print(f"needs a CUDA GPU and Triton ({gpu.import_error()})", file=sys.stderr)
        return 2
    start = time.perf_counter()
    result: dict[str, object] = {"device": "cpu" if args.dry_run else torch.cuda.get_device_name(0)}
    result["torch"] = torch.__version__
    shapes = [tuple(int(v) for v in shape.split(",")) for shape in args.shape] or SHAPES
    result["barrier"] = [] if args.dry_run or args.no_barrier else barrier_table(args.repeats)
    result["sweeps"] = sweep_table(
        args.repeats, [(2, 3, 2, 5, 2)] if args.dry_run else shapes, args.settings, args.cells
    )
    Path(args.out).mkdir(parents=True, exist_ok=True)
    Path(args.out, "gpu_tune.json").write_text(json.dumps(result, indent=1))
    print(f"{time.perf_counter() - start:.0f} s; wrote {Path(args.out, 'gpu_tune.json')}")
    for row in result["sweeps"]:
        shape = f"{row['cell']} " + "x".join(map(str, row["shape"]))
        if "failed" in row:
            print(f"{shape:<21} {row['setting']:<40} FAILED {row['failed']}")
        else:
            print(
                f"{shape:<21} {row['setting']:<40} {row['ms']:7.2f} ms ({row['fwd_ms']:.2f} + {row['bwd_ms']:.2f})"
                f"  cuDNN {row['cudnn_ms']:6.2f} ms ({row['cudnn_fwd_ms']:.2f} + {row['cudnn_bwd_ms']:.2f})"
                f"  {row['ratio']:5.2f}×  err {row['error']:.1e}"
            )
            if "tuned" in row:
                print(f"{'':<21} {'':<40} chose: {row['tuned']}")
                for direction, times in row["candidates"].items():
                    ranked = sorted(times.items(), key=lambda kv: kv[1] if isinstance(kv[1], float) else 1e30)
                    for name, ms in ranked:
                        shown = f"{ms:7.3f} ms" if isinstance(ms, float) else f"failed: {ms}"[:80]
                        print(f"{'':<21} {'':<40}   {direction:<8} {shown}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
