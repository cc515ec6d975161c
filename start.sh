#!/usr/bin/env bash
# One command on a fresh machine: create .venv, install, and start the app.
#   ./start.sh --demo                              # no download: a tiny random model, to see the page
#   ./start.sh --model /models/lychee-rerank-mm    # a local copy of the weights
#   ./start.sh                                     # downloads vec-ai/lychee-rerank-mm from ModelScope once
# Extra arguments go to `lychee load`; `./start.sh share ...` runs `lychee share` instead.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "creating .venv ..."
    "$PYTHON" -m venv .venv
fi
# Reinstall only when requirements.txt or pyproject.toml changed since the last install.
stamp=.venv/.lychee-installed
if [ ! -f "$stamp" ] || [ requirements.txt -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "installing requirements (the first time downloads torch and friends) ..."
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -r requirements.txt -e .
    touch "$stamp"
fi

command=load
if [ "${1:-}" = "share" ] || [ "${1:-}" = "load" ]; then
    command=$1
    shift
fi
exec .venv/bin/lychee "$command" "$@"
