#!/usr/bin/env bash
# Foundation benchmarks (issue 2): one `large` phantom (300 x 512 x 512), then reading and
# writing its 300 x 512 x 512 i16 CT with statapp and with nibabel, each in its own process so
# that peak memory belongs to that workload. Needs .venv (tools/test.sh makes it).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p statapp-cli
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
py=${STATAPP_PYTHON:-.venv/bin/python}
echo "== statapp: generate + write one large case"
target/release/statapp bench synth --size large --out "$work/bucket"
ct="$work/bucket/incoming/case_000/image.nii.gz"
echo "   CT file: $(du -h "$ct" | cut -f1)"
echo "== statapp: read + write the i16 .nii.gz"
target/release/statapp bench nifti "$ct" "$work/statapp_out.nii.gz"
echo "== nibabel $($py -c 'import nibabel; print(nibabel.__version__)'): read + write the same file"
$py tools/bench_nibabel.py "$ct" "$work/nibabel_out.nii.gz"
