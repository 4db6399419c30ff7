#!/bin/sh
# A small hyperparameter grid, run one after another: learning rate x LoRA rank (2 x 2 = 4 runs by default).
#   sh scripts/sweep.sh [RECIPE] [--smoke] [key=value ...]
#   LRS="1e-4 2e-4" RANKS="8 16" choose the grid; lora_alpha follows as 2 x rank. Writes a table of the final
#   train and validation loss per configuration to saves/sweeps/<recipe>/results.md (and .csv; SWEEP_DIR moves it).
#   SWEEP_EVAL="eval.run flags" also scores each adapter with `python -m eval.run $SWEEP_EVAL --adapter <run>` (e.g.
#   "--config eval/configs/finsight.yaml --data datasets/finsight --split validation --reference gold --backend
#   llamacpp --model .cache/models/SmolLM2-135M-Instruct"): the table gains the student's accuracy and JSON-valid
#   rate and is sorted by accuracy. The base's answers are asked once (the evaluations share one --out and its cache).
set -eu
cd "$(dirname "$0")/.."
. scripts/lib.sh

RECIPE="${1:-recipes/llamafactory/qwen2.5-7b-instruct_finsight_qlora.yaml}"; [ "$#" -ge 1 ] && shift
SMOKE_ARG=""; if [ "${1:-}" = "--smoke" ] || [ "${SMOKE:-0}" = 1 ]; then SMOKE_ARG="--smoke"; [ "${1:-}" = "--smoke" ] && shift; fi
LRS="${LRS:-1e-4 2e-4}"; RANKS="${RANKS:-8 16}"
[ -f "$RECIPE" ] || { echo "error: recipe $RECIPE does not exist (see recipes/README.md)" >&2; exit 2; }
need_env llamafactory
SWEEP_DIR="${SWEEP_DIR:-saves/sweeps/$(basename "$RECIPE" .yaml)$( [ -n "$SMOKE_ARG" ] && echo -smoke )}"
mkdir -p "$SWEEP_DIR"
for LR in $LRS; do
  for RANK in $RANKS; do
    OUT="$SWEEP_DIR/lr${LR}_r${RANK}"
    echo "sweep: learning_rate=$LR lora_rank=$RANK -> $OUT"
    # shellcheck disable=SC2086
    sh scripts/train.sh llamafactory "$RECIPE" $SMOKE_ARG "$@" learning_rate="$LR" lora_rank="$RANK" \
      lora_alpha="$((RANK * 2))" output_dir="$OUT" > "$SWEEP_DIR/lr${LR}_r${RANK}.log" 2>&1 \
      || { echo "error: run lr=$LR rank=$RANK failed; log: $SWEEP_DIR/lr${LR}_r${RANK}.log" >&2; exit 1; }
    if [ -n "${SWEEP_EVAL:-}" ]; then
      # shellcheck disable=SC2086
      .venv/bin/python -m eval.run $SWEEP_EVAL --adapter "$OUT" --out "$SWEEP_DIR/eval" --overwrite --no-progress \
        > "$SWEEP_DIR/lr${LR}_r${RANK}.eval.log" 2>&1 \
        || { echo "error: evaluating lr=$LR rank=$RANK failed; log: $SWEEP_DIR/lr${LR}_r${RANK}.eval.log" >&2; exit 1; }
      cp "$SWEEP_DIR/eval/results.json" "$OUT/eval_run_results.json"
    fi
  done
done
"$ENV/bin/python" scripts/sweep_table.py "$SWEEP_DIR"
