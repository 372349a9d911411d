#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs the pinned reference tools
# (onnx, onnxruntime) into .venv, then runs every Rust test, including the ones
# that check our output with them.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv
stamp="$venv/.requirements-test.txt"
if [ ! -x "$venv/bin/python" ] || ! cmp -s requirements-test.txt "$stamp"; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
  cp requirements-test.txt "$stamp"
fi
export EEXC_PYTHON="$PWD/$venv/bin/python"

cargo test --all-targets "$@"
