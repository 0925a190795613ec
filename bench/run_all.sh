#!/usr/bin/env bash
# Every benchmark at the default scale (~21 minutes on the 2-core machine), a combined summary and issue 8's table
# of targets, every figure from this one run.
# Uses Elasticsearch at $ELASTICSEARCH_URL (default http://127.0.0.1:9200) when it answers: bash scripts/services.sh start
# Extra arguments go to `python -m bench` (see --help), e.g. --quick for a smoke run, --no-es, --no-recognition,
# or --recognition 10000,100000 to add the 100k recognition catalog (~30 min more).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m bench "$@"
