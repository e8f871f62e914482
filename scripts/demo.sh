#!/usr/bin/env bash
# JupyterLab with the scheduler on the embedded SQLite store and a demo job.
set -euo pipefail
PY=$(python3 -c 'import sys; print(sys.executable)')
export HERMES_CRON_DB="${HERMES_CRON_DB:-$HOME/.local/share/jupyter/hermes_cron/demo.db}"
"$PY" -m hermes_cron_ext.cli add demo-heartbeat "@every 1m" --idempotency-key demo-heartbeat \
  --code 'import time, random
for i in range(10):
    print(f"::progress:: {i + 1}/10 step {i + 1}")
    print("working", "." * (i + 1), flush=True)
    time.sleep(0.5)
print("\033[32mdemo run finished\033[0m")' >/dev/null
echo "demo store: $HERMES_CRON_DB (job demo-heartbeat runs every minute)"
exec "$PY" -m jupyterlab --ip 127.0.0.1 "$@"
