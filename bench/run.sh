#!/usr/bin/env bash
# Install what the benchmarks need (the package, Debian's wrk; pygeoapi in its own Python 3.12 venv on first
# use), start PostgreSQL and Prefect for the benchmarks that need them, and run one benchmark script:
#   bench/run.sh part1 [options of bench/bench_part1.py]
#   bench/run.sh prefect [options of bench/bench_prefect.py]
#   bench/run.sh prefect_native [options of bench/bench_prefect_native.py]   (a Prefect process worker too)
#   bench/run.sh prefect_calls [options of bench/bench_prefect_calls.py]   (CPU of each Prefect call)
#   bench/run.sh cwl [options of bench/bench_cwl.py]
#   bench/run.sh water_bodies [options of bench/bench_water_bodies.py]   (starts a private S3 server; with
#                                                   --size full also PostgreSQL and Prefect)
#   bench/run.sh auth [options of bench/bench_auth.py]   (starts an OpenID provider)
#   bench/run.sh pages [options of bench/bench_pages.py]   (HTML pages with 10,000 jobs, static bytes)
#   bench/run.sh ab --against REV [options of bench/bench_ab.py]   (this checkout beside an earlier revision)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
scripts/setup.sh test
scripts/debs.sh wrk postgresql redis-server
which=${1:-part1}
shift || true
if [ "$which" = prefect ] || [ "$which" = prefect_native ] || [ "$which" = prefect_calls ] || { [ "$which" = water_bodies ] && [[ " $* " == *" full "* ]]; }; then
  export OGCFLOW_PG_DIR=$(mktemp -d /tmp/ogcflow-pg.XXXXXX) OGCFLOW_PREFECT_DIR=$(mktemp -d /tmp/ogcflow-prefect.XXXXXX)
  export OGCFLOW_PG_PORT=$(free_port)
  export OGCFLOW_PREFECT_PORT=0  # a free one
  start_service postgres
  trap 'scripts/prefect.sh stop; scripts/postgres.sh stop; rm -rf "$OGCFLOW_PG_DIR" "$OGCFLOW_PREFECT_DIR"' EXIT
  export OGCFLOW_PREFECT_WORKERS=${OGCFLOW_PREFECT_WORKERS:-2}  # two server processes (with Redis)
  start_service prefect
  export PREFECT_HOME="$OGCFLOW_PREFECT_DIR/home"
fi
if [ "$which" = auth ]; then
  export OGCFLOW_OIDC_DIR=$(mktemp -d /tmp/ogcflow-oidc.XXXXXX)
  trap 'scripts/oidc.sh stop; rm -rf "$OGCFLOW_OIDC_DIR"' EXIT
  start_service oidc
fi
if [ "$which" = water_bodies ]; then
  export OGCFLOW_S3_DIR=$(mktemp -d /tmp/ogcflow-s3.XXXXXX)
  trap 'scripts/s3.sh stop; { scripts/prefect.sh stop; scripts/postgres.sh stop; } 2>/dev/null || true; rm -rf "$OGCFLOW_S3_DIR" "${OGCFLOW_PG_DIR:-}" "${OGCFLOW_PREFECT_DIR:-}"' EXIT
  start_service s3
fi
.venv/bin/python "bench/bench_${which}.py" "$@"
