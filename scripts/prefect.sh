#!/usr/bin/env bash
# Start a Prefect server for the tests, on PostgreSQL (a database of the server that scripts/postgres.sh
# started: OGCFLOW_TEST_POSTGRES_URL). Prints the export line of PREFECT_API_URL.
# Usage: eval "$(scripts/prefect.sh start)"; scripts/prefect.sh stop
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${OGCFLOW_PREFECT_DIR:-/tmp/ogcflow-prefect}
PORT=${OGCFLOW_PREFECT_PORT:-4290}
case "${1:-start}" in
  start)
    : "${OGCFLOW_TEST_POSTGRES_URL:?start PostgreSQL first (scripts/postgres.sh)}"
    mkdir -p "$DIR/home"
    base=${OGCFLOW_TEST_POSTGRES_URL%/*}
    .venv/bin/python - "$OGCFLOW_TEST_POSTGRES_URL" <<'PY'
import sys, psycopg
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'prefect'").fetchone():
        conn.execute("CREATE DATABASE prefect")
PY
    export PREFECT_HOME="$DIR/home"
    export PREFECT_API_DATABASE_CONNECTION_URL="${base/postgresql:/postgresql+asyncpg:}/prefect"
    export PREFECT_SERVER_ANALYTICS_ENABLED=false PREFECT_LOGGING_LEVEL=WARNING
    setsid .venv/bin/prefect server start --host 127.0.0.1 --port "$PORT" >"$DIR/server.log" 2>&1 &
    echo $! >"$DIR/pid"
    for _ in $(seq 1 120); do
      if curl -sf "http://127.0.0.1:$PORT/api/health" >/dev/null; then
        echo "export PREFECT_API_URL=http://127.0.0.1:$PORT/api"
        exit 0
      fi
      sleep 0.5
    done
    echo "the Prefect server did not start; see $DIR/server.log" >&2
    tail -n 30 "$DIR/server.log" >&2
    exit 1
    ;;
  stop)
    if [ -f "$DIR/pid" ]; then
      kill -TERM -- "-$(cat "$DIR/pid")" 2>/dev/null || true
      sleep 1
      kill -KILL -- "-$(cat "$DIR/pid")" 2>/dev/null || true
      rm -f "$DIR/pid"
    fi
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
