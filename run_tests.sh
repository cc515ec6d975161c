#!/usr/bin/env bash
# The test command: create .venv if needed, install the app with its test, cluster, quantize and video extras, run pytest.
#   ./run_tests.sh                 # every test
#   ./run_tests.sh -k rerank -x    # arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "creating .venv ..."
    "$PYTHON" -m venv .venv
fi
# Reinstall only when the requirements changed since the last test install.
stamp=.venv/.lychee-test-installed
if [ ! -f "$stamp" ] || [ requirements.txt -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "installing the app and its test tools ..."
    .venv/bin/python -m pip install -q --upgrade pip
    # --no-compile: byte-compiling every module of torch, transformers, gradio and Ray at install costs most of a
    # minute (~55 s for the runtime packages alone, measured for tests/test_layout.py's install); Python compiles
    # what the tests import, when they import it.
    .venv/bin/python -m pip install -q --no-compile -r requirements.txt -e ".[test,cluster,quantize,video]"
    touch "$stamp"
fi
# Python keeps the bytecode of what it imports: with PYTHONDONTWRITEBYTECODE set (as on some machines), every test
# subprocess compiled torch, transformers and gradio from source again (importing the app: ~10.5 s against ~6 s).
unset PYTHONDONTWRITEBYTECODE
exec .venv/bin/python -m pytest "$@"
