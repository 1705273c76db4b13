#!/usr/bin/env python3
"""Writes the hostile-upload corpus: small cases, each a valid case with one thing wrong.

Usage: python tools/make_hostile_corpus.py [OUT_DIR]   (default tests/fixtures/hostile)

A valid case (a CT-like int16 image and three uint8 annotations, written with nibabel) is the
starting point; every other case copies it and breaks one file in one way: bytes cut short,
header fields patched to values the NIfTI-1 standard forbids or that would size, scale or place
work absurdly, gzip streams that decompress far past what the header promises, contents that are
not a CT or not a label map, and annotations on another grid. Each case directory holds the files
exactly as they are uploaded (`incoming/<case>/<file>`); expected.json names the error kind, the
file at fault and the header field where there is one (`null` for cases that must be accepted).
The rules these cases test come from nifti1.h and from what nibabel reads, not from this corpus.
Requires numpy and nibabel (see tools/requirements-test.txt).
"""
import gzip
import json
import os
import shutil
import struct
import sys

import nibabel as nib
import numpy as np

OUT = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/hostile"
rng = np.random.default_rng(20261204)
SHAPE = (20, 18, 10)  # i, j, k
AFFINE = np.diag([0.8, 0.8, 2.5, 1.0])
AFFINE[:3, 3] = [-100.0, -90.0, 50.0]
ANNOTATIONS = ["annotation_1.nii.gz", "annotation_2.nii.gz", "annotation_3.nii.gz"]
expected = {}


def nifti(data, dtype, affine=AFFINE):
    img = nib.Nifti1Image(data.astype(dtype), affine)
    img.set_data_dtype(dtype)
    img.header.set_xyzt_units("mm", "sec")
    return img


def raw(img):
    """Single-file NIfTI bytes, uncompressed."""
    return img.to_bytes()


def gz(b):
    return gzip.compress(b, compresslevel=6, mtime=0)


def base_labels(shift):
    lab = np.zeros(SHAPE, np.uint8)
    lab[3 + shift:8 + shift, 4:9, 2:5] = 1  # pancreas
    lab[11:16, 3:8, 3:7] = 2  # kidney
    lab[4:12, 10:16, 5:9] = 3  # liver
    return lab


CT = rng.integers(-1000, 400, size=SHAPE).astype(np.int16)
LABELS = [base_labels(s) for s in (0, 1, 0)]
VALID = {"image.nii.gz": gz(raw(nifti(CT, np.int16)))}
for name, lab in zip(ANNOTATIONS, LABELS):
    VALID[name] = gz(raw(nifti(lab, np.uint8)))


def case(name, kind, file, field=None, replace=None, extra=None, drop=()):
    """A case: the valid files, with `replace` {file: bytes} substituted, `extra` added and
    `drop` left out."""
    files = {k: v for k, v in VALID.items() if k not in drop}
    files.update(replace or {})
    files.update(extra or {})
    d = os.path.join(OUT, name)
    os.makedirs(d)
    for f, b in files.items():
        with open(os.path.join(d, f), "wb") as fh:
            fh.write(b)
    expected[name] = {"kind": kind, "file": file, "field": field}


def patched(img_bytes, *patches):
    """Uncompressed NIfTI bytes with struct fields overwritten: (offset, format, *values)."""
    b = bytearray(img_bytes)
    for offset, fmt, *values in patches:
        struct.pack_into("<" + fmt, b, offset, *values)
    return bytes(b)


# header offsets (nifti1.h): dim int16[8] @40, datatype @70, bitpix @72, pixdim float[8] @76,
# vox_offset @108, scl_slope @112, scl_inter @116, xyzt_units @123, qform_code @252,
# sform_code @254, quatern_b @256, qoffset_x @268, srow_x @280, srow_y @296, magic @344
IMG = raw(nifti(CT, np.int16))


def image_case(name, kind, field, *patches):
    case(name, kind, "image.nii.gz", field, {"image.nii.gz": gz(patched(IMG, *patches))})


shutil.rmtree(OUT, ignore_errors=True)
os.makedirs(OUT)

# accepted: controls that run beside the hostile cases and must finish normally
case("valid", None, None)
case("valid_uncompressed", None, None, drop=["image.nii.gz"], extra={"image.nii": IMG})
case("valid_gz_named_nii", None, None, drop=["image.nii.gz"], extra={"image.nii": gz(IMG)})
case("valid_singleton_4d", None, None,
     replace={"image.nii.gz": gz(raw(nifti(CT[..., None], np.int16)))})
case("valid_float_labels", None, None,
     replace={"annotation_2.nii.gz": gz(raw(nifti(LABELS[1], np.float32)))})
case("valid_slope_zero", None, None,
     replace={"image.nii.gz": gz(patched(IMG, (112, "f", 0.0)))})
be = nib.Nifti1Image(CT.astype(">i2"), AFFINE)
be.set_data_dtype(np.dtype(">i2"))
be.header.set_xyzt_units("mm", "sec")
case("valid_big_endian", None, None, replace={"image.nii.gz": gz(raw(be))})

# not NIfTI at all, or cut short
case("empty_file", "NotNifti", "image.nii.gz", replace={"image.nii.gz": b""})
case("tiny_file", "NotNifti", "image.nii.gz", replace={"image.nii.gz": b"hello"})
case("random_bytes", "NotNifti", "image.nii.gz",
     replace={"image.nii.gz": rng.integers(0, 256, 4000, dtype=np.uint8).tobytes()})
case("gzip_of_garbage", "NotNifti", "image.nii.gz",
     replace={"image.nii.gz": gz(rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())})
case("gzip_cut_short", "Truncated", "image.nii.gz",
     replace={"image.nii.gz": VALID["image.nii.gz"][: len(VALID["image.nii.gz"]) // 2]})
case("raw_cut_short", "Truncated", "image.nii", drop=["image.nii.gz"],
     extra={"image.nii": IMG[: len(IMG) - 1000]})
case("gzip_corrupt_crc", "Truncated", "image.nii.gz",
     replace={"image.nii.gz": VALID["image.nii.gz"][:-8] + b"\0\0\0\0" + VALID["image.nii.gz"][-4:]})
image_case("hdr_img_pair", "NotNifti", None, (344, "4s", b"ni1\0"))
image_case("sizeof_hdr_wrong", "NotNifti", None, (0, "i", 540))

# dimensions
case("real_4d", "NotThreeDimensional", "image.nii.gz", "dim",
     {"image.nii.gz": gz(raw(nifti(np.stack([CT, CT], axis=-1), np.int16)))})
image_case("dim_negative", "InvalidHeader", "dim[1]", (42, "h", -20))
image_case("dim_count_zero", "InvalidHeader", "dim[0]", (40, "h", 0))
image_case("dim_zero_length", "InvalidHeader", "dim", (44, "h", 0))
image_case("axis_too_long", "InvalidHeader", "dim[1]", (40, "8h", 3, 30000, 1, 1, 1, 1, 1, 1))
image_case("too_many_voxels", "TooLarge", "dim", (40, "8h", 3, 8000, 8000, 8000, 1, 1, 1, 1))

# datatypes
image_case("datatype_complex", "UnsupportedDatatype", "datatype", (70, "hh", 32, 64))
image_case("datatype_rgb", "UnsupportedDatatype", "datatype", (70, "hh", 128, 24))
image_case("datatype_unknown", "UnsupportedDatatype", "datatype", (70, "hh", 77, 16))

# voxel size, units, scaling, offset, orientation
image_case("pixdim_zero", "InvalidHeader", "pixdim[1]", (80, "f", 0.0))
image_case("pixdim_nan", "InvalidHeader", "pixdim[2]", (84, "f", float("nan")))
image_case("pixdim_negative", "InvalidHeader", "pixdim[3]", (88, "f", -2.5))
image_case("pixdim_implausible", "InvalidHeader", "pixdim[1]", (80, "f", 1e6))
image_case("units_metres", "InvalidHeader", "xyzt_units", (123, "B", 1 | 8))
image_case("units_micrometres", "InvalidHeader", "xyzt_units", (123, "B", 3 | 8))
image_case("units_unknown", "InvalidHeader", "xyzt_units", (123, "B", 6))
image_case("scl_slope_infinite", "InvalidHeader", "scl_slope", (112, "f", float("inf")))
image_case("scl_inter_infinite", "InvalidHeader", "scl_inter", (116, "f", float("-inf")))
image_case("vox_offset_inside_header", "InvalidHeader", "vox_offset", (108, "f", 100.0))
image_case("vox_offset_past_end", "Truncated", None, (108, "f", 1e6))
image_case("vox_offset_huge", "InvalidHeader", "vox_offset", (108, "f", 3e9))
image_case("sform_singular", "InvalidHeader", "srow_x",
           (254, "h", 1), (280, "4f", 0, 0, 0, 0), (296, "4f", 0, 0, 0, 0), (312, "4f", 0, 0, 0, 0))
image_case("sform_not_finite", "InvalidHeader", "srow_y", (254, "h", 1), (296, "f", float("nan")))
image_case("quaternion_not_rotation", "InvalidHeader", "quatern_b",
           (252, "h", 1), (254, "h", 0), (256, "3f", 2.0, 0.0, 0.0))
image_case("qoffset_not_finite", "InvalidHeader", "qoffset_x",
           (252, "h", 1), (254, "h", 0), (268, "f", float("inf")))

# decompression bombs: headers that promise more than the budget, and streams that decompress
# far past what the header promises (both are a few hundred kB on disk)
bomb_header = patched(IMG[:352], (40, "8h", 3, 1200, 1000, 500, 1, 1, 1, 1), (70, "hh", 64, 64))
case("bomb_over_budget", "OverBudget", "image.nii.gz", "dim",
     {"image.nii.gz": gz(bomb_header + bytes(64 << 20))})
case("bomb_trailing_data", "TrailingData", "image.nii.gz",
     replace={"image.nii.gz": gz(IMG + bytes(256 << 20))})

# contents
nan = CT.astype(np.float32)
nan[2, 3, 4] = np.nan
case("intensity_nan", "NonFinite", "image.nii.gz",
     replace={"image.nii.gz": gz(raw(nifti(nan, np.float32)))})
inf = CT.astype(np.float32)
inf[0, 0, 0] = np.inf
case("intensity_inf", "NonFinite", "image.nii.gz",
     replace={"image.nii.gz": gz(raw(nifti(inf, np.float32)))})
case("constant_image", "ConstantImage", "image.nii.gz",
     replace={"image.nii.gz": gz(raw(nifti(np.full(SHAPE, -1000), np.int16)))})
frac = LABELS[0].astype(np.float32)
frac[4, 5, 3] = 1.5
case("label_fractional", "InvalidLabel", "annotation_1.nii.gz",
     replace={"annotation_1.nii.gz": gz(raw(nifti(frac, np.float32)))})
neg = LABELS[1].astype(np.int16)
neg[0, 0, 0] = -1
case("label_negative", "InvalidLabel", "annotation_2.nii.gz",
     replace={"annotation_2.nii.gz": gz(raw(nifti(neg, np.int16)))})
four = LABELS[2].copy()
four[1, 1, 1] = 4
case("label_outside_dataset", "InvalidLabel", "annotation_3.nii.gz",
     replace={"annotation_3.nii.gz": gz(raw(nifti(four, np.uint8)))})
# nibabel's writer picks its own scaling: the slope is patched in afterwards
scaled = patched(raw(nifti(LABELS[0].astype(np.int16) * 2 + 1, np.int16)), (112, "f", 0.5), (116, "f", 0.0))
case("label_scaled_fractional", "InvalidLabel", "annotation_1.nii.gz",
     replace={"annotation_1.nii.gz": gz(scaled)})
lnan = LABELS[1].astype(np.float32)
lnan[2, 2, 2] = np.nan
case("label_nan", "NonFinite", "annotation_2.nii.gz",
     replace={"annotation_2.nii.gz": gz(raw(nifti(lnan, np.float32)))})
case("annotation_empty", "EmptyAnnotation", "annotation_2.nii.gz",
     replace={"annotation_2.nii.gz": gz(raw(nifti(np.zeros(SHAPE), np.uint8)))})
case("annotation_other_shape", "GeometryMismatch", "annotation_3.nii.gz",
     replace={"annotation_3.nii.gz": gz(raw(nifti(LABELS[2][:, :, :-1], np.uint8)))})
moved = AFFINE.copy()
moved[:3, 3] += [5.0, 0.0, 0.0]
case("annotation_other_origin", "GeometryMismatch", "annotation_1.nii.gz",
     replace={"annotation_1.nii.gz": gz(raw(nifti(LABELS[0], np.uint8, moved)))})
case("annotation_cut_short", "Truncated", "annotation_2.nii.gz",
     replace={"annotation_2.nii.gz": VALID["annotation_2.nii.gz"][:-20]})
case("gzip_trailer_cut", "Truncated", "annotation_3.nii.gz",
     replace={"annotation_3.nii.gz": VALID["annotation_3.nii.gz"][:-3]})

# layout
case("unexpected_file", "UnexpectedFile", "notes.txt", drop=ANNOTATIONS,
     extra={"notes.txt": b"segmented by hand\n"})

with open(os.path.join(OUT, "expected.json"), "w") as f:
    json.dump(expected, f, indent=1, sort_keys=True)
kinds = {v["kind"] for v in expected.values() if v["kind"]}
hostile = sum(1 for v in expected.values() if v["kind"])
print(f"wrote {len(expected)} cases ({hostile} hostile, {len(kinds)} error kinds) to {OUT}")
