#!/bin/sh
# Builds hello-py.wasm: a private virtualenv with the pinned componentize-py, then componentize.
set -eu
cd "$(dirname "$0")"
if [ ! -x .venv/bin/componentize-py ]; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
fi
.venv/bin/componentize-py -d ../../wit -w function componentize app -o hello-py.wasm
