#!/usr/bin/env bash
# The test suite, as README.md documents it: installs the Python packages the tests call (the
# numeric references and moto's S3/SQS server, into .venv, from PyPI), starts moto's server on a
# free loopback port unless STATAPP_TEST_ENDPOINT names one already, then runs every Rust test in
# the workspace. The server stops when the script ends.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r tools/requirements-test.txt
export STATAPP_PYTHON="$PWD/.venv/bin/python"
export STATAPP_REQUIRE_PYTHON=1

if [ -z "${STATAPP_TEST_ENDPOINT:-}" ]; then
  port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  log=$(mktemp)
  .venv/bin/moto_server -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
  moto_pid=$!
  trap 'kill $moto_pid 2>/dev/null || true; rm -f "$log"' EXIT
  for _ in $(seq 1 100); do
    if curl -sf "http://127.0.0.1:$port/moto-api/" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$moto_pid" 2>/dev/null; then cat "$log" >&2; echo "moto_server did not start" >&2; exit 1; fi
    sleep 0.2
  done
  export STATAPP_TEST_ENDPOINT="http://127.0.0.1:$port"
fi
# moto accepts any credentials; the SDK needs some, and must not look for instance roles
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
export AWS_REGION="${AWS_REGION:-us-east-1}" AWS_EC2_METADATA_DISABLED=true

cargo test --workspace "$@"
