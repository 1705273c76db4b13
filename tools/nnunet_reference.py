#!/usr/bin/env python3
"""nnU-Net v2 reference values for the Rust nnU-Net core (shared/nnunet), from nnunetv2 itself.

Usage: python tools/nnunet_reference.py sliding OUT.json
       python tools/nnunet_reference.py plans OUT.json   (3d_fullres plans for several fingerprints)
       python tools/nnunet_reference.py dataset PREPROCESSED_DATASET_DIR OUT_DIR   (see dataset())
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


def plans(out_path):
    """3d_fullres plans of nnU-Net's default ExperimentPlanner for several dataset fingerprints
    (spacings and shapes after crop), without data on disk: the planner object is built by hand."""
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    def planner(fp, num_training, labels=4):
        p = ExperimentPlanner.__new__(ExperimentPlanner)
        p.dataset_name = "Dataset475_CURVAS"
        p.suppress_transpose = False
        p.dataset_json = {"channel_names": {"0": "CT"}, "labels": {str(i): i for i in range(labels)},
                          "numTraining": num_training, "file_ending": ".nii.gz"}
        p.dataset_fingerprint = fp
        p.anisotropy_threshold = 3
        p.UNet_base_num_features = 32
        p.UNet_class = PlainConvUNet
        p.UNet_reference_val_3d = 560000000
        p.UNet_reference_val_2d = 85000000
        p.UNet_reference_com_nfeatures = 32
        p.UNet_reference_val_corresp_GB = 8
        p.UNet_reference_val_corresp_bs_2d = 12
        p.UNet_reference_val_corresp_bs_3d = 2
        p.UNet_featuremap_min_edge_length = 4
        p.UNet_blocks_per_stage_encoder = (2,) * 14
        p.UNet_blocks_per_stage_decoder = (2,) * 13
        p.UNet_min_batch_size = 2
        p.UNet_max_features_2d = 512
        p.UNet_max_features_3d = 320
        p.max_dataset_covered = 0.05
        p.UNet_vram_target_GB = 8
        p.lowres_creation_threshold = 0.25
        p.preprocessor_name = "DefaultPreprocessor"
        p.plans_identifier = "nnUNetPlans"
        p.overwrite_target_spacing = None
        p.plans = None
        return p

    from nnunetv2.preprocessing.resampling.default_resampling import compute_new_shape
    rng = np.random.default_rng(3)
    scenarios = []
    base = [
        ("curvas_like", [[2.5, 0.75, 0.75], [2.0, 0.8, 0.8], [3.0, 0.7, 0.7], [2.5, 0.78, 0.78], [1.5, 0.65, 0.65]],
         [[300, 512, 512], [240, 512, 512], [180, 512, 512], [320, 512, 512], [420, 512, 512]], 20),
        ("small_phantoms", [[2.0, 0.7, 0.7], [5.0, 0.84, 0.84], [3.0, 0.61, 0.61], [3.0, 0.66, 0.66]],
         [[64, 96, 96]] * 4, 4),
        ("anisotropic", [[10.0, 1.5, 1.5], [9.0, 1.4, 1.4], [6.0, 1.5, 1.5], [10.0, 1.6, 1.6]],
         [[12, 256, 256], [14, 240, 240], [20, 256, 256], [11, 250, 260]], 30),
    ]
    for _ in range(5):
        n = int(rng.integers(3, 8))
        sp = [[float(rng.choice([1.0, 1.5, 2.0, 2.5, 3.0, 5.0])), *([float(np.round(rng.uniform(0.5, 1.0), 3))] * 2)]
              for _ in range(n)]
        sh = [[int(rng.integers(40, 400)), int(rng.integers(128, 512)), int(rng.integers(128, 512))] for _ in range(n)]
        base.append((f"random_{len(base)}", sp, sh, int(rng.integers(5, 100))))
    for name, spacings, shapes, num_training in base:
        fp = {"spacings": spacings, "shapes_after_crop": shapes, "median_relative_size_after_cropping": 1.0}
        p = planner(fp, num_training)
        target = p.determine_fullres_target_spacing()
        tf, tb = p.determine_transpose()
        new_shapes = [compute_new_shape(j, i, target) for i, j in zip(spacings, shapes)]
        median = np.median(new_shapes, 0)[tf]
        approx = float(np.prod(median, dtype=np.float64) * num_training)
        plan = p.get_plans_for_configuration(target[tf], median, "nnUNetPlans_3d_fullres", approx, {})
        a = plan["architecture"]["arch_kwargs"]
        scenarios.append({
            "name": name, "spacings": spacings, "shapes_after_crop": shapes, "num_training": num_training,
            "target_spacing": [float(v) for v in target], "transpose_forward": [int(v) for v in tf],
            "median_shape": [float(v) for v in median],
            "patch_size": [int(v) for v in plan["patch_size"]], "batch_size": int(plan["batch_size"]),
            "n_stages": int(a["n_stages"]), "features_per_stage": [int(v) for v in a["features_per_stage"]],
            "kernel_sizes": [[int(k) for k in v] for v in a["kernel_sizes"]],
            "strides": [[int(k) for k in v] for v in a["strides"]],
        })
    with open(out_path, "w") as f:
        json.dump({"nnunetv2": "2.8.1", "scenarios": scenarios}, f, indent=1)


if __name__ == "__main__" and sys.argv[1] == "plans":
    plans(sys.argv[2])


def dataset(pre_dir, out_dir):
    """Copies nnunetv2's fingerprint and plans of a preprocessed dataset, and its preprocessed
    arrays (data and segmentation of case_000) as NIfTI, into out_dir.
    Run after `statapp synth --cases 4 --size small --seed 475 --layout nnunet --annotator 1` and
    nnUNetv2_extract_fingerprint / nnUNetv2_plan_experiment / nnUNetv2_preprocess -c 3d_fullres."""
    import os
    import pickle
    import shutil

    import blosc2
    import nibabel as nib

    os.makedirs(out_dir, exist_ok=True)
    for f in ("dataset_fingerprint.json", "nnUNetPlans.json"):
        shutil.copy(os.path.join(pre_dir, f), os.path.join(out_dir, f))
    folder = os.path.join(pre_dir, "nnUNetPlans_3d_fullres")
    for case in ("case_000",):
        data = blosc2.open(os.path.join(folder, f"{case}.b2nd"))[:]
        seg = blosc2.open(os.path.join(folder, f"{case}_seg.b2nd"))[:]
        with open(os.path.join(folder, f"{case}.pkl"), "rb") as f:
            props = pickle.load(f)
        # (c, z, y, x) -> NIfTI (x, y, z); identity affine: these are arrays, not images
        nib.save(nib.Nifti1Image(np.transpose(data[0], (2, 1, 0)).astype(np.float32), np.eye(4)),
                 os.path.join(out_dir, f"{case}_data.nii.gz"))
        nib.save(nib.Nifti1Image(np.transpose(seg[0], (2, 1, 0)).astype(np.int16), np.eye(4)),
                 os.path.join(out_dir, f"{case}_seg.nii.gz"))
        meta = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in props.items()
                if k in ("shape_before_cropping", "bbox_used_for_cropping", "shape_after_cropping_and_before_resampling",
                         "spacing")}
        with open(os.path.join(out_dir, f"{case}_properties.json"), "w") as f:
            json.dump(meta, f, indent=1, default=lambda o: o.tolist() if hasattr(o, "tolist") else int(o))


if __name__ == "__main__" and sys.argv[1] == "dataset":
    dataset(sys.argv[2], sys.argv[3])
