#!/usr/bin/env python3
"""Writes the NIfTI interoperability fixtures with nibabel (the reference reader/writer).

Usage: python tools/make_nifti_fixtures.py [OUT_DIR]   (default shared/volume/tests/fixtures)

Each good file gets an entry in expected.json: nibabel's own view of it (shape, dtype, affine,
pixdim, scl_slope/scl_inter and the real-valued voxels via get_fdata, flattened in (z, y, x) order,
i.e. the NIfTI array transposed by (2, 1, 0)). Bad files are listed with the error kind we expect.
Requires numpy and nibabel (see tools/requirements-test.txt).
"""
import json
import os
import struct
import sys

import nibabel as nib
import numpy as np

OUT = sys.argv[1] if len(sys.argv) > 1 else "shared/volume/tests/fixtures"
os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(20261127)
expected = {"good": {}, "bad": {}}


def oblique_affine():
    ang = np.deg2rad([12.0, -7.0, 25.0])
    rx = np.array([[1, 0, 0], [0, np.cos(ang[0]), -np.sin(ang[0])], [0, np.sin(ang[0]), np.cos(ang[0])]])
    ry = np.array([[np.cos(ang[1]), 0, np.sin(ang[1])], [0, 1, 0], [-np.sin(ang[1]), 0, np.cos(ang[1])]])
    rz = np.array([[np.cos(ang[2]), -np.sin(ang[2]), 0], [np.sin(ang[2]), np.cos(ang[2]), 0], [0, 0, 1]])
    a = np.eye(4)
    a[:3, :3] = rz @ ry @ rx @ np.diag([0.7, 0.85, 2.5])
    a[:3, 3] = [-120.5, 33.25, -410.0]
    return a


def save(name, img):
    path = os.path.join(OUT, name)
    nib.save(img, path)
    back = nib.load(path)
    hdr = back.header
    data = back.get_fdata(dtype=np.float64)
    data = data.reshape(data.shape[:3])  # trailing singleton axes
    # a loaded image keeps scl_slope/scl_inter on its array proxy (the header copy is reset)
    slope, inter = float(back.dataobj.slope), float(back.dataobj.inter)
    expected["good"][name] = {
        "shape_zyx": list(data.shape[::-1]),
        "dtype": str(hdr.get_data_dtype().newbyteorder("=")),
        "affine": back.affine.tolist(),
        "pixdim": [float(v) for v in hdr["pixdim"]],
        "qform_code": int(hdr["qform_code"]),
        "sform_code": int(hdr["sform_code"]),
        "scl_slope": slope,
        "scl_inter": inter,
        "values_zyx": np.transpose(data, (2, 1, 0)).ravel().tolist(),
    }


def affine_img(cls, data, affine, dtype):
    img = cls(data.astype(dtype), affine)
    img.set_data_dtype(dtype)
    img.header.set_xyzt_units("mm", "sec")
    return img


shape = (7, 6, 5)  # i, j, k
labels = rng.integers(0, 4, size=shape).astype(np.uint8)
ct = rng.integers(-1024, 1500, size=shape).astype(np.int16)
real = rng.normal(0.0, 100.0, size=shape).astype(np.float32)
aligned = np.diag([0.8, 0.8, 2.5, 1.0])
aligned[:3, 3] = [-100.0, -90.0, 50.0]

save("labels_u8.nii", affine_img(nib.Nifti1Image, labels, aligned, np.uint8))
save("labels_u8.nii.gz", affine_img(nib.Nifti1Image, labels, aligned, np.uint8))
save("ct_i16.nii.gz", affine_img(nib.Nifti1Image, ct, aligned, np.int16))
save("real_f32_oblique.nii.gz", affine_img(nib.Nifti1Image, real, oblique_affine(), np.float32))
save("real_f32_oblique.nii", affine_img(nib.Nifti1Image, real, oblique_affine(), np.float32))

# Scaled integers: stored ints * slope + inter (what scanners and our probability maps use).
scaled = nib.Nifti1Image(ct.astype(np.int16), aligned)
scaled.header.set_data_dtype(np.int16)
scaled.header.set_slope_inter(0.5, -1024.0)
scaled.set_qform(aligned, code=1)
save("scaled_i16.nii.gz", scaled)

prob = rng.integers(0, 65536, size=shape).astype(np.uint16)
p = nib.Nifti1Image(prob, oblique_affine())
p.header.set_data_dtype(np.uint16)
p.header.set_slope_inter(1.0 / 65535.0, 0.0)
save("prob_u16_scaled.nii", p)

# Big-endian storage exercises byte swapping.
be = nib.Nifti1Image(ct.astype(">i2"), aligned)
be.header.set_data_dtype(np.dtype(">i2"))
save("ct_i16_bigendian.nii", be)

# A 4-D header whose fourth axis is 1 is a 3-D volume.
save("singleton_4d.nii.gz", affine_img(nib.Nifti1Image, labels[..., None], aligned, np.uint8))

# qform only (sform code 0), oblique: the affine must come from the quaternion.
q = nib.Nifti1Image(real, None)
q.set_qform(oblique_affine(), code=1)
q.set_sform(None, code=0)
q.set_data_dtype(np.float32)
save("qform_only_f32.nii", q)


def bad(name, kind, content):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(content)
    expected["bad"][name] = kind


with open(os.path.join(OUT, "ct_i16.nii.gz"), "rb") as f:
    gz = f.read()
bad("truncated.nii.gz", "Truncated", gz[: len(gz) // 2])
bad("random_bytes.nii.gz", "NotNifti", rng.integers(0, 256, 2000, dtype=np.uint8).tobytes())
bad("random_bytes.nii", "NotNifti", rng.integers(0, 256, 2000, dtype=np.uint8).tobytes())
bad("tiny.nii", "NotNifti", b"hello")
img4 = affine_img(nib.Nifti1Image, np.zeros((4, 3, 2, 2), np.uint8), aligned, np.uint8)
nib.save(img4, os.path.join(OUT, "four_d.nii.gz"))
expected["bad"]["four_d.nii.gz"] = "NotThreeDimensional"
nan = real.copy()
nan[1, 2, 3] = np.nan
nan[0, 0, 0] = np.inf
nib.save(affine_img(nib.Nifti1Image, nan, aligned, np.float32), os.path.join(OUT, "nan_f32.nii"))
expected["bad"]["nan_f32.nii"] = "NonFinite"
c64 = nib.Nifti1Image(real.astype(np.complex64), aligned)
nib.save(c64, os.path.join(OUT, "complex64.nii"))
expected["bad"]["complex64.nii"] = "UnsupportedDatatype"

# headers that would size or scale work wrongly: patched bytes of a valid single-file NIfTI
# (dim int16[8] at byte 40, pixdim float32[8] at 76, scl_slope at 112, xyzt_units at 123)
with open(os.path.join(OUT, "labels_u8.nii"), "rb") as f:
    valid = f.read()


def patched(name, offset, fmt, value):
    b = bytearray(valid)
    struct.pack_into("<" + fmt, b, offset, value)
    bad(name, "InvalidHeader", bytes(b))


patched("pixdim_zero.nii", 76 + 4, "f", 0.0)
patched("pixdim_nan.nii", 76 + 8, "f", float("nan"))
patched("pixdim_negative.nii", 76 + 12, "f", -1.5)
patched("pixdim_implausible.nii", 76 + 4, "f", 1e6)
patched("units_metres.nii", 123, "B", 1 | 8)
patched("units_micrometres.nii", 123, "B", 3 | 8)
patched("units_invalid.nii", 123, "B", 5)
patched("dim_negative.nii", 40 + 4, "h", -3)
patched("scl_slope_infinite.nii", 112, "f", float("inf"))

with open(os.path.join(OUT, "expected.json"), "w") as f:
    json.dump(expected, f, indent=1, sort_keys=True)
print(f"wrote {len(expected['good'])} good and {len(expected['bad'])} bad fixtures to {OUT}")
