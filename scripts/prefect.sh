#!/usr/bin/env bash
# Start a Prefect server for the tests, on PostgreSQL (a database of the server that scripts/postgres.sh
# started: OGCFLOW_TEST_POSTGRES_URL), or with OGCFLOW_PREFECT_DATABASE=sqlite on Prefect's default SQLite
# database (in OGCFLOW_PREFECT_DIR/home, as a plain `prefect server start` makes it). Prints the export line
# of PREFECT_API_URL.
# A run waiting for a deployment concurrency slot is tried again after 1 s (Prefect's default: 30 s) unless
# PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS says otherwise: the tests of limits stay short.
# OGCFLOW_PREFECT_WORKERS=N (N > 1) runs N server processes, which Prefect allows only with Redis: a private
# redis-server (Debian's package) is started for them.
# OGCFLOW_PREFECT_PORT: the port (default 4290); 0 picks a free one, and another if that one is taken by the
# time the server binds it (the tests' other services pick free ports too).
# Usage: eval "$(scripts/prefect.sh start)"; scripts/prefect.sh stop
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
DIR=${OGCFLOW_PREFECT_DIR:-/tmp/ogcflow-prefect}
ASKED_PORT=${OGCFLOW_PREFECT_PORT:-4290}
PORT=$ASKED_PORT
case "${1:-start}" in
  start)
    mkdir -p "$DIR/home"
    export PREFECT_HOME="$DIR/home"
    WORKERS=${OGCFLOW_PREFECT_WORKERS:-1}
    case "${OGCFLOW_PREFECT_DATABASE:-postgresql}" in
      postgresql)
        : "${OGCFLOW_TEST_POSTGRES_URL:?start PostgreSQL first (scripts/postgres.sh)}"
        base=${OGCFLOW_TEST_POSTGRES_URL%/*}
        .venv/bin/python - "$OGCFLOW_TEST_POSTGRES_URL" <<'PY'
import sys, psycopg
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'prefect'").fetchone():
        conn.execute("CREATE DATABASE prefect")
PY
        export PREFECT_API_DATABASE_CONNECTION_URL="${base/postgresql:/postgresql+asyncpg:}/prefect"
        ;;
      sqlite)
        unset PREFECT_API_DATABASE_CONNECTION_URL
        [ "$WORKERS" -gt 1 ] && { echo "several Prefect server processes need PostgreSQL" >&2; exit 2; }
        ;;
      *) echo "OGCFLOW_PREFECT_DATABASE is postgresql or sqlite" >&2; exit 2 ;;
    esac
    export PREFECT_SERVER_ANALYTICS_ENABLED=false PREFECT_LOGGING_LEVEL=WARNING
    export PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS=${PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS:-1}
    if [ "$WORKERS" -gt 1 ]; then
      scripts/debs.sh redis-server
      RPORT=$(free_port)
      redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
        --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log" >&2
      export PREFECT_MESSAGING_BROKER=prefect_redis.messaging PREFECT_MESSAGING_CACHE=prefect_redis.messaging
      export PREFECT_SERVER_EVENTS_CAUSAL_ORDERING=prefect_redis.ordering
      export PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE=prefect_redis.lease_storage
      export PREFECT_REDIS_MESSAGING_HOST=127.0.0.1 PREFECT_REDIS_MESSAGING_PORT=$RPORT
    fi
    wait_health() {  # $1: the server's pid; fails at once when it has exited
      for _ in $(seq 1 120); do
        curl -sf --max-time 2 "http://127.0.0.1:$PORT/api/health" >/dev/null && return 0
        kill -0 "$1" 2>/dev/null || return 1
        sleep 0.5
      done
      return 1
    }
    if [ "$WORKERS" -gt 1 ]; then
      # several server processes race to create the schema and the block types of a new database:
      # let one process do it first
      [ "$ASKED_PORT" = 0 ] && PORT=$(free_port)
      setsid .venv/bin/prefect server start --host 127.0.0.1 --port "$PORT" >"$DIR/seed.log" 2>&1 &
      seed=$!
      wait_health "$seed" || { tail -n 30 "$DIR/seed.log" >&2; exit 1; }
      kill -TERM -- "-$seed" 2>/dev/null || true
      while kill -0 "$seed" 2>/dev/null; do sleep 0.2; done
    fi
    for attempt in 1 2 3 4 5; do
      [ "$ASKED_PORT" = 0 ] && PORT=$(free_port)
      setsid .venv/bin/prefect server start --host 127.0.0.1 --port "$PORT" --workers "$WORKERS" \
        >"$DIR/server.log" 2>&1 &
      server=$!
      echo "$server" >"$DIR/pid"
      if wait_health "$server"; then
        echo "export PREFECT_API_URL=http://127.0.0.1:$PORT/api"
        exit 0
      fi
      kill -KILL -- "-$server" 2>/dev/null || true
      # a free port taken by another process between the pick and the bind: pick again
      [ "$ASKED_PORT" = 0 ] && grep -q "already in use" "$DIR/server.log" || break
      echo "port $PORT was taken before the Prefect server bound it (attempt $attempt); trying another" >&2
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
    if [ -f "$DIR/redis.pid" ]; then
      kill "$(cat "$DIR/redis.pid")" 2>/dev/null || true
      rm -f "$DIR/redis.pid"
    fi
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
