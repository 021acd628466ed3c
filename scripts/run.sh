#!/usr/bin/env bash
# Install ogcflow and run the server with its embedded defaults (SQLite store, results on local disk, local
# worker processes) on http://127.0.0.1:5000/, with the water-bodies demo: synthetic Landsat scenes are
# generated and served, a water-bodies job runs on them, and where its results are is printed. The server
# keeps running until Ctrl-C. Arguments go to `ogcflow demo` (e.g. --port 8000); `ogcflow serve` runs the
# server alone.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/debs.sh bubblewrap  # deployed CWL tools (and the demo's) run in a bubblewrap sandbox (docs/security.md)
exec .venv/bin/ogcflow demo "$@"
