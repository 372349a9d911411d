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

# The Python package (python/), built as pip users get it: a wheel (maturin,
# same dev profile and target folder as the tests, so only the bindings are
# compiled on top), installed into .venv for tests/python_package.rs.
rm -rf target/wheels
"$venv/bin/maturin" build --quiet --manifest-path python/Cargo.toml --profile dev --out target/wheels
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps target/wheels/eexc-*.whl

log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --all-targets "$@" 2>&1 | tee "$log"
# One closing line for the whole suite (cargo prints one per test binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
     END { printf "eexc: %d passed, %d failed\n", p, f }' "$log"
