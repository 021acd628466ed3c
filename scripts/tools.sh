#!/usr/bin/env bash
# Tools the tests use that must not share the project's environment (their pins clash with ours):
# .venv-tools with openapi-python-client, which generates a Python client from the server's /api.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv-tools/bin/python ] || "$PY" -m venv .venv-tools
.venv-tools/bin/python -m pip install -q "openapi-python-client==0.29.1"
