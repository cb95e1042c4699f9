#!/usr/bin/env bash
# Issue 14's GPU numbers in two device calls of under 8 minutes each (a session is lent 15 minutes, start included):
#   part 1: NCSN++ against sgmse's backbone, sampler overhead (the bundled model and the paper-size NCSN++), training
#           throughput of small, ncsnpp_m and ncsnpp, eager and with bf16 autocast;
#   part 2: the same training with torch.compile, and with compile and bf16 together for ncsnpp.
# Every step runs under its own time limit (train_throughput.py's per-backbone --timeout inside it), so whatever
# finishes comes back: $OUT/suite<part>.log and at most five JSON files a part (the device tool returns 8 files).
#
# Here first:   bash benchmarks/gpu/fetch_wheels.sh          (wheels the GPU image lacks, into .whl/)
# Then, with the device tool: run(command="PART=1 bash benchmarks/gpu/run.sh", carry=[".whl"], timeout_s=560),
# and at once (the machine stays warm for 30 s) the same with PART=2.
# A CPU rehearsal of the whole flow (tiny sizes, a few minutes; this checkout's .venv, no wheels):
#   DEVICE=cpu QUICK=1 SKIP_WHEELS=1 PYTHON=.venv/bin/python OUT=/tmp/gpu_suite bash benchmarks/gpu/run.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/gpu_suite}
mkdir -p "$OUT"
PART=${PART:-1}
LOG="$OUT/suite$PART.log"
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

step() {  # NAME LIMIT_S ARGS...: one benchmark under its own time limit; its output goes to the log
    local name=$1 limit=$2
    shift 2
    say "== $name ($(date -u +%T), limit ${limit} s): $*"
    timeout "$limit" "$PY" "$@" >> "$LOG" 2>&1
    say "== $name: exit $?"
}

if [ "$QUICK" = 1 ]; then
    R=1; STEPS=2; NETS="small"; BIGNETS="small"; SEC=1; BIG=small; SIZE="256 128"; T=120
else
    R=10; STEPS=20; NETS="small ncsnpp_m ncsnpp"; BIGNETS="ncsnpp"; SEC=4; BIG=ncsnpp; SIZE="256 256"; T=40
fi
THREADS=${THREADS:-8}
train() {  # MODE PER_NET_LIMIT_S NETS FLAGS...
    local mode=$1 limit=$2 nets=$3
    shift 3
    step "train_$mode" $(($(wc -w <<< "$nets") * limit + 15)) benchmarks/train_throughput.py --device "$DEV" \
        --nets $nets --steps "$STEPS" --warmup 3 --threads "$THREADS" --timeout "$limit" "$@" \
        --json "$OUT/train_throughput_${mode}_gpu.json"
}
if [ "$PART" = 1 ]; then
    step ncsnpp_vs_sgmse 60 benchmarks/ncsnpp_vs_sgmse.py --device "$DEV" --size $SIZE --repeats "$R" \
        --threads "$THREADS" --json "$OUT/ncsnpp_vs_sgmse_gpu.json"
    step sampler_overhead 60 benchmarks/sampler_overhead.py --device "$DEV" --seconds "$SEC" --repeats 5 \
        --threads "$THREADS" --json "$OUT/sampler_overhead_gpu.json"
    step sampler_overhead_big 75 benchmarks/sampler_overhead.py --device "$DEV" --net "$BIG" --seconds "$SEC" \
        --nfe 1 4 16 --repeats 3 --threads "$THREADS" --json "$OUT/sampler_overhead_${BIG}_gpu.json"
    train eager "$T" "$NETS"
    train amp "$T" "$NETS" --amp
else
    train compile $((T * 11 / 4)) "$NETS" --compile
    train amp_compile $((T * 3)) "$BIGNETS" --amp --compile
fi
say "== done $(date -u +%T)"
ls -la "$OUT" | tee -a "$LOG"
