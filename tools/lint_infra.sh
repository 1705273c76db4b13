#!/usr/bin/env bash
# Lints the AWS SAM template offline with cfn-lint (installed into .venv from PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check 'cfn-lint==1.58.0'
.venv/bin/cfn-lint infra/template.yaml
echo "cfn-lint: infra/template.yaml clean"
