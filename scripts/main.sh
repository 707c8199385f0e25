#!/usr/bin/env bash
# The main job: set up, train the Transformer on Multi30k de→en, evaluate it on test_2016_flickr
# (beam 5, sacreBLEU + chrF + BLEU by source length), and print how to open the app.
#   bash scripts/main.sh                      # Transformer (about 45-50 min on a 2-core CPU)
#   CONFIG=translator/configs/attention.yaml bash scripts/main.sh
#   bash scripts/main.sh --trainer.max_epochs 2   # extra arguments go to `translator fit`
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export TRANSLATOR_DATA_DIR=${TRANSLATOR_DATA_DIR:-$(cd .. && pwd)/shared/data}
CONFIG=${CONFIG:-translator/configs/transformer.yaml}
NAME=$(basename "$CONFIG" .yaml)
RUN=${RUN_DIR:-checkpoints/$NAME-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$RUN"
translator fit --config "$CONFIG" --trainer.logger.init_args.save_dir "$RUN" "$@" 2>&1 | tee "$RUN/train.log"
CKPTS=$(dirname "$(ls -t "$RUN"/*/version_*/checkpoints/best.ckpt | head -1)")
# Average the last epochs (kept as epochNN.ckpt) and keep whichever of best.ckpt and the average
# scores higher on the validation set (greedy): model selection never looks at the test set.
translator average "$CKPTS"/epoch*.ckpt --output "$CKPTS/average.ckpt"
score() { python -c "import json, sys; print(json.load(open(sys.argv[1]))['bleu'])" "$1"; }
for WHICH in best average; do
    translator evaluate --checkpoint "$CKPTS/$WHICH.ckpt" --dataset multi30k --split val --decode.method greedy \
        --json "$RUN/val-$WHICH.json" > /dev/null
    echo "validation BLEU (greedy) of $WHICH.ckpt: $(score "$RUN/val-$WHICH.json")"
done
FINAL=$(python -c "import sys; print(sys.argv[1] if float(sys.argv[3]) >= float(sys.argv[4]) else sys.argv[2])" \
    "$CKPTS/average.ckpt" "$CKPTS/best.ckpt" "$(score "$RUN/val-average.json")" "$(score "$RUN/val-best.json")")
translator evaluate --checkpoint "$FINAL" --dataset multi30k --split test --decode.method beam --decode.beam_size 5 \
    --json "$RUN/eval.json" --plot "$RUN/bleu_by_length.png" | tee "$RUN/eval.txt"
echo
echo "checkpoint: $FINAL"
echo "report:     $RUN/eval.json, plot: $RUN/bleu_by_length.png"
echo "try it:     translator app --checkpoint $FINAL    (then open http://127.0.0.1:7860)"
