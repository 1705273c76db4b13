#!/usr/bin/env bash
# Peak memory and wall time of the ingest, infer and metrics handlers on a `large` phantom
# (300 x 512 x 512), each in its own process, on a directory bucket (release build, 2 cores).
# The model is a tiny 3d_cpu network trained for 2 steps on small phantoms: what is measured is
# the handlers' data path (decode, resample, sliding window, export, metrics), not accuracy.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p statapp-cli
bin=target/release/statapp
work=${WORK:-$(mktemp -d)}
echo "work: $work"
$bin synth --cases 2 --size small --seed 3 --out "$work/raw" >/dev/null
ls "$work/raw/incoming" >/dev/null
$bin prepare "$work/raw" --out "$work/prep" --annotator 1 --cases all >/dev/null
$bin train --data "$work/prep" --out "$work/models" --annotator 1 --seed 1 --fold all \
  --configuration 3d_cpu --epochs 1 --iterations 2 --val-iterations 1 >/dev/null
model=anno1_init1_foldall
$bin synth --cases 1 --size large --seed 9 --out "$work/bucket" >/dev/null
case=$(ls "$work/bucket/incoming")
mkdir -p "$work/bucket/models" && cp -r "$work/models/$model" "$work/bucket/models/"
for stage in ingest infer metrics; do
  /usr/bin/time -f "$stage: %e s wall, %M KiB max RSS" \
    $bin bench stage "$stage" --bucket "$work/bucket" --case "$case" --model "$model"
done
