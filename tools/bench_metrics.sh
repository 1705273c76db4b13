#!/usr/bin/env bash
# Metrics benchmark (issue 3): one `large` phantom (300 x 512 x 512) with model-like f32
# probability maps, scored by `statapp metrics case` and by tools/metrics_reference.py on the same
# files; wall time and peak memory from GNU time. The Python reference takes hours.
# Needs a Python with tools/requirements-reference.txt (STATAPP_PYTHON, default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${STATAPP_PYTHON:-.venv/bin/python}
cargo build --release -q -p statapp-cli
work=${1:-$(mktemp -d)}
case_dir=$(target/release/statapp bench metrics-data --size large --out "$work" | head -1)
args=(--annotation "$case_dir/annotation_1.nii.gz" --annotation "$case_dir/annotation_2.nii.gz"
      --annotation "$case_dir/annotation_3.nii.gz"
      --probabilities "$case_dir/prob_panc.nii.gz" "$case_dir/prob_kidn.nii.gz" "$case_dir/prob_livr.nii.gz")
measure() { /usr/bin/time -f "%e s wall, %M KiB peak RSS" "$@"; }
echo "== statapp metrics case (large, all metrics, reading included), 5 runs"
for _ in 1 2 3 4 5; do
  measure target/release/statapp metrics case "${args[@]}" > "$work/statapp.json"
done
echo "== tools/metrics_reference.py case (same files; stage times on stderr)"
STATAPP_REF_PROGRESS=1 measure "$py" tools/metrics_reference.py case "${args[@]}" > "$work/reference.json"
echo "outputs in $work"
