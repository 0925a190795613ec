#!/usr/bin/env bash
# All four benchmarks at the default scale (under 15 minutes on the 2-core machine) + a combined summary.
# Uses Elasticsearch at $ELASTICSEARCH_URL (default http://127.0.0.1:9200) when it answers: bash scripts/services.sh start
# Extra arguments go to `python -m bench` (see --help), e.g. --quick for a smoke run or --no-es.
# The recognition benchmark is off by default (it adds ~10 min at 10k photos, ~30 min at 100k):
#   bash bench/run_all.sh --recognition 10000,100000
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m bench "$@"
