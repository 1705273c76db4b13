#!/usr/bin/env bash
# Lints the AWS SAM template offline: cfn-lint, `sam validate --lint` (SAM's own transform, then
# cfn-lint on the result) and checkov (every failed check fails; the ones that do not fit are
# skipped inline in the template's Metadata with their reason). Each tool is pinned and installed
# from PyPI into its own virtual environment under .venv-lint/ (checkov's and SAM CLI's
# dependency pins conflict in one environment).
set -euo pipefail
cd "$(dirname "$0")/.."
tool_env() { # name, pip requirement
  local dir=".venv-lint/$1"
  if [ ! -x "$dir/bin/python" ]; then
    python3 -m venv "$dir"
  fi
  "$dir/bin/python" -m pip install -q --disable-pip-version-check "$2"
}
tool_env sam 'aws-sam-cli==1.170.0'
tool_env checkov 'checkov==3.3.30'
template=infra/template.yaml
.venv-lint/sam/bin/cfn-lint "$template"
echo "cfn-lint: $template clean"
# SAM CLI: no telemetry, and a region so it needs no AWS configuration
SAM_CLI_TELEMETRY=0 .venv-lint/sam/bin/sam validate --lint --template "$template" --region us-east-1
# --skip-download: offline (no Prisma Cloud guidelines); --quiet lists failures only
.venv-lint/checkov/bin/checkov --directory infra --framework cloudformation --skip-download \
  --quiet --compact
echo "checkov: infra/ clean"
