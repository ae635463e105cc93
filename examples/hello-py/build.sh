#!/bin/sh
# Builds the component named by $1 from app.py: a private virtualenv with the pinned
# componentize-py, then componentize against the WIT in $WIT_DIR (default: ./wit, as
# `wafer new --lang python` lays it out; the example in wafer's repository uses ../../wit).
set -eu
cd "$(dirname "$0")"
out="${1:-function.wasm}"
if [ ! -x .venv/bin/componentize-py ]; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
fi
.venv/bin/componentize-py -d "${WIT_DIR:-wit}" -w function componentize app -o "$out"
