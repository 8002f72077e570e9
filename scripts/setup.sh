#!/usr/bin/env bash
# Install tastebud into ./.venv on a fresh machine, in one go.
# Where there is no NVIDIA GPU it installs the CPU build of torch first (torch==2.13.0):
# a bare `torch` requirement would pull a multi-GB CUDA build. With a GPU, pip's default torch.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "tastebud needs Python 3.11 or newer")'
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
VPY=.venv/bin/python
"$VPY" -m pip install --quiet --upgrade pip

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "setup: NVIDIA GPU found; installing the default (CUDA) torch"
else
    echo "setup: no GPU; installing CPU torch 2.13.0"
    "$VPY" -m pip install --quiet "torch==2.13.0"
fi
"$VPY" -m pip install --quiet -e ".[dev]"
echo "setup: done. Run: .venv/bin/tastebud demo"
