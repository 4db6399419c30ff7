# Shared by the launchers (sourced, not run): environment checks and config composition. POSIX sh.

# need_env ENGINE: set ENV and CLI for an engine, or stop with one line
need_env() {
  case "$1" in
    llamafactory) ENV=".venvs/llamafactory"; CLI="$ENV/bin/llamafactory-cli" ;;
    axolotl)      ENV=".venvs/axolotl";      CLI="$ENV/bin/axolotl" ;;
    vllm)         ENV=".venvs/vllm";         CLI="$ENV/bin/vllm" ;;
    *) echo "error: unknown engine '$1' (choose: llamafactory, axolotl, vllm)" >&2; exit 2 ;;
  esac
  [ -x "$CLI" ] || { echo "error: the $1 environment is missing: run sh scripts/setup_env.sh $1" >&2; exit 2; }
  PATH="$PWD/$ENV/bin:$PATH"; export PATH  # engines call their own tools (axolotl runs accelerate) from PATH
  # Axolotl recipes may name our plugins (recipes/axolotl/plugins/kd_terms.py): importable by module name
  [ "$1" = axolotl ] && PYTHONPATH="$PWD/recipes/axolotl/plugins${PYTHONPATH:+:$PYTHONPATH}" && export PYTHONPATH
  return 0
}

# compose RECIPE RUN_NAME [key=value ...]: write the effective config to $CONFIG (SMOKE=1: tiny model, CPU)
compose() {
  _recipe="$1"; _name="$2"; shift 2
  [ "${SMOKE:-0}" = 1 ] && _name="$_name-smoke"
  RUN_DIR="saves/runs/$_name"
  CONFIG="$RUN_DIR/config.yaml"
  mkdir -p "$RUN_DIR"
  _smoke=""
  if [ "${SMOKE:-0}" = 1 ]; then
    _smoke="--smoke"
    export HF_HUB_OFFLINE=1 CUDA_VISIBLE_DEVICES="" FORCE_TORCHRUN=0
  fi
  # shellcheck disable=SC2086
  "$ENV/bin/python" scripts/recipe.py "$_recipe" $_smoke --out "$CONFIG" "$@" >/dev/null
  export DISABLE_VERSION_CHECK=1 DO_NOT_TRACK=1 AXOLOTL_DO_NOT_TRACK=1
}

# config_value KEY: a value of the composed config
config_value() {
  "$ENV/bin/python" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1])).get(sys.argv[2]) or "")' "$CONFIG" "$1"
}

# run_logged LOG CMD...: run, show and keep the output; stop with the command's status if it fails
run_logged() {
  _log="$1"; shift
  # POSIX sh has no pipefail: keep the exit status in a file beside the log. Under `set -e` a failing command
  # would end the group before a plain `echo "$?"`; inside an && / || list it does not.
  rm -f "$_log.status"
  { "$@" 2>&1 && echo 0 > "$_log.status" || echo "$?" > "$_log.status"; } | tee "$_log"
  _status="$(cat "$_log.status")"
  [ "$_status" = 0 ] || { echo "error: $1 failed (exit $_status); log: $_log" >&2; exit "$_status"; }
}

