#!/usr/bin/env python3
"""nnunetv2 / PyTorch side of the nnU-Net core benchmarks (issue 4). Prints wall time and peak RSS.

  bench_nnunet.py preprocess IMAGE LABELS PLANS_JSON DATASET_JSON
      nnunetv2's DefaultPreprocessor.run_case (read, crop, normalise, resample) of one case with the
      3d_fullres configuration of PLANS_JSON (e.g. written by `statapp prepare`).
  bench_nnunet.py infer PLANS_JSON CONFIGURATION TILES
      forward passes of nnU-Net's PlainConvUNet built from the plan (torch, CPU, 2 threads,
      no_grad, deep supervision off) on random patches: voxels per second.

Requires nnunetv2 (and torch): not part of the test suite.
"""
import json
import resource
import sys
import time


def peak():
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"


def preprocess(image, labels, plans_json, dataset_json):
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    pm = PlansManager(plans_json)
    cm = pm.get_configuration("3d_fullres")
    t = time.perf_counter()
    data, seg, _ = DefaultPreprocessor(verbose=False).run_case([image], labels, pm, cm, dataset_json)
    print(f"nnunetv2 preprocess {data.shape}: {time.perf_counter() - t:.2f} s, peak RSS {peak()}")


def infer(plans_json, configuration, tiles):
    import torch
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    torch.set_num_threads(2)
    with open(plans_json) as f:
        cfg = json.load(f)["configurations"][configuration]
    a = cfg["architecture"]["arch_kwargs"]
    net = PlainConvUNet(1, a["n_stages"], a["features_per_stage"], torch.nn.Conv3d, a["kernel_sizes"], a["strides"],
                        a["n_conv_per_stage"], 4, a["n_conv_per_stage_decoder"], conv_bias=True,
                        norm_op=torch.nn.InstanceNorm3d, norm_op_kwargs={"eps": 1e-5, "affine": True},
                        nonlin=torch.nn.LeakyReLU, nonlin_kwargs={"inplace": True}, deep_supervision=False).eval()
    patch = cfg["patch_size"]
    x = torch.randn(1, 1, *patch)
    with torch.no_grad():
        net(x)  # warm-up
        t = time.perf_counter()
        for _ in range(tiles):
            net(x)
        dt = time.perf_counter() - t
    vox = tiles * patch[0] * patch[1] * patch[2]
    print(f"torch {torch.__version__} {configuration} patch {patch}: {dt / tiles:.2f} s/tile, "
          f"{vox / dt:.0f} voxels/s, peak RSS {peak()}")


if __name__ == "__main__":
    if sys.argv[1] == "preprocess":
        preprocess(*sys.argv[2:6])
    else:
        infer(sys.argv[2], sys.argv[3], int(sys.argv[4]))
