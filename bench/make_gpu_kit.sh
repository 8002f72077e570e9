#!/usr/bin/env bash
# Build .gpukit/ for bench/gpu_run.sh: the shared kit (../shared/gpu/make_kit.sh: wheels the GPU machine
# lacks, the MiniLM travel form, Yelp dev data) plus pytest, so the CUDA tests run there too.
#   bash bench/make_gpu_kit.sh          # once, in the project root; then carry ".gpukit" and run:
#   source .gpukit/bootstrap.sh && bash bench/gpu_run.sh
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
shared=${SHARED_GPU_KIT:-$(cd .. && pwd)/shared/gpu}
[ -f "$shared/make_kit.sh" ] || { echo "no $shared/make_kit.sh" >&2; exit 1; }
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo "$(cd ../main 2>/dev/null && pwd)/.venv/bin/python" )}
# make_kit.sh writes to .git/info/exclude, which is not a folder in a git worktree: run a copy that asks git.
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cp "$shared"/* "$tmp"/
exclude=$(git rev-parse --git-path info/exclude); mkdir -p "$(dirname "$exclude")"
sed -i "s#\.git/info/exclude#$exclude#g" "$tmp/make_kit.sh"
PY=$PY EXTRA_WHEELS="pytest pluggy iniconfig pygments packaging pytest-timeout ${EXTRA_WHEELS:-}" bash "$tmp/make_kit.sh"
