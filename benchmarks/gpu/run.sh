#!/usr/bin/env bash
# Issue 14's GPU numbers in ONE device call (a session is lent 15 minutes in all, the machine's start included, so
# the suite keeps to BUDGET seconds, 500 by default). The steps run in order of what the issue needs most, each
# under its own time limit and never past the budget (a step that would start with under 20 s left is skipped
# and logged), so whatever finishes comes back: $OUT/suite.log and at most seven JSON files:
#   1. NCSN++ against sgmse's backbone (forward, forward + backward; ratio ours / theirs);
#   2. sampler overhead for the bundled model and for the paper-size NCSN++;
#   3. training throughput of small and ncsnpp_m: eager, bf16 autocast, torch.compile, compile + bf16.
#
# Here first:   bash benchmarks/gpu/fetch_wheels.sh          (wheels the GPU image lacks, into .whl/)
# Then, with the device tool: run(command="bash benchmarks/gpu/run.sh", carry=[".whl"], timeout_s=560).
# A CPU rehearsal of the whole flow (tiny sizes, a few minutes; this checkout's .venv, no wheels):
#   DEVICE=cpu QUICK=1 SKIP_WHEELS=1 PYTHON=.venv/bin/python OUT=/tmp/gpu_suite bash benchmarks/gpu/run.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/gpu_suite}
mkdir -p "$OUT"
BUDGET=${BUDGET:-500}
DEADLINE=$((SECONDS + BUDGET))
LOG="$OUT/suite.log"
: > "$LOG"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
DEV=${DEVICE:-cuda}
QUICK=${QUICK:-0}
say() { echo "$*" | tee -a "$LOG"; }

if [ "${SKIP_WHEELS:-0}" != 1 ] && [ -d .whl ] && ls .whl/*.whl > /dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        >> "$LOG" 2>&1 || { say "installing the carried wheels failed"; exit 1; }
    export PYTHONPATH=/tmp/site
    wheel=$(ls .whl/sgmse-0.1.2-*.whl 2>/dev/null | head -1)
    if [ -n "$wheel" ]; then  # where tests/sgmse_reference.py keeps the extracted wheel
        mkdir -p data_cache/.cache/sgmse
        [ -d data_cache/.cache/sgmse/sgmse-0.1.2 ] || "$PY" -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" \
            "$wheel" data_cache/.cache/sgmse/sgmse-0.1.2
    fi
fi
# edm_se is not installed there: the package maps conf/ to edm_se.conf, so give the source tree the same shape
[ -e edm_se/conf ] || ln -s ../conf edm_se/conf
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

say "== $(date -u +%FT%TZ) device=$DEV quick=$QUICK python=$("$PY" -c 'import sys; print(sys.version.split()[0])')"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" 2>&1 | tee -a "$LOG"
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a "$LOG"

step() {  # NAME LIMIT_S ARGS...: one benchmark under its own limit, cut to what is left of the budget
    local name=$1 limit=$2 left=$((DEADLINE - SECONDS))
    shift 2
    if [ "$left" -lt 20 ]; then say "== $name: skipped, ${left} s of the ${BUDGET} s budget left"; return; fi
    [ "$limit" -gt "$left" ] && limit=$left
    say "== $name ($(date -u +%T), limit ${limit} s): $*"
    timeout "$limit" "$PY" "$@" >> "$LOG" 2>&1
    say "== $name: exit $?"
}

if [ "$QUICK" = 1 ]; then
    R=1; STEPS=2; NETS="small"; SEC=1; BIG=small; SIZE="256 128"; T=60
else
    R=10; STEPS=20; NETS="small ncsnpp_m"; SEC=4; BIG=ncsnpp; SIZE="256 256"; T=40
fi
THREADS=${THREADS:-$([ "$QUICK" = 1 ] && echo 2 || echo 8)}
train() {  # MODE PER_NET_LIMIT_S FLAGS...: training throughput of $NETS, each backbone under its own limit
    local mode=$1 limit=$2
    shift 2
    step "train_$mode" $(($(wc -w <<< "$NETS") * limit + 15)) benchmarks/train_throughput.py --device "$DEV" \
        --nets $NETS --steps "$STEPS" --warmup 3 --threads "$THREADS" --timeout "$limit" "$@" \
        --json "$OUT/train_throughput_${mode}_gpu.json"
}
step ncsnpp_vs_sgmse 60 benchmarks/ncsnpp_vs_sgmse.py --device "$DEV" --size $SIZE --repeats "$R" \
    --threads "$THREADS" --json "$OUT/ncsnpp_vs_sgmse_gpu.json"
step sampler_overhead 60 benchmarks/sampler_overhead.py --device "$DEV" --seconds "$SEC" --repeats 5 \
    --threads "$THREADS" --json "$OUT/sampler_overhead_gpu.json"
step sampler_overhead_big 60 benchmarks/sampler_overhead.py --device "$DEV" --net "$BIG" --seconds "$SEC" \
    --nfe 1 4 16 --repeats 3 --threads "$THREADS" --json "$OUT/sampler_overhead_${BIG}_gpu.json"
train eager "$T"
train amp "$T" --amp
train compile $((T * 2)) --compile
train amp_compile $((T * 2)) --amp --compile
say "== done $(date -u +%T)"
ls -la "$OUT" | tee -a "$LOG"
