#!/usr/bin/env bash
# nnU-Net core benchmarks (issue 4), each measured with GNU time (wall, peak RSS):
#  1. preprocessing one `large` phantom with its 3d_fullres plan: statapp vs nnunetv2;
#  2. CPU inference throughput of the 3d_fullres network: burn (flex) vs PyTorch, same architecture;
#  3. peak memory of ensembling 9 members of a `large` case.
# Needs a Python with nnunetv2 (NNUNET_PYTHON, default .venv-nnunet/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${NNUNET_PYTHON:-.venv-nnunet/bin/python}
work=${1:-$(mktemp -d)}
cargo build --release -q -p statapp-cli
S=target/release/statapp
measure() { /usr/bin/time -f "   %e s wall, %M KiB peak RSS" "$@"; }
$S synth --cases 1 --size large --seed 5 --out "$work/raw" --layout nnunet --annotator 1 >/dev/null
ds="$work/raw/Dataset475_CURVAS_ANNO1"
$S prepare "$ds" --out "$work/prep" >/dev/null
img="$ds/imagesTr/case_000_0000.nii.gz"; lab="$ds/labelsTr/case_000.nii.gz"
# a one-case plan targets the case's own spacing (nothing to resample): target 2.0 x 0.8 x 0.8 mm
"$py" - "$work/prep" <<'PY'
import json, sys
p = json.load(open(sys.argv[1] + "/nnUNetPlans.json"))
p["configurations"]["3d_fullres"]["spacing"] = [2.0, 0.8, 0.8]
json.dump(p, open(sys.argv[1] + "/plans_resample.json", "w"), indent=1)
PY
echo "== 1. preprocessing one large case (read + crop + normalise + resample to 2.0 x 0.8 x 0.8 mm)"
echo "statapp:"; measure $S bench preprocess --image "$img" --labels "$lab" --plans "$work/prep/plans_resample.json"
echo "nnunetv2:"; measure "$py" tools/bench_nnunet.py preprocess "$img" "$lab" "$work/prep/plans_resample.json" "$ds/dataset.json"
echo "== 2. 3d_fullres inference on CPU (2 threads)"
echo "statapp (burn flex):"; RAYON_NUM_THREADS=2 measure $S bench infer --plans "$work/prep/nnUNetPlans.json" --tiles 2
echo "PyTorch:"; measure "$py" tools/bench_nnunet.py infer "$work/prep/nnUNetPlans.json" 3d_fullres 2
echo "== 3. ensembling 9 members of a large case"
$S bench ensemble-data --size large --members 9 --out "$work/members" >/dev/null
measure $S ensemble "$work"/members/member_* -o "$work/ensemble"
