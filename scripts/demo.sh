#!/bin/sh
# The whole product on a laptop, offline (no key, no GPU): distil -> train -> serve -> evaluate -> report.
#   sh scripts/demo.sh          (what `make demo` runs)
# 1. environments (.venv, .venvs/llamafactory); 2. distil the shipped samples with the rules teacher
# (datasets/finsight, datasets/finqa); 3. build the base: a tiny random Qwen2 (4 layers, 128 wide, 0.85 M
# parameters) whose tokenizer is trained on the distilled training split; 4. train the student with the Qwen2.5
# QLoRA recipe in smoke mode on CPU; 5. serve base and student with llamafactory-cli api and evaluate both, with the
# teacher's own answers as the reference, on the held-out test split; 6. print the report's path and a summary.
# Knobs (environment): DEMO_STEPS training steps (600), DEMO_LIMIT test rows (all), DEMO_WORK where data, models
# and the report go (the repository: datasets/, .cache/demo-qwen2, saves/demo/, reports/demo/).
set -eu
cd "$(dirname "$0")/.."
STARTED=$(date +%s)
STEPS="${DEMO_STEPS:-600}"
if [ -n "${DEMO_WORK:-}" ]; then
  mkdir -p "$DEMO_WORK"
  WORK="$(cd "$DEMO_WORK" && pwd)"
  DATA="$WORK/datasets"; BASE="$WORK/base"; STUDENT="$WORK/student"; REPORT="$WORK/report"
else
  DATA="$PWD/datasets"; BASE="$PWD/.cache/demo-qwen2"; STUDENT="$PWD/saves/demo/student"; REPORT="$PWD/reports/demo"
fi

stage() { echo "== [$(($(date +%s) - STARTED)) s] $*" >&2; }

stage "environments"
sh scripts/setup_env.sh core >&2
sh scripts/setup_env.sh llamafactory >&2

stage "distil the shipped samples with the offline rules teacher"
.venv/bin/python -m data_gen.distill --config data_gen/configs/finsight.yaml --out "$DATA/finsight" --no-progress >&2
.venv/bin/python -m data_gen.distill --config data_gen/configs/qa.yaml --out "$DATA/finqa" --no-progress >&2

stage "build the base model: a tiny random Qwen2 with a tokenizer trained on the training split"
.venvs/llamafactory/bin/python scripts/build_tiny_model.py --arch qwen2 --out "$BASE" --hidden-size 128 --layers 4 \
  --vocab-size 2048 --corpus "$DATA/finsight/sharegpt_train.jsonl" >&2

stage "train the student: recipes/llamafactory/qwen2.5-7b-instruct_finsight_qlora.yaml, smoke mode, $STEPS steps"
# The base has no language yet: the demo also trains its embeddings and output layer (additional_target), and
# evaluates once, at the end (bitsandbytes on CPU cannot go on training after an evaluation).
sh scripts/train.sh llamafactory recipes/llamafactory/qwen2.5-7b-instruct_finsight_qlora.yaml --smoke \
  "model_name_or_path=$BASE" "dataset_dir=$DATA/finsight" "output_dir=$STUDENT" "max_steps=$STEPS" \
  "eval_steps=$STEPS" max_samples=100000 learning_rate=0.005 logging_steps=50 additional_target=embed_tokens,lm_head >&2

stage "serve base and student, evaluate them and the teacher on the test split"
SUMMARY=$(.venv/bin/python -m eval.run --config eval/configs/finsight.yaml --data "$DATA/finsight" \
  --backend llamafactory --model "$BASE" --adapter "$STUDENT" --template qwen --teacher rules \
  --max-tokens 400 --concurrency 4 ${DEMO_LIMIT:+--limit "$DEMO_LIMIT"} --out "$REPORT" --no-progress)

stage "done in $(($(date +%s) - STARTED)) s"
echo "$SUMMARY"
