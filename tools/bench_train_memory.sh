#!/usr/bin/env bash
# Training memory against the number of training cases (issue 14): 10 and 40 small phantoms
# prepared, one short training run on each (fold all), peak RSS from GNU time. Cases are unpacked
# once and read a patch's box at a time, so the peak should not grow with the cases.
# Usage: tools/bench_train_memory.sh [3d_cpu|3d_fullres] [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-3d_cpu}
work=${2:-$(mktemp -d)}
cargo build --release -q -p statapp-cli
bin=$PWD/target/release/statapp
"$bin" synth --cases 40 --size small --seed 7 --out "$work/raw40" > /dev/null
mkdir -p "$work/raw10/incoming"
for i in $(seq -f "%03g" 0 9); do cp -r "$work/raw40/incoming/case_$i" "$work/raw10/incoming/"; done
for n in 10 40; do
  "$bin" prepare "$work/raw$n" --out "$work/prep$n" --cpu-patch 16 32 32 > /dev/null
  for run in first again; do
    rm -rf "$work/models"
    /usr/bin/time -f "$n cases, $config, $run run (unpacks when first): %e s, peak RSS %M KiB" \
      "$bin" train --data "$work/prep$n" --out "$work/models" --configuration "$config" \
      --epochs 1 --iterations 2 --val-iterations 1 --no-final-validation > /dev/null
  done
done
echo "work in $work"
