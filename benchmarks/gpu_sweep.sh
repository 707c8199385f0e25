#!/usr/bin/env bash
# Many quality.py ablation rows at once on one GPU, each its own `translator fit` process, inside a hard deadline.
#
#   bash benchmarks/gpu_sweep.sh                               # the rows of 2026-12-04 (benchmarks/RESULTS.md)
#   ROWS="shipped seed2 lr3e-3" DEADLINE=1800 bash benchmarks/gpu_sweep.sh
#
# A small Transformer leaves a big GPU mostly idle, so the rows train side by side (--parallel = the number of
# rows, one CPU thread each). First a two-step `fit` on the GPU (fails fast on a broken environment, and builds
# the shared tokenizer and token store before the rows start), then quality.py trains and scores the rows, then
# the ensemble of the three rows best on validation is scored. When DEADLINE (seconds) runs out, quality.py is
# stopped; each row's metrics.csv (val BLEU after every epoch) is still in the archive.
# Env: ROWS, DEADLINE (default 540), SMOKE_TIMEOUT (the two-step fit, default 180 s), OUT (where machine.txt, smoke.log, sweep.log, gpu-util.txt and sweep.tgz
# go; default /tmp/gpu-sweep-out), WORK (runs and checkpoints; default /tmp/gpu-sweep), PY (default python3),
# DEVICE (evaluation device, default cuda), TRANSLATOR_DATA_DIR (folder holding multi30k/), QUICK=1 (a tiny
# run: one epoch of three batches, 30 sentences scored, to check the script on a CPU).
# Wheels in .whl/ (e.g. jsonargparse for a machine without it) are installed into /tmp/site first.
set -u
cd "$(dirname "$0")/.."
T0=$(date +%s)
DEADLINE=${DEADLINE:-540}
OUT=${OUT:-/tmp/gpu-sweep-out}; W=${WORK:-/tmp/gpu-sweep}; PY=${PY:-python3}; DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT" "$W"
left() { echo $(( DEADLINE - ($(date +%s) - T0) )); }
if [[ -d .whl ]] && ! $PY -c "import jsonargparse" 2>/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc; free -g; } > "$OUT/machine.txt" 2>&1
$PY -c "import torch, lightning, jsonargparse; print('torch', torch.__version__, 'lightning', lightning.__version__,
'jsonargparse', jsonargparse.__version__, 'cuda', torch.cuda.is_available())" 2>&1 | tee -a "$OUT/machine.txt"
timeout ${SMOKE_TIMEOUT:-180} $PY -m translator fit --config translator/configs/transformer.yaml --trainer.fast_dev_run 2 \
    --trainer.logger.init_args.save_dir "$W/smoke" > "$OUT/smoke.log" 2>&1 \
    || { echo "gpu_sweep: the two-step fit failed (output in $OUT/smoke.log):"; tail -40 "$OUT/smoke.log"; exit 1; }
echo "gpu_sweep: two-step fit ok after $(( $(date +%s) - T0 )) s"
ROWS=${ROWS:-shipped seed2 lr2e-3 lr3e-3 tok2048 voc5k voc12k bpe heads8 gelu drop0.2 attdrop wd1.0}
QUICK_ARGS=()
[[ -n "${QUICK:-}" ]] && QUICK_ARGS=(--max_sentences 30 -- --trainer.max_epochs 1 --trainer.limit_train_batches 3)
(while sleep 5; do nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader; done > "$OUT/gpu-util.txt" 2>&1) &
MONITOR=$!
timeout $(( $(left) - 25 )) $PY benchmarks/quality.py --families transformer --ablations $ROWS --parallel $(wc -w <<< "$ROWS") \
    --device "$DEVICE" --batch_size 400 --out "$W/q" --ensemble_runs shipped seed2 "${QUICK_ARGS[@]}" > "$OUT/sweep.log" 2>&1
echo "gpu_sweep: quality.py exit code $? after $(( $(date +%s) - T0 )) s"
kill $MONITOR 2>/dev/null
archive() { tar czf "$OUT/sweep.tgz" --exclude='*.ckpt' -C "$W" q 2>/dev/null; }
archive
# the ensemble of the three rows best on validation that share the shipped tokenizer (chosen on val only)
if [[ -f $W/q/ablations.json && $(left) -gt 70 ]]; then
    TOP=$($PY -c "
import json; r = json.load(open('$W/q/ablations.json'))['rows']
v = {k: e['val greedy']['bleu'] for k, e in r.items() if 'checkpoint' in e and 'val greedy' in e
     and not any(a.startswith(('--data.vocab', '--data.tokenizer')) for a in e.get('fit_args', []))}
print(' '.join(r[k]['checkpoint'] for k in sorted(v, key=v.get, reverse=True)[:3]))")
    echo "gpu_sweep: the three best on val: $TOP"
    for SPLIT_DECODER in "val greedy" "test beam"; do
        set -- $SPLIT_DECODER
        timeout $(( $(left) - 15 )) $PY -m translator evaluate --dataset multi30k --split "$1" --src_lang de --tgt_lang en \
            --label top3 --ensemble $TOP --decode.method "$2" --decode.beam_size 5 --batch_size 400 --device "$DEVICE" \
            --json "$W/q/top3-$1-$2.json" ${QUICK:+--max_sentences 30} >> "$OUT/sweep.log" 2>&1
    done
    archive
fi
echo "gpu_sweep: done after $(( $(date +%s) - T0 )) s; results in $OUT"
