#!/usr/bin/env python3
"""nnU-Net v2 reference values for the Rust nnU-Net core (shared/nnunet), from nnunetv2 itself.

Usage: python tools/nnunet_reference.py sliding OUT.json
  tile start positions (compute_steps_for_sliding_window) for several image/tile/step sizes and the
  Gaussian importance maps (compute_gaussian, float16) of small tiles in full, of a 128^3 tile by
  summary.

Requires nnunetv2 (PyPI, with CPU torch); not installed by CI: the output is a committed fixture.
"""
import json
import sys

import numpy as np
import torch
from nnunetv2.inference.sliding_window_prediction import compute_gaussian, compute_steps_for_sliding_window


def main():
    out = {"steps": [], "gaussians": []}
    rng = np.random.default_rng(7)
    cases = [((110, 64, 64), (64, 64, 64), 0.5), ((97, 200, 333), (64, 128, 128), 0.5),
             ((40, 96, 96), (32, 64, 64), 0.5), ((300, 512, 512), (80, 160, 160), 0.5),
             ((70, 70, 70), (64, 64, 64), 0.25), ((65, 129, 257), (64, 128, 256), 1.0)]
    for _ in range(20):
        tile = tuple(int(t) for t in rng.integers(8, 160, 3))
        image = tuple(int(t + rng.integers(0, 400)) for t in tile)
        cases.append((image, tile, float(rng.choice([0.25, 0.5, 0.75, 1.0]))))
    for image, tile, step in cases:
        s = compute_steps_for_sliding_window(image, tile, step)
        out["steps"].append({"image": image, "tile": tile, "step": step, "starts": [list(map(int, a)) for a in s]})
    for tile in [(8, 16, 16), (20, 24, 28), (5, 9, 13)]:
        g = compute_gaussian(tile, 1. / 8, 1, dtype=torch.float16, device=torch.device("cpu"))
        out["gaussians"].append({"tile": tile, "values": g.float().numpy().ravel().tolist()})
    g = compute_gaussian((128, 128, 128), 1. / 8, 1, dtype=torch.float16, device=torch.device("cpu")).float().numpy()
    out["gaussian_128"] = {"sum": float(g.astype(np.float64).sum()), "min": float(g.min()),
                           "center": float(g[64, 64, 64]), "corner": float(g[0, 0, 0]),
                           "samples": [[i, j, k, float(g[i, j, k])] for i, j, k in
                                       [(0, 64, 64), (10, 20, 30), (64, 0, 127), (100, 90, 80), (127, 127, 127)]]}
    with open(sys.argv[2], "w") as f:
        json.dump(out, f)


if __name__ == "__main__" and sys.argv[1] == "sliding":
    main()
