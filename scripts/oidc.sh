#!/usr/bin/env bash
# Start a private OpenID provider (npm's oidc-provider, scripts/oidc/provider.mjs) for the tests, bound to loopback.
# Installs Debian's nodejs and npm when missing and the pinned npm packages (npm ci into scripts/oidc/node_modules).
# Usage: eval "$(scripts/oidc.sh start)"; scripts/oidc.sh rotate; scripts/oidc.sh stop
#   start   prints the export lines of OGCFLOW_TEST_OIDC_ISSUER (http://127.0.0.1:PORT) and
#           OGCFLOW_TEST_OIDC_ROTATE_URL (POST there: sign with new keys from now on, see provider.mjs)
#   rotate  the same key rotation from the shell (prints the new signing kids as JSON)
#   install only install node, npm and the packages
# OGCFLOW_OIDC_DIR: pid, port and log (default /tmp/ogcflow-oidc); OGCFLOW_OIDC_PORT: the port (default: a free one);
# OGCFLOW_OIDC_TOKEN_TTL: access token lifetime in seconds (default 300).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${OGCFLOW_OIDC_DIR:-/tmp/ogcflow-oidc}
APP=scripts/oidc
STAMP=$APP/node_modules/.ogcflow-installed-lock.json

install() {
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    scripts/debs.sh nodejs npm
  fi
  local major
  major=$(node -p 'process.versions.node.split(".")[0]')
  [ "$major" -ge 18 ] || { echo "the OpenID provider needs Node.js 18 or newer (node is $(node --version))" >&2; exit 1; }
  if ! cmp -s "$APP/package-lock.json" "$STAMP" 2>/dev/null; then
    echo "installing the OpenID provider's npm packages into $APP/node_modules" >&2
    (cd "$APP" && npm ci --no-audit --no-fund --loglevel=error >&2)
    cp "$APP/package-lock.json" "$STAMP"
  fi
}

running() { [ -f "$DIR/oidc.pid" ] && kill -0 "$(cat "$DIR/oidc.pid")" 2>/dev/null; }

stop() {
  if [ -f "$DIR/oidc.pid" ]; then
    pid=$(cat "$DIR/oidc.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$DIR/oidc.pid" "$DIR/oidc.port"
  fi
}

case "${1:-start}" in
  start)
    install
    mkdir -p "$DIR"
    running && stop  # a provider left running from this directory
    rm -f "$DIR/oidc.port"
    OGCFLOW_OIDC_PORT_FILE="$DIR/oidc.port" OGCFLOW_OIDC_PORT=${OGCFLOW_OIDC_PORT:-0} \
      node "$APP/provider.mjs" </dev/null >"$DIR/oidc.log" 2>&1 &
    echo $! > "$DIR/oidc.pid"
    url=
    for _ in $(seq 1 120); do
      if [ -s "$DIR/oidc.port" ]; then
        url=http://127.0.0.1:$(cat "$DIR/oidc.port")
        code=$(curl -s -o /dev/null -w '%{http_code}' "$url/.well-known/openid-configuration" || true)
        [ "$code" = 200 ] && break
      fi
      running || { echo "the OpenID provider stopped:" >&2; tail -20 "$DIR/oidc.log" >&2; exit 1; }
      sleep 0.25
    done
    [ "${code:-}" = 200 ] || { echo "the OpenID provider did not answer ($url)" >&2; tail -20 "$DIR/oidc.log" >&2; stop; exit 1; }
    echo "export OGCFLOW_TEST_OIDC_ISSUER=$url OGCFLOW_TEST_OIDC_ROTATE_URL=$url/_test/rotate"
    ;;
  rotate)
    running || { echo "no OpenID provider running from $DIR" >&2; exit 1; }
    curl -sf -X POST "http://127.0.0.1:$(cat "$DIR/oidc.port")/_test/rotate${2:+?keep=$2}"
    echo
    ;;
  install) install ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop|rotate [0: drop the old keys]|install" >&2; exit 2 ;;
esac
