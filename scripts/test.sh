#!/usr/bin/env bash
# Set up (with test dependencies) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
. .venv/bin/activate
export TRANSLATOR_DATA_DIR=${TRANSLATOR_DATA_DIR:-$(cd .. && pwd)/shared/data}
python -m pytest tests "$@"
