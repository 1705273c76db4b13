#!/usr/bin/env python3
"""Which storage type for probability maps? Scores one case with its float32 maps and with the
same maps quantised to uint16 (scl_slope 1/65535) and uint8 (scl_slope 1/255), as nibabel writes
them, and prints, per type, the file size, the scoring time and every metric CSV column that moved
by more than 1e-4.

DESIGN.md section 4 allows no metric to move by more than 1e-4.

    statapp bench metrics-data --size xlarge --out DIR   # a case with prob_*.nii.gz (float32)
    python3 tools/prob_storage.py DIR/incoming/<case> [--statapp target/release/statapp]
"""

import argparse
import csv
import io
import math
import os
import subprocess
import sys
import tempfile
import time

import nibabel as nib
import numpy as np

MAPS = ["prob_panc", "prob_kidn", "prob_livr"]
TYPES = {"uint16": (np.uint16, 65535), "uint8": (np.uint8, 255)}


def quantise(src, dst, dtype, levels):
    img = nib.load(src)
    p = np.asarray(img.dataobj, dtype=np.float32)
    q = np.rint(np.clip(p, 0.0, 1.0) * levels).astype(dtype)
    out = nib.Nifti1Image(q, img.affine, img.header)
    out.set_data_dtype(dtype)
    out.header.set_slope_inter(1.0 / levels, 0.0)
    nib.save(out, dst)


def score(statapp, case, maps):
    cmd = [statapp, "metrics", "case"]
    for k in (1, 2, 3):
        cmd += ["--annotation", os.path.join(case, f"annotation_{k}.nii.gz")]
    cmd += ["--probabilities", *maps, "--format", "csv"]
    t = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    header, row = list(csv.reader(io.StringIO(out)))[:2]
    values = {}
    for name, cell in zip(header, row):
        try:
            values[name] = float(cell) if cell else math.nan
        except ValueError:
            pass  # Patient_ID, CT
    return values, time.perf_counter() - t


def changes(ref, new):
    """(column, absolute change, relative change) of every CSV column that moved, largest first."""
    out = []
    for name, r in ref.items():
        v = new[name]
        if (math.isnan(r) and math.isnan(v)) or r == v:
            continue
        d = abs(v - r) if math.isfinite(r) and math.isfinite(v) else math.inf
        out.append((name, d, d / max(abs(r), 1e-12)))
    return sorted(out, key=lambda c: -c[1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("case")
    ap.add_argument("--statapp", default="target/release/statapp")
    args = ap.parse_args()
    f32 = [os.path.join(args.case, f"{m}.nii.gz") for m in MAPS]
    ref, secs = score(args.statapp, args.case, f32)
    size = sum(os.path.getsize(p) for p in f32)
    print(f"{'type':<8} {'MB':>8} {'score s':>8}  metric CSV columns that moved")
    print(f"{'float32':<8} {size / 1e6:>8.1f} {secs:>8.1f}  (reference)")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (dtype, levels) in TYPES.items():
            maps = [os.path.join(tmp, f"{m}_{name}.nii.gz") for m in MAPS]
            for s, d in zip(f32, maps):
                quantise(s, d, dtype, levels)
            doc, secs = score(args.statapp, args.case, maps)
            moved = changes(ref, doc)
            size = sum(os.path.getsize(p) for p in maps)
            over = [c for c in moved if c[1] > 1e-4]
            print(f"{name:<8} {size / 1e6:>8.1f} {secs:>8.1f}  {len(moved)} columns moved, "
                  f"{len(over)} by more than 1e-4")
            for col, d, rel in over[:8]:
                print(f"{'':<28}{col}: {ref[col]:.6g} -> {doc[col]:.6g} (abs {d:.3g}, rel {rel:.3g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
