#!/usr/bin/env bash
# Throughput benchmark of ebbflow's local mode against a hand-written
# reference loop; prints a Markdown report (see docs/benchmarks.md).
# Needs bin/ebbflow: run through `make bench`, or `make build` first.
#   scripts/bench.sh [-runs 3] [-lines 2000000] [-quick] [-out FILE]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec go run ./scripts/bench "$@"
