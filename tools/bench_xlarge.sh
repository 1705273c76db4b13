#!/usr/bin/env bash
# A full-size CT (the `xlarge` phantom, 950 x 512 x 512 at 1 mm slices) through every handler on a
# directory bucket, each stage in its own process (release build): ingest (validation and
# preprocessing once for the model's plan), fan-out inference (parts and gather; every part's
# and the gather's own peak memory are in run.json), metrics, and an ensemble of 9 members
# (`statapp bench ensemble-data`). The network has the CURVAS 3d_fullres topology (6 stages,
# patch 192 x 112 x 112, ../shared/curvas/nnUNetPlans.json) at 1/8 of its width, untrained: what
# is measured is the data path and its memory, not accuracy. Mirroring is off unless
# STATAPP_MIRRORING=on (8 forward passes per tile). Prints wall time and peak RSS per stage.
# Disk: about 40 GB under WORK (nine noisy xlarge members are ~3 GB each).
set -euo pipefail
cd "$(dirname "$0")/.."
plans_src=${CURVAS_PLANS:-../shared/curvas/nnUNetPlans.json}
if [ -z "${STATAPP_BIN:-}" ]; then cargo build --release -q -p statapp-cli; fi
bin=${STATAPP_BIN:-target/release/statapp}
work=${WORK:-$(mktemp -d)}
mkdir -p "$work"
echo "work: $work"
python3 - "$plans_src" "$work/plans.json" <<'PY'
import json, sys
plans = json.load(open(sys.argv[1]))
kw = plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
kw["features_per_stage"] = [max(4, f // 8) for f in kw["features_per_stage"]]
json.dump(plans, open(sys.argv[2], "w"), indent=2)
PY
$bin init-model --plans "$work/plans.json" --configuration 3d_fullres --out "$work/models" >/dev/null
model=$(ls "$work/models")
rm -rf "$work/bucket"
$bin synth --cases 1 --size xlarge --seed 9 --out "$work/bucket" >/dev/null
case=$(ls "$work/bucket/incoming")
mkdir -p "$work/bucket/models" && cp -r "$work/models/$model" "$work/bucket/models/"
$bin plan-inference --plans "$work/plans.json" --shape 950,512,512 --mirror-axes 0 \
  --budget-s "${STATAPP_INFER_BUDGET_S:-600}"
measure() { /usr/bin/time -f "$1: %e s wall, %M KiB max RSS" "${@:2}"; }
measure ingest $bin bench stage ingest --bucket "$work/bucket" --case "$case" --model "$model"
STATAPP_MIRRORING=${STATAPP_MIRRORING:-off} \
  measure "infer (split, parts, gather; one process)" \
  $bin bench stage infer --bucket "$work/bucket" --case "$case" --model "$model"
python3 - "$work/bucket/predictions/$model/$case/run.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
peaks = [p["peak_rss_bytes"] / 2**20 for p in r["parts"]]
secs = [p["seconds"] for p in r["parts"]]
print(f"{r['tiles']} tiles x {r['views_per_tile']} views in {len(peaks)} parts: "
      f"part peak RSS max {max(peaks):.0f} MiB, part seconds max {max(secs):.1f}, sum {sum(secs):.1f}; "
      f"gather {r['gather_seconds']:.1f} s, peak {r['gather_peak_rss_bytes'] / 2**20:.0f} MiB; "
      f"{r['gb_seconds']:.0f} GB-s, ${r['usd']:.4f} at {r['function_memory_mb']:.0f} MB")
PY
measure metrics $bin bench stage metrics --bucket "$work/bucket" --case "$case" --model "$model"
$bin bench ensemble-data --size xlarge --members 9 --out "$work/ens" >/dev/null
members=$(ls -d "$work"/ens/member_* | tr '\n' ' ')
measure "ensemble of 9" $bin ensemble $members --out "$work/ens/out"
