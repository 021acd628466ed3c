#!/usr/bin/env bash
# Install ogcflow and run the server with its embedded defaults (SQLite store, results on local disk,
# local worker processes) on http://127.0.0.1:5000/. Arguments go to `ogcflow serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/ogcflow serve "$@"
