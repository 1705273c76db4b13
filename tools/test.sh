#!/usr/bin/env bash
# The test suite, as README.md documents it: installs the Python reference packages the tests
# call (into .venv, from PyPI), then runs every Rust test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r tools/requirements-test.txt
export STATAPP_PYTHON="$PWD/.venv/bin/python"
export STATAPP_REQUIRE_PYTHON=1
cargo test --workspace "$@"
