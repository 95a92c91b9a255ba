#!/usr/bin/env bash
# The peer benchmark's own environment (benchmark-only; the toolkit never imports torch):
#   .peer-venv   a Python with the CPU build of torch, and yacs/scipy/tqdm for mdistiller's code
#   .peers/      checkouts of RepDistiller and mdistiller at the commits the benchmark was run with
# Then: python -m benchmarks.against_peers   (see docs/benchmarks.md)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
REPDISTILLER_COMMIT=b84f547c5db6a35318d4671d7d5c4de74c822403
MDISTILLER_COMMIT=a08d46f10d6102bd6e3f258ca5ac880b020ea259
if [ ! -x .peer-venv/bin/python ]; then
    "$PY" -m venv .peer-venv
    # the CPU wheel from PyPI's CPU index (PyPI's default torch is a CUDA build of several GB)
    .peer-venv/bin/pip install -q --timeout 10 --retries 0 torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
        || .peer-venv/bin/pip install -q torch==2.13.0
    .peer-venv/bin/pip install -q yacs scipy tqdm
fi
mkdir -p .peers
for spec in "RepDistiller HobbitLong/RepDistiller $REPDISTILLER_COMMIT" "mdistiller megvii-research/mdistiller $MDISTILLER_COMMIT"; do
    set -- $spec
    if [ ! -d ".peers/$1" ]; then
        if ! git clone -q "https://github.com/$2" ".peers/$1" || ! git -C ".peers/$1" checkout -q "$3"; then
            rm -rf ".peers/$1"
            echo "error: could not check out https://github.com/$2 at $3: put a checkout of it at .peers/$1" >&2
            exit 2
        fi
    fi
done
echo "peer environment ready: .peer-venv, .peers/RepDistiller, .peers/mdistiller"
