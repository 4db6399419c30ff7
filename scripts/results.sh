#!/bin/sh
# Real-data results (docs/results.md) with the real SmolLM2-135M-Instruct student on the CPU.
#   sh scripts/results.sh [fpb] [tfns] [teacher]          (default: all three)
# fpb, tfns: distil Financial PhraseBank AllAgree (all of it) or TFNS train (a stable --sample of $TFNS_SAMPLE of its
# rows: the file is sorted by label, so its first rows would be one label) with the
# offline rules teacher, twice: every accepted answer (data/) and only the answers that agree with the gold label
# (data-agree/, --require-gold-agreement). Train a LoRA student on each, then evaluate base, student and teacher
# against the gold labels of data/'s held-out test split (the same rows for both students). Hours on 2 cores
# (docs/results.md): a rerun after an interruption resumes: distillation and evaluation from their stores, and an
# interrupted training from its last checkpoint (RESUME).
# teacher: the real model as the teacher (its GGUF served by llama.cpp, asked with --teacher openai) on $TEACHER_ROWS
# FPB rows (the first of a stable 10% --sample: the file is sorted by label, its first 200 rows are 195 positive):
# what the repair / re-ask ladder does with a real model's replies (manifest.json).
# Knobs (environment): SHARED_DATA where fpb/ and tfns/ are (default ../shared/data), RESULTS_WORK where everything
# goes (default reports/results), TFNS_SAMPLE (0.1: 953 of 9,543 rows), TEACHER_ROWS (200), TEACHER_MAX_TOKENS
# (512: the real teacher's completion limit, doubled once for a reply cut by it), TRAIN_ARGS recipe
# overrides (key=value ...).
set -eu
cd "$(dirname "$0")/.."
STARTED=$(date +%s)
SHARED="${SHARED_DATA:-../shared/data}"
WORK="${RESULTS_WORK:-reports/results}"
TFNS_SAMPLE="${TFNS_SAMPLE:-0.1}"
TEACHER_ROWS="${TEACHER_ROWS:-200}"
TEACHER_MAX_TOKENS="${TEACHER_MAX_TOKENS:-512}"
stage() { echo "== [$(($(date +%s) - STARTED)) s] $*" >&2; }

[ $# -gt 0 ] || set -- fpb tfns teacher
input_for() {
  case "$1" in
    fpb|teacher) echo "$SHARED/fpb/Sentences_AllAgree.txt" ;;
    tfns) echo "$SHARED/tfns/sent_train.csv" ;;
    *) echo "error: unknown data set '$1' (choose: fpb, tfns, teacher)" >&2; return 2 ;;
  esac
}
for name in "$@"; do input_for "$name" > /dev/null || exit 2; done  # every input checked before anything runs
for name in "$@"; do
  input=$(input_for "$name")
  [ -f "$input" ] || { echo "error: $input not found (set SHARED_DATA to the folder with fpb/ and tfns/)" >&2; exit 2; }
done

stage "environments, the real model and the CPU engine"
sh scripts/setup_env.sh core >&2
sh scripts/setup_env.sh llamafactory >&2
"${PYTHON:-python3}" scripts/get_model.py >&2
"${PYTHON:-python3}" scripts/get_llamacpp.py >&2

# the real model as a teacher: llama.cpp's server on a loopback port, stopped on exit. The distillation cache keys
# name the endpoint, port included, so the port is kept in $WORK/teacher/port and reused by a rerun (which then
# resumes from the cache instead of asking everything again); a new free port only when that one is taken.
real_teacher() {
  mkdir -p "$WORK/teacher"
  port=$(.venv/bin/python scripts/free_port.py "$WORK/teacher/port")
  .venvs/llamacpp/bin/llama-server --model .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf --alias smollm2-135m \
    --host 127.0.0.1 --port "$port" --parallel 4 --ctx-size 16384 --threads "$(nproc)" --seed 0 --no-webui \
    > "$WORK/teacher/llama-server.log" 2>&1 &
  server=$!
  trap 'kill $server 2>/dev/null' EXIT
  i=0
  until curl -sf "http://127.0.0.1:$port/health" > /dev/null; do
    i=$((i + 1)); [ $i -lt 120 ] || { echo "error: llama-server did not start: $WORK/teacher/llama-server.log" >&2; exit 1; }
    sleep 1
  done
  stage "teacher: SmolLM2-135M-Instruct as the teacher on $TEACHER_ROWS FPB rows (of a stable 10% sample)"
  LLAMA_KEY=none .venv/bin/python -m data_gen.distill --config data_gen/configs/fpb.yaml --input "$(input_for fpb)" \
    --sample 0.1 --limit "$TEACHER_ROWS" --teacher openai --base-url "http://127.0.0.1:$port/v1" --model smollm2-135m \
    --api-key-env LLAMA_KEY --concurrency 4 --timeout 900 --max-completion-tokens "$TEACHER_MAX_TOKENS" \
    --out "$WORK/teacher/data" --no-progress >&2 || true
  # (the summary is the result; --timeout: a 1,024-token reply at ~11 tokens/s per slot, 4 slots on 2 cores, takes
  # 95 s and more when the cores are shared, and the default 120 s would time out and re-ask what is still being
  # generated. --max-completion-tokens 512, which the ladder doubles once for a reply cut by it: at the task's 1,024
  # (doubled to 2,048) this model's replies were either under ~100 tokens or loops that repeat a few-shot example
  # to the limit (docs/results.md), and the loops made 200 rows take over 3 hours at ~44 tokens/s)
  kill $server; trap - EXIT
}

for name in "$@"; do
  if [ "$name" = teacher ]; then real_teacher; continue; fi
  input=$(input_for "$name")
  subset=""; [ "$name" = tfns ] && subset="--sample $TFNS_SAMPLE"
  stage "$name: distil $input with the rules teacher (every answer, and the gold-agreeing ones)"
  # shellcheck disable=SC2086
  .venv/bin/python -m data_gen.distill --config "data_gen/configs/$name.yaml" --input "$input" $subset \
    --out "$WORK/$name/data" --no-progress >&2
  # shellcheck disable=SC2086
  .venv/bin/python -m data_gen.distill --config "data_gen/configs/$name.yaml" --input "$input" $subset \
    --require-gold-agreement --out "$WORK/$name/data-agree" --no-progress >&2
  mkdir -p "$WORK/$name/all" "$WORK/$name/agree"
  STARTED="$STARTED" RESUME=1 sh scripts/pipeline.sh "$WORK/$name/data" "$WORK/$name/all" --reference gold \
    > "$WORK/$name/all/summary.txt"
  # trained on the gold-agreeing answers, tested on the same test rows as above; the base's and the teacher's
  # answers to them are already in the first evaluation's store (its cache keys name the model, not the run)
  mkdir -p "$WORK/$name/agree/report"
  [ -f "$WORK/$name/agree/report/cache.sqlite" ] || cp "$WORK/$name/all/report/cache.sqlite" "$WORK/$name/agree/report/"
  STARTED="$STARTED" RESUME=1 TRAIN_DATA="$WORK/$name/data-agree" sh scripts/pipeline.sh "$WORK/$name/data" \
    "$WORK/$name/agree" --reference gold > "$WORK/$name/agree/summary.txt"
  cat "$WORK/$name/all/summary.txt" "$WORK/$name/agree/summary.txt"
done
stage "done in $(($(date +%s) - STARTED)) s"
