#!/usr/bin/env bash
# Import and per-tile speed of a CURVAS-topology 3d_fullres nnU-Net model (../shared/curvas plans:
# 6 stages, 32-320 features, patch 192 x 112 x 112; seeded random weights), statapp beside
# PyTorch on the same machine and thread count. Not run by CI.
#   STATAPP_NNUNET_PYTHON  a python with nnunetv2 (pip install nnunetv2==2.8.1)
#   STATAPP_BIN            the statapp binary [target/release/statapp]
#   REPEATS                tiles timed per setting [3]
set -euo pipefail
cd "$(dirname "$0")/.."
py=${STATAPP_NNUNET_PYTHON:?set STATAPP_NNUNET_PYTHON to a python with nnunetv2}
bin=${STATAPP_BIN:-target/release/statapp}
repeats=${REPEATS:-3}
plans=${CURVAS_PLANS:-../shared/curvas}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 RAYON_NUM_THREADS=2
folder="$work/nnUNetTrainer__nnUNetPlans__3d_fullres"
"$py" tools/nnunet_model_reference.py curvas-model "$plans" "$folder"
ls -l "$folder/fold_all/checkpoint_final.pth"
echo "== statapp import-model"
/usr/bin/time -f "import: %e s wall, %M KB peak" "$bin" import-model "$folder" --id curvas --out "$work/models"
for m in off on; do
  echo "== mirroring $m"
  "$bin" bench tile --model "$work/models/curvas" --mirroring "$m" --repeats "$repeats"
  "$py" -c "import torch; torch.set_num_threads(2); import runpy, sys; sys.argv=['x','bench-tile','$folder','$m','$repeats']; runpy.run_path('tools/nnunet_model_reference.py', run_name='__main__')"
done
