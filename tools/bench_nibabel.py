#!/usr/bin/env python3
"""nibabel side of the NIfTI benchmark: read a file fully into memory, write it back.

Usage: python tools/bench_nibabel.py IN.nii.gz OUT.nii.gz
Prints wall times and the peak resident memory of this process (like `statapp bench nifti`).
"""
import resource
import sys
import time

import nibabel as nib
import numpy as np

src, dst = sys.argv[1], sys.argv[2]
t = time.perf_counter()
img = nib.load(src)
data = np.asarray(img.dataobj)  # stored type, like statapp's reader
print(f"{'read ' + str(data.dtype) + ' ' + str(data.shape[::-1]):<28} {time.perf_counter() - t:>8.2f} s")
t = time.perf_counter()
out = nib.Nifti1Image(data, img.affine, img.header)
nib.save(out, dst)
print(f"{'write':<28} {time.perf_counter() - t:>8.2f} s")
print(f"{'peak RSS':<28} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:>8.0f} MiB")
