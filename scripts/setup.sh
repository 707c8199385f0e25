#!/usr/bin/env bash
# Create .venv and install translator into it. CPU PyTorch is pinned first so that pip never
# pulls the multi-GB CUDA build; a later `torch>=2.3` requirement is then already satisfied.
#   bash scripts/setup.sh          runtime dependencies
#   bash scripts/setup.sh --dev    + test dependencies (pytest, gradio_client, playwright, ctranslate2 = the
#                                  [fast] extra, so the export tests run) and Debian's chromium
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=0; [[ "${1:-}" == "--dev" ]] && DEV=1
PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
    "$PY" -m venv .venv
fi
. .venv/bin/activate
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
if ! python -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '$TORCH_VERSION' else 1)" 2>/dev/null; then
    pip install -q "torch==${TORCH_VERSION}"
fi
if [[ $DEV == 1 ]]; then
    pip install -q -e ".[dev,fast]"
    # Browser tests drive Debian's Chromium (a browser download does not work offline); Nanum fonts
    # render Korean in the app's screenshots.
    if ! command -v chromium >/dev/null 2>&1; then
        if command -v apt-get >/dev/null 2>&1 && [[ $(id -u) == 0 ]]; then
            (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-nanum >/dev/null) \
                || echo "setup: could not install chromium; browser tests will be skipped" >&2
        else
            echo "setup: chromium not found and apt-get unavailable (not root); browser tests will be skipped" >&2
        fi
    fi
else
    pip install -q -e .
fi
echo "setup: $(python -c 'import torch, lightning; print(f"torch {torch.__version__}, lightning {lightning.__version__}")') in .venv"
