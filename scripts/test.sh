#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs the pinned reference tools
# (onnx, onnxruntime) into .venv, then runs every Rust test, including the ones
# that check our output with them.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv
stamp="$venv/.requirements-test.txt"
if [ ! -x "$venv/bin/python" ] || ! cmp -s requirements-test.txt "$stamp"; then
  # Some distributions ship Python without the venv module; virtualenv
  # (from PyPI) does the same job there.
  python3 -m venv "$venv" 2>/dev/null || {
    python3 -m pip install --quiet --user virtualenv && python3 -m virtualenv --quiet "$venv"
  }
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
  cp requirements-test.txt "$stamp"
fi
export EEXC_PYTHON="$PWD/$venv/bin/python"

cargo test --all-targets "$@"
