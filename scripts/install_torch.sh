#!/usr/bin/env bash
# Install torch before the project so pip never resolves a bare `torch` by accident.
# TORCH_SPEC overrides (e.g. TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128").
# On a plain PyPI index on Linux, torch==2.13.0 is the CUDA build (right for GPU machines); on
# machines with a local wheelhouse it takes the local CPU wheel.
set -euo pipefail
PY=${1:-.venv/bin/python}
SPEC=${TORCH_SPEC:-torch==2.13.0}
if "$PY" -c "import torch, sys; sys.exit(0 if tuple(map(int, torch.__version__.split('+')[0].split('.')[:2])) >= (2, 4) else 1)" 2>/dev/null; then
  exit 0
fi
# shellcheck disable=SC2086
"$PY" -m pip install -q $SPEC
