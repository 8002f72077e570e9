#!/usr/bin/env bash
# Model-quality search on the lent GPU (issue 13), called by bench/gpu_run.sh after `source .gpukit/bootstrap.sh`:
#
#   QUALITY_DEADLINE_S=220 QUALITY_OUT=$OUT/quality bash bench/quality_gpu.sh
#
# Runs bench/quality_bench.py on CUDA within QUALITY_DEADLINE_S seconds: baselines (TF-IDF + LR, VADER,
# zero-shot) then the candidate recipes, fold by fold (3 repeated stratified 80/10/10 splits), so that
# every recipe gets its folds in turn and a deadline still leaves mean ± std for the recipes that ran.
# Yelp dev gets 3/4 of the time, SemEval-2014 sentences (when .gpukit/data/sentences.csv is there) the rest.
# Writes at most 4 files to QUALITY_OUT: results.jsonl, summary.md (with the recommendation), summary.json,
# quality_log.txt. Weights are the kit's travel form: compare recipes with each other, not with CPU numbers.
# GPU_RUN_SMOKE=1: tiny CPU settings, a check that the script works.
set -u
cd "$(dirname "$0")/.."
PY=${PY:-python3}
OUT_DIR=${QUALITY_OUT:-${OUT:-/tmp/quality_out}/quality}
mkdir -p "$OUT_DIR"
BUDGET=${QUALITY_DEADLINE_S:-220}
# Leave time to write the summary after the last run.
DEADLINE=$(( BUDGET > 30 ? BUDGET - 15 : BUDGET ))
# Priority order: the current default, the mean-pool head with sqrt weights + class offsets (its run also
# registers the ensemble), then single changes to that, most promising first.
RECIPES=${QUALITY_RECIPES:-baseline,mean-sqrt-prior-ensemble,mean-none-prior,mean-sqrt-prior-256,cls-sqrt-prior,mean-sqrt-prior-llrd,mean-sqrt-prior-cosine-4ep}
if [ "${GPU_RUN_SMOKE:-0}" = 1 ]; then
  ARGS="--device cpu --rows 300 --max-train 150 --epochs 1 --folds 2 --recipes baseline --methods tfidf,vader"
else
  DEVICE=$($PY -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')" 2>/dev/null || echo cpu)
  ARGS="--device $DEVICE --folds 3 --order fold --recipes $RECIPES --methods tfidf,vader,zeroshot"
fi
echo "quality_gpu.sh: budget ${BUDGET}s, bench deadline ${DEADLINE}s, args: $ARGS"
# shellcheck disable=SC2086
timeout --signal=TERM --kill-after=10 "$BUDGET" $PY bench/quality_bench.py --datasets yelp,semeval $ARGS \
  --deadline-s "$DEADLINE" --work /tmp/quality_bench_work --out "$OUT_DIR" 2>&1 | grep --line-buffered -v "it/s]" \
  | tee "$OUT_DIR/quality_log.txt" | tail -n 60
status=${PIPESTATUS[0]}
# Keep the log small enough to come back: its last 2,000 lines.
tail -n 2000 "$OUT_DIR/quality_log.txt" > "$OUT_DIR/quality_log.tmp" && mv "$OUT_DIR/quality_log.tmp" "$OUT_DIR/quality_log.txt"
exit "$status"
