#!/usr/bin/env bash
# Install what the benchmarks need (the package, Debian's wrk; pygeoapi in its own Python 3.12 venv on first
# use) and run one benchmark script: bench/run.sh part1 [options of bench/bench_part1.py]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
scripts/debs.sh wrk
which=${1:-part1}
shift || true
exec .venv/bin/python "bench/bench_${which}.py" "$@"
