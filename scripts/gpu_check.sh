#!/usr/bin/env bash
# The GPU check: the CUDA tests and `bptt bench --device cuda`, run from a copy of the repository on a
# machine with an NVIDIA GPU, Python, a CUDA build of torch and triton installed (no network, nothing
# to install, the native C++ sweeps not needed). Everything goes to $OUT/gpu.log; the results to
# $OUT/bench_cuda*.json and $OUT/gpu_tune.json. OUT defaults to runs/gpu. Each part has its own time
# limit, the whole under eight minutes (BUDGET); what decides the next defaults (the tests, the
# settings' table, the host profile) runs first, the LSTM variants' bench last. ONLY picks parts by
# name: ONLY='smoke|cuda tests|host profile' runs those three.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs/gpu}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
exec > >(tee "$OUT/gpu.log") 2>&1

BUDGET=${BUDGET:-480}  # seconds for the whole script; a part gets at most what is left
ONLY=${ONLY:-}  # an extended regular expression: only the parts whose names it matches (all by default)
status=0
part() {
    local name=$1 limit=$2
    shift 2
    if [ -n "$ONLY" ] && ! grep -Eq "^($ONLY)\$" <<<"$name"; then
        echo "== $name: not asked for"
        return
    fi
    if [ $((BUDGET - SECONDS)) -lt "$limit" ]; then limit=$((BUDGET - SECONDS)); fi
    if [ "$limit" -le 5 ]; then
        echo "== $name: skipped, the time budget of $BUDGET s is spent"
        status=1
        return
    fi
    echo "== $name (limit ${limit} s)"
    local start=$SECONDS
    timeout --kill-after=10 "$limit" "$@"
    local rc=$?
    echo "== $name: exit $rc after $((SECONDS - start)) s"
    [ "$rc" -eq 0 ] || status=1
}
BPTT=("$PY" -c 'import sys; from bptt.cli import main; sys.exit(main(sys.argv[1:]))')

part "devices" 20 nvidia-smi -L
part "versions" 60 "$PY" -c "
import torch, triton
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)
print(torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0))"

# Two LSTMs through the Triton sweeps against the PyTorch loop, a first signal even if pytest cannot
# run: H = 16 runs the persistent sweeps, H = 128 the split ones (cooperative launches).
part "smoke" 90 "$PY" -c "
import time, torch, bptt
from bptt.engine import dispatch, gpu, native
for H, B in ((16, 4), (128, 32)):
    torch.manual_seed(0)
    m = bptt.LSTM(3, H, num_layers=2).cuda()
    x = torch.randn(20, B, 3, device='cuda')
    assert dispatch.select(m.step, x).name == 'triton', gpu.import_error()
    t0 = time.perf_counter()
    out, _ = m(x)
    g = torch.autograd.grad(out.square().sum(), list(m.parameters()))
    gpu.check_barriers(wait=True)
    print(f'H = {H}: first triton forward + backward (compiles): {time.perf_counter() - t0:.1f} s')
    with native.use_engine('python'):
        out_r, _ = m(x)
        g_r = torch.autograd.grad(out_r.square().sum(), list(m.parameters()))
    pairs = zip([out.detach(), *g], [out_r.detach(), *g_r])
    err = max(float((a - b).abs().max() / b.abs().max()) for a, b in pairs)
    print(f'H = {H}: triton against the PyTorch loop: max rel err {err:.2e}, cooperative launches: {gpu._cooperative}')
    assert err < 1e-5"

# Every cell and variant on CUDA against the float64 PyTorch loop on the CPU, and against cuDNN.
# Eight workers where pytest-xdist is installed (compiling the kernels is most of the time), without
# pytest-benchmark, which refuses to run beside xdist.
XDIST=()
"$PY" -c "import xdist" 2>/dev/null && XDIST=(-n 8 -p no:benchmark)
part "cuda tests" 150 "$PY" -m pytest tests/test_gpu.py -q -rfEs -W default -p no:cacheprovider "${XDIST[@]}"

# The default (its barrier: data up to 8 programs a block, else counter) against its alternatives
# (either barrier throughout, the backward's partial sums of ∂L/∂h_{t−1} exchanged instead of ∂L/∂gh_t,
# the products as independent partial sums, with the data barrier, and autotuning, which picks among
# them and the forward's IEEE products at each shape and says what it chose), LSTM against cuDNN at
# three shapes (scripts/gpu_tune.py; it checks each setting's numbers against float64), after the
# grid barriers alone, µs a step (before the give-up flag was read every 256 polls instead of every
# barrier, an H100 measured counter 0.95–1.14 µs and flags 0.89–1.33). The fixed cost of a call: the
# host profile below.
TUNE_SETTINGS=${TUNE_SETTINGS:-"auto (the default);auto, gates backward;auto, counter barrier;auto, data barrier;auto, partials backward, tf32x3, 8 warps;auto, 8 accumulators backward;auto, 2 accumulators, 8 warps backward;auto, data barrier, 8 accumulators;autotune"}
part "tune" 180 "$PY" scripts/gpu_tune.py --out "$OUT" --shape 32,200,2,128,1 --shape 64,100,64,256,1 \
    --shape 20,35,200,200,2 --settings "$TUNE_SETTINGS"
# Where one call's time goes: the host's (launches, operators, Python) and the GPU's own, by kernel,
# for 1 step (the fixed cost) and 200 (the sweeps).
part "host profile" 60 bash -c "'$PY' scripts/gpu_host.py --steps 1 --repeats 100 --top 25 &&
    '$PY' scripts/gpu_host.py --steps 200 --repeats 20 --top 25"
# This revision against another's src (AB_SRC, e.g. `git archive REV src | tar -x -C .ab/old` and
# AB_SRC=.ab/old/src, carried to the machine): the LSTM at the goal's shape, the two alternating three
# times in one call (the noise between calls is larger than a host trim). Only with AB_SRC.
if [ -n "${AB_SRC:-}" ]; then
    part "a/b" 200 bash -c "for i in 1 2 3; do for src in '$AB_SRC' '$PWD/src'; do
        echo \"-- \$src\"; PYTHONPATH=\$src '$PY' -c 'import sys; from bptt.cli import main; sys.exit(main(sys.argv[1:]))' \
            bench --device cuda --cells lstm --shapes 32x200x2x128 --repeats 60 --warmup 5 --no-watch \
            --no-contributions; done; done"
    # the host's chain alone (kernels stubbed, CUDA's operators), the two trees called in turn; then
    # a full trace with its contribution norms the same way
    part "host chain" 80 bash -c "'$PY' scripts/host_chain.py --device cuda --batch 32 --hidden 128 \
        --steps 200 --repeats 400 --against '$AB_SRC' && '$PY' scripts/host_chain.py --device cuda \
        --batch 32 --hidden 128 --steps 200 --repeats 200 --against '$AB_SRC' --trace"
fi
# The cells with a torch.nn twin at every default shape (the word-LM shape included), the trace, and
# the Monitor's record unless BENCH_FLAGS says --no-watch.
part "bench: lstm, gru, rnn" 90 "${BPTT[@]}" bench --device cuda --cells lstm,gru,rnn --repeats 10 --warmup 3 \
    ${BENCH_FLAGS:-} --json "$OUT/bench_cuda.json"
# The LSTM and its trace again, autotuned (BPTT_TRITON_AUTOTUNE=1: the first call of each shape times
# the candidates, in the bench's warm-up), at the goal's shape and the word LM's (all four ran past
# 60 s on an H100).
part "bench: lstm, autotuned" 60 env BPTT_TRITON_AUTOTUNE=1 "${BPTT[@]}" bench --device cuda --cells lstm \
    --shapes 32x200x2x128 20x35x200x200x2 --repeats 10 --warmup 3 --no-watch \
    --json "$OUT/bench_cuda_autotuned.json"
# The LSTM variants with persistent sweeps against torch.nn.LSTM, checked against their own float64
# PyTorch loop, at the goal's two shapes (FGR, on the per-step kernels, and four shapes ran past 90 s
# on an H100).
part "bench: variants" 90 "${BPTT[@]}" bench --device cuda --cells peephole,original,nig,nfg,nog,niaf,noaf,cifg \
    --shapes 32x200x2x128 64x100x64x256 --repeats 3 --warmup 1 --no-trace --no-contributions --no-watch \
    --json "$OUT/bench_cuda_variants.json"

echo "== done, status $status"
exit $status
