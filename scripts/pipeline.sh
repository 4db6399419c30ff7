#!/bin/sh
# Build a tiny base, train a student on distilled data, evaluate both (and the teacher) on the held-out split.
#   sh scripts/pipeline.sh DATA WORK [eval.run flags ...]
# DATA: a data_gen output directory of the finsight task; WORK: where base/, student/ and report/ go.
# Extra arguments go to `python -m eval.run` (e.g. --reference gold, --limit 4). STEPS (environment, default 600)
# sets the training steps. Used by scripts/demo.sh (the shipped samples) and scripts/results.sh (FPB, TFNS).
# Needs the environments from `sh scripts/setup_env.sh core` and `... llamafactory`. The summary goes to stdout,
# the stages (with elapsed seconds) and the engines' logs to stderr.
set -eu
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: sh scripts/pipeline.sh DATA WORK [eval.run flags ...]" >&2; exit 2; }
[ -f "$1/manifest.json" ] || { echo "error: $1 is not a data_gen output directory (no manifest.json)" >&2; exit 2; }
mkdir -p "$2"
DATA="$(cd "$1" && pwd)"; WORK="$(cd "$2" && pwd)"; shift 2
STEPS="${STEPS:-600}"
STARTED="${STARTED:-$(date +%s)}"
stage() { echo "== [$(($(date +%s) - STARTED)) s] $*" >&2; }

stage "build the base model: a tiny random Qwen2 with a tokenizer trained on $DATA's training split"
.venvs/llamafactory/bin/python scripts/build_tiny_model.py --arch qwen2 --out "$WORK/base" --hidden-size 128 \
  --layers 4 --vocab-size 2048 --corpus "$DATA/sharegpt_train.jsonl" >&2

stage "train the student: recipes/llamafactory/qwen2.5-7b-instruct_finsight_qlora.yaml, smoke mode, $STEPS steps"
# The base has no language yet: the student also trains its embeddings and output layer (additional_target), and
# evaluates once, at the end (bitsandbytes on CPU cannot go on training after an evaluation).
sh scripts/train.sh llamafactory recipes/llamafactory/qwen2.5-7b-instruct_finsight_qlora.yaml --smoke \
  "model_name_or_path=$WORK/base" "dataset_dir=$DATA" "output_dir=$WORK/student" "max_steps=$STEPS" \
  "eval_steps=$STEPS" max_samples=100000 learning_rate=0.005 logging_steps=50 additional_target=embed_tokens,lm_head >&2

stage "serve base and student, evaluate them and the teacher on the test split"
.venv/bin/python -m eval.run --config eval/configs/finsight.yaml --data "$DATA" --backend llamafactory \
  --model "$WORK/base" --adapter "$WORK/student" --template qwen --teacher rules --max-tokens 400 --concurrency 4 \
  --out "$WORK/report" --no-progress "$@"
