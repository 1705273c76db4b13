#!/usr/bin/env bash
# GPU training benchmark (issue 14): a fixed number of 3d_fullres training steps of the original's
# CURVAS plan (../shared/curvas: patch 192 x 112 x 112, batch 2, 6 stages, 32-320 features) with the
# CUDA worker (`statapp-gpu-trainer --bench-steps`, burn, float32) and with the same network,
# loss and optimizer in PyTorch (nnunetv2's classes; float32, then nnU-Net's default AMP) on the
# same GPU, one after the other. Prints ms per step (median after the first) and the peak GPU
# memory of each run, sampled with nvidia-smi every 100 ms (and PyTorch's own allocator peak).
# Not run by CI (no GPU there).
#   STATAPP_TRAINER        the CUDA worker [target/release/statapp-gpu-trainer, as
#                          gpu-trainer/build-cuda.sh builds it]
#   STATAPP_NNUNET_PYTHON  a python with torch (CUDA) and nnunetv2 2.8.1
#   STEPS                  training steps per run [20]
#   DEVICE                 cuda (default) or cpu (a dry run of the script)
#   CURVAS_PLANS           folder with nnUNetPlans.json [../shared/curvas]
set -euo pipefail
cd "$(dirname "$0")/.."
trainer=${STATAPP_TRAINER:-target/release/statapp-gpu-trainer}
py=${STATAPP_NNUNET_PYTHON:?set STATAPP_NNUNET_PYTHON to a python with torch and nnunetv2}
steps=${STEPS:-20}
device=${DEVICE:-cuda}
plans=${CURVAS_PLANS:-../shared/curvas}
work=$(mktemp -d)
trap 'kill "$sampler" 2>/dev/null || true; rm -rf "$work"' EXIT
sampler=

# runs "$@" while sampling the GPU's used memory; prints the command's last line (its summary)
# and the peak
run() {
  local log="$work/smi.csv" out="$work/out.txt"
  if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$log" &
    sampler=$!
  fi
  "$@" > "$out"
  tail -1 "$out"
  if [ -n "$sampler" ]; then
    kill "$sampler"; wait "$sampler" 2>/dev/null || true; sampler=
    echo "peak GPU memory used (nvidia-smi): $(sort -n "$log" | tail -1) MiB"
  fi
}

if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
fi
echo "== statapp-gpu-trainer ($device, float32)"
run "$trainer" --device "$device" --bench-steps "$steps" --plans "$plans/nnUNetPlans.json" \
  --configuration 3d_fullres
for precision in f32 amp; do
  echo "== PyTorch nnU-Net ($device, $precision)"
  run "$py" tools/nnunet_model_reference.py bench-train "$plans" "$device" "$steps" "$precision"
done
