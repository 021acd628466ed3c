#!/usr/bin/env bash
# Install everything the tests need and run them: the package with its test extras, Debian's chromium,
# chromedriver and PostgreSQL; start a private PostgreSQL server, a Prefect server on it, an S3 server
# (SeaweedFS) and an OpenID provider (oidc-provider from npm; Debian's nodejs when missing); then ruff, mypy
# and pytest in two processes (pytest-xdist; arguments go to pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
scripts/setup.sh test
# the EO notebook's client (EOEPCA ogc_api_client, not on PyPI): the wheel beside the project, in ../shared
.venv/bin/python -m pip install -q --no-deps ../shared/clients/ogc_api_client-0.0.3-py3-none-any.whl
scripts/tools.sh
scripts/debs.sh chromium chromium-driver postgresql bubblewrap
export OGCFLOW_PG_DIR=${OGCFLOW_PG_DIR:-$(mktemp -d /tmp/ogcflow-pg.XXXXXX)}
export OGCFLOW_PG_PORT=${OGCFLOW_PG_PORT:-$(free_port)}
export OGCFLOW_PREFECT_DIR=${OGCFLOW_PREFECT_DIR:-$(mktemp -d /tmp/ogcflow-prefect.XXXXXX)}
export OGCFLOW_S3_DIR=${OGCFLOW_S3_DIR:-$(mktemp -d /tmp/ogcflow-s3.XXXXXX)}
export OGCFLOW_OIDC_DIR=${OGCFLOW_OIDC_DIR:-$(mktemp -d /tmp/ogcflow-oidc.XXXXXX)}
export OGCFLOW_PREFECT_PORT=${OGCFLOW_PREFECT_PORT:-0}  # 0: a free port, picked again if taken before the bind
start_service postgres
trap 'scripts/oidc.sh stop; scripts/s3.sh stop; scripts/prefect.sh stop; scripts/postgres.sh stop; rm -rf "$OGCFLOW_PG_DIR" "$OGCFLOW_PREFECT_DIR" "$OGCFLOW_S3_DIR" "$OGCFLOW_OIDC_DIR"' EXIT
start_service s3
start_service oidc  # a real OpenID provider (oidc-provider, from npm) for the authentication tests
start_service prefect
export PREFECT_HOME="$OGCFLOW_PREFECT_DIR/home"
.venv/bin/ruff check src tests bench
.venv/bin/mypy  # strict, on src/ (pyproject.toml [tool.mypy])
set +e
# two test processes, whole files each (module fixtures start once); OGCFLOW_TEST_PROCESSES=0 runs them in one
.venv/bin/python -m pytest -n "${OGCFLOW_TEST_PROCESSES:-2}" --dist loadfile "$@"
code=$?
set -e
[ $code -eq 5 ] && { echo "no tests ran" >&2; exit 1; }
exit $code
