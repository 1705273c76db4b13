#!/usr/bin/env python3
"""Checks that nibabel reads the files statapp wrote exactly as statapp meant them.

Usage: python tools/check_nibabel_read.py DIR
DIR/manifest.json (written by the Rust test `nibabel_interop`) lists, per file: the real-valued
voxels in (z, y, x) order, the affine, pixdim[0..4] and the stored dtype. Exits non-zero on the
first difference, printing it.
"""
import json
import os
import sys

import nibabel as nib
import numpy as np

root = sys.argv[1]
with open(os.path.join(root, "manifest.json")) as f:
    manifest = json.load(f)
failures = []
for name, want in manifest.items():
    img = nib.load(os.path.join(root, name))
    data = np.transpose(img.get_fdata(dtype=np.float64), (2, 1, 0))
    checks = {
        "shape": list(data.shape) == want["shape_zyx"],
        "dtype": str(img.header.get_data_dtype()) == want["dtype"],
        # values are exact: f32 data, or integers scaled by an f32 slope (computed in f64 by both)
        "values": np.array_equal(data.ravel().astype(np.float32), np.asarray(want["values_zyx"], np.float32)),
        "affine": np.allclose(img.affine, np.asarray(want["affine"]), rtol=0, atol=1e-5),
        "pixdim": np.array_equal(img.header["pixdim"][:4], np.asarray(want["pixdim"], np.float32)),
        "codes": (int(img.header["qform_code"]), int(img.header["sform_code"])) == tuple(want["codes"]),
    }
    bad = [k for k, ok in checks.items() if not ok]
    if bad:
        failures.append(f"{name}: {', '.join(bad)} differ (nibabel affine {img.affine.tolist()})")
    else:
        print(f"ok {name}")
if failures:
    print("\n".join(failures), file=sys.stderr)
    sys.exit(1)
