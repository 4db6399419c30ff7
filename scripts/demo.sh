#!/bin/sh
# The whole product on a laptop, offline (no key, no GPU): distil -> train -> serve -> evaluate -> report.
#   sh scripts/demo.sh          (what `make demo` runs)
# 1. environments (.venv, .venvs/llamafactory); 2. distil the shipped samples with the rules teacher
# (datasets/finsight, datasets/finqa); 3. train a tiny student (a local random Qwen2 twin) with the Qwen2.5 QLoRA
# recipe in smoke mode on CPU; 4. serve base and student with llamafactory-cli api and evaluate both, with the
# teacher's own answers as the reference, on the held-out test split; 5. print the report's path and a summary.
# Knobs (environment): DEMO_STEPS training steps (800), DEMO_LIMIT test rows (all), DEMO_WORK where data, the
# student and the report go (the repository: datasets/, saves/demo/, reports/demo/).
set -eu
cd "$(dirname "$0")/.."
STARTED=$(date +%s)
STEPS="${DEMO_STEPS:-800}"
if [ -n "${DEMO_WORK:-}" ]; then
  mkdir -p "$DEMO_WORK"
  WORK="$(cd "$DEMO_WORK" && pwd)"
  DATA="$WORK/datasets"; STUDENT="$WORK/student"; REPORT="$WORK/report"
else
  DATA="$PWD/datasets"; STUDENT="$PWD/saves/demo/student"; REPORT="$PWD/reports/demo"
fi

stage() { echo "== [$(($(date +%s) - STARTED)) s] $*" >&2; }

stage "environments"
sh scripts/setup_env.sh core >&2
sh scripts/setup_env.sh llamafactory >&2

stage "distil the shipped samples with the offline rules teacher"
.venv/bin/python -m data_gen.distill --config data_gen/configs/finsight.yaml --out "$DATA/finsight" --no-progress >&2
.venv/bin/python -m data_gen.distill --config data_gen/configs/qa.yaml --out "$DATA/finqa" --no-progress >&2

stage "train the tiny student: recipes/llamafactory/qwen2.5-7b-instruct_finsight_qlora.yaml, smoke mode, $STEPS steps"
# A randomly initialised twin has no language yet: the demo also trains its embeddings and output layer
# (additional_target), and evaluates once at the end (bitsandbytes on CPU cannot go on training after an evaluation).
sh scripts/train.sh llamafactory recipes/llamafactory/qwen2.5-7b-instruct_finsight_qlora.yaml --smoke \
  "dataset_dir=$DATA/finsight" "output_dir=$STUDENT" "max_steps=$STEPS" "eval_steps=$STEPS" max_samples=100000 \
  learning_rate=0.005 logging_steps=50 additional_target=embed_tokens,lm_head >&2

stage "serve base and student, evaluate them and the teacher on the test split"
SUMMARY=$(.venv/bin/python -m eval.run --config eval/configs/finsight.yaml --data "$DATA/finsight" \
  --backend llamafactory --model .cache/tiny-qwen2 --adapter "$STUDENT" --template qwen --teacher rules \
  --max-tokens 400 --concurrency 4 ${DEMO_LIMIT:+--limit "$DEMO_LIMIT"} --out "$REPORT" --no-progress)

stage "done in $(($(date +%s) - STARTED)) s"
echo "$SUMMARY"
