#!/bin/sh
# The whole product on a laptop, offline (no key, no GPU): distil -> train -> serve -> evaluate -> report.
#   sh scripts/demo.sh          (what `make demo` runs)
# 1. environments (.venv, .venvs/llamafactory); 2. distil the shipped samples with the rules teacher
# (datasets/finsight, datasets/finqa); 3. build the base: a tiny random Qwen2 (4 layers, 128 wide, 0.85 M
# parameters) whose tokenizer is trained on the distilled training split; 4. train the student with the Qwen2.5
# QLoRA recipe in smoke mode on CPU; 5. serve base and student with llamafactory-cli api and evaluate both, with the
# teacher's own answers as the reference, on the held-out test split; 6. print the report's path and a summary.
# Steps 3-6 are scripts/pipeline.sh. Knobs (environment): DEMO_STEPS training steps (600), DEMO_LIMIT test rows
# (all), DEMO_WORK where data, models and the report go (default: datasets/ and reports/demo/{base,student,report}).
set -eu
cd "$(dirname "$0")/.."
STARTED=$(date +%s)
STEPS="${DEMO_STEPS:-600}"
if [ -n "${DEMO_WORK:-}" ]; then
  mkdir -p "$DEMO_WORK"
  WORK="$(cd "$DEMO_WORK" && pwd)"; DATA="$WORK/datasets"
else
  WORK="$PWD/reports/demo"; DATA="$PWD/datasets"
fi
mkdir -p "$WORK"

stage() { echo "== [$(($(date +%s) - STARTED)) s] $*" >&2; }

stage "environments"
sh scripts/setup_env.sh core >&2
sh scripts/setup_env.sh llamafactory >&2

stage "distil the shipped samples with the offline rules teacher"
.venv/bin/python -m data_gen.distill --config data_gen/configs/finsight.yaml --out "$DATA/finsight" --no-progress >&2
.venv/bin/python -m data_gen.distill --config data_gen/configs/qa.yaml --out "$DATA/finqa" --no-progress >&2

STARTED="$STARTED" STEPS="$STEPS" sh scripts/pipeline.sh "$DATA/finsight" "$WORK" \
  ${DEMO_LIMIT:+--limit "$DEMO_LIMIT"} > "$WORK/summary.txt"

stage "done in $(($(date +%s) - STARTED)) s"
cat "$WORK/summary.txt"
