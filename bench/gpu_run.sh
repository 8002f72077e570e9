#!/usr/bin/env bash
# The whole GPU check in one command (issue 14), run from the project root on the lent machine:
#
#   source .gpukit/bootstrap.sh && bash bench/gpu_run.sh
#
# Kit: bench/make_gpu_kit.sh (here, once) builds .gpukit/ with pytest added to the shared kit.
# Steps, each under its own time limit, none stopping the others (a failure is recorded and the
# next step runs):
#   0. machine: GPU, CPU model, torch/transformers versions
#   1. tests: the CUDA tests (tests/test_gpu.py; they skip without CUDA) and the CPU scoring tests
#   2. scoring: ours vs the HF pipeline batched (fp32, fp16) on 20,000 Yelp reviews, same device
#   3. training: `tastebud train` (defaults, then batch 128) vs a plain HF Trainer, same data, device
#   4. `tastebud score` end to end on 300,000 stored reviews with the model trained in step 3
#  4b. Ray: `train --ray --gpus-per-worker 1` and `score --ray` on a GPU actor (skips without CUDA or Ray)
#   5. bench/quality_gpu.sh, if it exists, with the time left: QUALITY_DEADLINE_S (seconds it may
#      use), QUALITY_OUT (its folder, $OUT/quality: at most 4 files there, since the runner brings
#      back at most 8 files from $OUT and this script writes 3)
# Results: $OUT/gpu_summary.md (a section per step), $OUT/gpu_results.json, $OUT/gpu_logs.txt.
#
# GPU_RUN_SMOKE=1 runs every step on the CPU with tiny sizes (a check that the script works);
# GPU_RUN_BUDGET_S (default 400) is the total for all steps; PY the interpreter (default python3).
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_out}
export OUT
mkdir -p "$OUT"
PY=${PY:-python3}
SMOKE=${GPU_RUN_SMOKE:-0}
BUDGET=${GPU_RUN_BUDGET_S:-400}
SLOW=1  # step time limits are multiplied by this (a smoke run on a shared CPU is slow)
START=$(date +%s)
WORK=${GPU_RUN_WORK:-/tmp/gpu_run_work}
rm -rf "$WORK"; mkdir -p "$WORK"
LOG="$OUT/gpu_logs.txt"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=true

DATA=.gpukit/data/yelp_dev.csv
[ -f "$DATA" ] || DATA=../shared/data/yelp_reviews_10k/yelp_dev.csv
export TASTEBUD_BENCH_DATA="$PWD/$DATA"
[ -f "$DATA" ] || DATA=$TASTEBUD_BENCH_DATA

if [ "$SMOKE" = 1 ]; then
  DEVICE=cpu; N_SCORE=48; E2E=200; TRAIN_ARGS="--epochs 1 --max-train-examples 48 --extra-batch-sizes 16"
  SCORE_METHODS=ours,ours-fp32,pipeline-batched; SLOW=8; BUDGET=${GPU_RUN_BUDGET_S:-3000}
else
  DEVICE=$($PY -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')" 2>/dev/null || echo cpu)
  N_SCORE=20000; E2E=300000; TRAIN_ARGS="--extra-batch-sizes 128"
  SCORE_METHODS=ours,pipeline-batched,pipeline-batched-fp16
  [ "$DEVICE" = cpu ] && { N_SCORE=2000; SCORE_METHODS=ours,ours-fp32,pipeline-batched; }
fi

left() { echo $(( BUDGET - ($(date +%s) - START) )); }

# step NAME LIMIT_S RESULT_JSON CMD...: run under a time limit, log, record status and result.
step() {
  local name=$1 limit=$2 result=$3; shift 3
  local remaining; remaining=$(left)
  limit=$(( limit * SLOW ))
  [ "$limit" -gt "$remaining" ] && limit=$remaining
  if [ "$limit" -lt 5 ]; then
    $PY bench/gpu_report.py add "$name" "skipped (no time left)" 0
    return
  fi
  echo "=== $name (limit ${limit}s): $*" | tee -a "$LOG"
  local t0; t0=$(date +%s)
  timeout --kill-after=5 "$limit" "$@" >>"$LOG" 2>&1
  local rc=$?
  local status="ok"
  [ $rc -eq 124 ] && status="timed out after ${limit}s"
  [ $rc -ne 0 ] && [ $rc -ne 124 ] && status="failed (exit $rc)"
  echo "=== $name: $status" | tee -a "$LOG"
  $PY bench/gpu_report.py add "$name" "$status" $(( $(date +%s) - t0 )) "$result"
}

{
  echo "# GPU run $(date -u +%FT%TZ)"; echo
  echo "device kind: $DEVICE; smoke: $SMOKE; budget ${BUDGET}s; data $DATA"; echo
} >"$OUT/gpu_summary.md"

machine() {
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  lscpu | grep -E "Model name|^CPU\(s\)|Flags" | cut -c1-200
  $PY -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())"
  $PY -c "from pipeline.device import resolve_device, device_defaults; d = resolve_device(); print(d); print(device_defaults(d))"
}
machine >"$WORK/machine.txt" 2>&1
cat "$WORK/machine.txt" >>"$LOG"
$PY bench/gpu_report.py add "machine" ok 0 "$WORK/machine.txt"

# 1. tests: CUDA tests (skip cleanly without CUDA) and the CPU tests of batching and overlapped scoring
if ! $PY -c "import pytest" 2>/dev/null; then
  $PY bench/gpu_report.py add "tests" "skipped: no pytest here (build the kit with bench/make_gpu_kit.sh)" 0
else
step "tests" 45 "$WORK/tests.txt" bash -c \
  "$PY -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_scoring.py -m 'not slow' >'$WORK/tests.txt' 2>&1; rc=\$?; cat '$WORK/tests.txt'; exit \$rc"
fi

# 2. scoring: ours vs the HF pipeline, same reviews, same device
step "scoring ($DEVICE)" 90 "$WORK/scoring.json" \
  $PY bench/scoring_bench.py --device "$DEVICE" --n "$N_SCORE" --methods "$SCORE_METHODS" --json-out "$WORK/scoring.json"

# 3. training: tastebud train vs a plain Trainer
step "training ($DEVICE)" 120 "$WORK/train.json" \
  $PY bench/train_bench.py --device "$DEVICE" --data "$DATA" $TRAIN_ARGS --work-dir "$WORK/train" --json-out "$WORK/train.json"

# 4. tastebud score end to end, with the model trained in step 3 (the packaged encoder + fresh head otherwise)
MODEL_DIR=$($PY -c "
import json, sys
try:
    runs = json.load(open('$WORK/train.json'))['runs']
    print(next(r['model_dir'] for r in runs if r.get('model_dir')))
except Exception:
    pass" 2>/dev/null)
step "tastebud score end to end ($DEVICE)" 75 "$WORK/e2e.json" \
  $PY bench/scoring_bench.py --e2e "$E2E" ${MODEL_DIR:+--model-dir "$MODEL_DIR"} --work-dir "$WORK/e2e" --json-out "$WORK/e2e.json"

# 4b. Ray on GPU workers (issue 21): `train --ray --workers 1 --gpus-per-worker 1` (one epoch, 4,000 reviews)
#     and `score --ray` on a GPU actor vs local `score`, 100,000 reviews. Needs the `ray` extra on this machine
#     (pip install -e ".[ray]"; its wheel is bigger than the kit can carry); without CUDA or Ray it skips.
if [ "$DEVICE" != cuda ]; then
  $PY bench/gpu_report.py add "ray GPU workers" "skipped: no CUDA GPU" 0
elif ! $PY -c "import ray.train, ray.data" 2>/dev/null; then
  $PY bench/gpu_report.py add "ray GPU workers" "skipped: Ray is not installed here (pip install -e '.[ray]')" 0
else
  step "ray GPU workers" 150 "$WORK/ray.json" \
    $PY bench/ray_bench.py --reviews 0 --score-reviews 100000 --model minilm --train-gpus-per-worker 1 --json-out "$WORK/ray.json"
fi

# 5. the quality engineer's GPU checks, with the time that is left
if [ -f bench/quality_gpu.sh ]; then
  mkdir -p "$OUT/quality"
  remaining=$(left)
  export QUALITY_DEADLINE_S=$(( remaining - 10 )) QUALITY_OUT="$OUT/quality" GPU_RUN_SMOKE=$SMOKE
  step "quality_gpu.sh" $(( remaining / SLOW )) "" bash bench/quality_gpu.sh
else
  $PY bench/gpu_report.py add "quality_gpu.sh" "absent" 0
fi

echo "total $(( $(date +%s) - START ))s of ${BUDGET}s" | tee -a "$LOG" >>"$OUT/gpu_summary.md"
