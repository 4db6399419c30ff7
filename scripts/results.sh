#!/bin/sh
# Real-data results (docs/results.md): distil Financial PhraseBank AllAgree and TFNS train with the offline rules
# teacher, then for each: build a tiny base, train the student, evaluate base, student and teacher against the gold
# labels of the held-out test split.
#   sh scripts/results.sh [fpb] [tfns]          (default: both)
# Knobs (environment): SHARED_DATA where fpb/ and tfns/ are (default ../shared/data), RESULTS_WORK where everything
# goes (default reports/results), STEPS training steps (default 1500).
set -eu
cd "$(dirname "$0")/.."
STARTED=$(date +%s)
SHARED="${SHARED_DATA:-../shared/data}"
WORK="${RESULTS_WORK:-reports/results}"
STEPS="${STEPS:-1500}"
stage() { echo "== [$(($(date +%s) - STARTED)) s] $*" >&2; }

[ $# -gt 0 ] || set -- fpb tfns
input_for() {
  case "$1" in
    fpb) echo "$SHARED/fpb/Sentences_AllAgree.txt" ;;
    tfns) echo "$SHARED/tfns/sent_train.csv" ;;
    *) echo "error: unknown data set '$1' (choose: fpb, tfns)" >&2; return 2 ;;
  esac
}
for name in "$@"; do input_for "$name" > /dev/null || exit 2; done  # every input checked before anything runs
for name in "$@"; do
  input=$(input_for "$name")
  [ -f "$input" ] || { echo "error: $input not found (set SHARED_DATA to the folder with fpb/ and tfns/)" >&2; exit 2; }
done

stage "environments"
sh scripts/setup_env.sh core >&2
sh scripts/setup_env.sh llamafactory >&2

for name in "$@"; do
  input=$(input_for "$name")
  stage "$name: distil $input with the rules teacher"
  .venv/bin/python -m data_gen.distill --config "data_gen/configs/$name.yaml" --input "$input" \
    --out "$WORK/$name/data" --no-progress >&2
  STARTED="$STARTED" STEPS="$STEPS" sh scripts/pipeline.sh "$WORK/$name/data" "$WORK/$name" --reference gold \
    > "$WORK/$name/summary.txt"
  cat "$WORK/$name/summary.txt"
done
stage "done in $(($(date +%s) - STARTED)) s"
