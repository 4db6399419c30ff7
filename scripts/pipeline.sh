#!/bin/sh
# Train SmolLM2-135M-Instruct on distilled data, then evaluate base, student and the rules teacher on the held-out
# test split, served by llama.cpp on the CPU.
#   sh scripts/pipeline.sh DATA WORK [eval.run flags ...]
# DATA: a data_gen output directory of the finsight task; WORK: where student/ and report/ go. Extra arguments go
# to `python -m eval.run` (e.g. --reference gold, --limit 4). Knobs (environment): RECIPE (default
# recipes/llamafactory/smollm2-135m-instruct_finsight_lora.yaml), TRAIN_ARGS (key=value overrides for it, e.g.
# "num_train_epochs=2 learning_rate=5e-4"), TRAIN_DATA (train on another data_gen output, e.g. the same input
# distilled with --require-gold-agreement; default DATA), RESUME=1 (a checkpoint every SAVE_STEPS=25 steps, and a
# rerun with the same recipe, TRAIN_ARGS and training records continues an interrupted training from its last one
# or keeps a finished student; the evaluation always resumes from its store). Used by scripts/demo.sh (the shipped
# samples) and scripts/results.sh (FPB, TFNS). Needs `make model llamacpp` and the environments from
# `sh scripts/setup_env.sh core` and `... llamafactory`. The summary goes to stdout, the stages (with elapsed
# seconds) and the engines' logs to stderr.
set -eu
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: sh scripts/pipeline.sh DATA WORK [eval.run flags ...]" >&2; exit 2; }
[ -f "$1/manifest.json" ] || { echo "error: $1 is not a data_gen output directory (no manifest.json)" >&2; exit 2; }
mkdir -p "$2"
DATA="$(cd "$1" && pwd)"; WORK="$(cd "$2" && pwd)"; shift 2
TRAIN_DATA="$(cd "${TRAIN_DATA:-$DATA}" && pwd)"
RECIPE="${RECIPE:-recipes/llamafactory/smollm2-135m-instruct_finsight_lora.yaml}"
BASE=.cache/models/SmolLM2-135M-Instruct
STARTED="${STARTED:-$(date +%s)}"
stage() { echo "== [$(($(date +%s) - STARTED)) s] $*" >&2; }
[ -f "$BASE/config.json" ] || { echo "error: $BASE is missing: run \`make model\` first" >&2; exit 2; }

# what decides the student: the recipe, its overrides and the training records
TRAINED_ON=$(cat "$RECIPE" "$TRAIN_DATA/sharegpt_train.jsonl" | sha256sum | cut -c1-16)-$(echo "${TRAIN_ARGS:-}" | sha256sum | cut -c1-16)
STUDENT="$WORK/student"
PREVIOUS=$(cat "$STUDENT/.trained-on" 2>/dev/null || true)
if [ -n "${RESUME:-}" ] && [ -f "$STUDENT/.finished" ] && [ "$PREVIOUS" = "$TRAINED_ON" ]; then
  stage "the student in $STUDENT finished training with this recipe on these records: kept (RESUME)"
else
  SAVING=""
  if [ -n "${RESUME:-}" ]; then  # a checkpoint every SAVE_STEPS steps; LLaMA-Factory resumes from the last one
    [ "$PREVIOUS" = "$TRAINED_ON" ] || rm -rf "$STUDENT"  # another student's
    mkdir -p "$STUDENT" && echo "$TRAINED_ON" > "$STUDENT/.trained-on"
    for saved in "$STUDENT"/checkpoint-*; do  # trainer_state.json is written last: without it, a save was cut short
      [ -f "$saved/trainer_state.json" ] || rm -rf "$saved"
    done
    SAVING="save_strategy=steps save_steps=${SAVE_STEPS:-25} save_total_limit=1 overwrite_output_dir=false"
  else
    rm -f "$STUDENT/.trained-on" "$STUDENT/.finished"
  fi
  stage "train the student: $RECIPE on $TRAIN_DATA ${TRAIN_ARGS:-}"
  # shellcheck disable=SC2086
  sh scripts/train.sh llamafactory "$RECIPE" "dataset_dir=$TRAIN_DATA" "output_dir=$STUDENT" ${TRAIN_ARGS:-} $SAVING >&2
  if [ -n "${RESUME:-}" ]; then rm -rf "$STUDENT"/checkpoint-*; touch "$STUDENT/.finished"; fi
fi

stage "serve base and student with llama.cpp, evaluate them and the rules teacher on the test split"
.venv/bin/python -m eval.run --config eval/configs/finsight.yaml --data "$DATA" --backend llamacpp \
  --model "$BASE" --adapter "$WORK/student" --teacher rules --max-tokens 384 --out "$WORK/report" --no-progress "$@"
