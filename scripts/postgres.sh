#!/usr/bin/env bash
# Start a private PostgreSQL server for the tests (installed from Debian's packages when missing).
# Prints the export line of OGCFLOW_TEST_POSTGRES_URL. Usage: eval "$(scripts/postgres.sh start)"; scripts/postgres.sh stop
set -euo pipefail
DIR=${OGCFLOW_PG_DIR:-/tmp/ogcflow-pg}
PORT=${OGCFLOW_PG_PORT:-55432}

pgbin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "${1:-start}" in
  start)
    if [ -z "$(pgbin)" ]; then
      echo "installing PostgreSQL from Debian's packages" >&2
      if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
      $SUDO apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >&2
    fi
    BIN=$(pgbin)
    mkdir -p "$DIR"
    [ "$(id -u)" = 0 ] && chown postgres "$DIR"
    if [ ! -f "$DIR/data/PG_VERSION" ]; then
      as_pg "$BIN/initdb" -D "$DIR/data" -A trust -U postgres >"$DIR/initdb.log" 2>&1
    fi
    if ! as_pg "$BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then
      as_pg "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
        -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off" start >&2
    fi
    echo "export OGCFLOW_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:$PORT/postgres"
    ;;
  stop)
    BIN=$(pgbin)
    [ -n "$BIN" ] && as_pg "$BIN/pg_ctl" -D "$DIR/data" -m fast stop >&2 || true
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
