#!/usr/bin/env bash
# Install everything the tests need and run them: the package with its test extras, Debian's chromium,
# chromedriver and PostgreSQL; start a private PostgreSQL server, a Prefect server on it, an S3 server
# (SeaweedFS) and an OpenID provider (oidc-provider from npm; Debian's nodejs when missing); then ruff, mypy
# and pytest in two processes (pytest-xdist; arguments go to pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
# the EO notebook's client (EOEPCA ogc_api_client, not on PyPI): the wheel beside the project, in ../shared
.venv/bin/python -m pip install -q --no-deps ../shared/clients/ogc_api_client-0.0.3-py3-none-any.whl
scripts/tools.sh
scripts/debs.sh chromium chromium-driver postgresql bubblewrap
export OGCFLOW_PG_DIR=${OGCFLOW_PG_DIR:-$(mktemp -d /tmp/ogcflow-pg.XXXXXX)}
export OGCFLOW_PG_PORT=${OGCFLOW_PG_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
export OGCFLOW_PREFECT_DIR=${OGCFLOW_PREFECT_DIR:-$(mktemp -d /tmp/ogcflow-prefect.XXXXXX)}
export OGCFLOW_S3_DIR=${OGCFLOW_S3_DIR:-$(mktemp -d /tmp/ogcflow-s3.XXXXXX)}
export OGCFLOW_OIDC_DIR=${OGCFLOW_OIDC_DIR:-$(mktemp -d /tmp/ogcflow-oidc.XXXXXX)}
export OGCFLOW_PREFECT_PORT=${OGCFLOW_PREFECT_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
eval "$(scripts/postgres.sh start)"
trap 'scripts/oidc.sh stop; scripts/s3.sh stop; scripts/prefect.sh stop; scripts/postgres.sh stop; rm -rf "$OGCFLOW_PG_DIR" "$OGCFLOW_PREFECT_DIR" "$OGCFLOW_S3_DIR" "$OGCFLOW_OIDC_DIR"' EXIT
eval "$(scripts/s3.sh start)"
eval "$(scripts/oidc.sh start)"  # a real OpenID provider (oidc-provider, from npm) for the authentication tests
eval "$(scripts/prefect.sh start)"
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
