#!/usr/bin/env python3
"""A real nnU-Net v2 model and nnU-Net's own predictions, as fixtures for statapp's model import,
prediction and export (tests/fixtures/nnunet_model/).

Usage:
  python tools/nnunet_model_reference.py train OUT_DIR
      Synthetic CT phantoms with three organs, written as nnU-Net raw data whose coarse axis is the
      *last* array axis (so transpose_forward is not the identity) and whose spacings vary per case
      (so preprocessing and export resample, with separate-axis handling). nnU-Net plans them, a
      small custom configuration `3d_tiny` that inherits from 3d_fullres is added to the plans,
      nnU-Net preprocesses it and trains it with its own trainer `nnUNetTrainer_5epochs` on the
      CPU (fold all). Then nnUNetPredictor predicts the held-out images with and without
      mirroring (save_probabilities), and the network's float32 logits on one preprocessed patch
      are recorded. OUT_DIR receives the trained-model folder as nnU-Net wrote it, the test
      images and the expected outputs (float16 .npy).
  python tools/nnunet_model_reference.py predict-exported MODEL_FOLDER IMAGES_DIR OUT_DIR
      Loads an nnU-Net results folder written by `statapp export-model` with nnUNetPredictor
      and predicts every image of IMAGES_DIR (no mirroring), writing <case>_probabilities.npy.
  python tools/nnunet_model_reference.py clip OUT.json
      torch.nn.utils.clip_grad_norm_(max_norm=12) on a fixed set of gradients.
  python tools/nnunet_model_reference.py curvas-model PLANS_DIR OUT_FOLDER
      A CURVAS-topology 3d_fullres checkpoint with seeded random weights, saved as nnU-Net's
      trainer saves it (for tools/bench_nnunet_model.sh; PLANS_DIR holds nnUNetPlans.json and
      dataset.json, e.g. ../shared/curvas).
  python tools/nnunet_model_reference.py bench-tile MODEL_FOLDER on|off REPEATS
      Seconds per tile of nnUNetPredictor's network pass (with its mirroring when on) on 2 threads.
  python tools/nnunet_model_reference.py bench-train PLANS_DIR cuda|cpu STEPS amp|f32
      Milliseconds per training step of the 3d_fullres network of PLANS_DIR as nnUNetTrainer takes
      it (deep supervision, Dice + CE with its weights, SGD Nesterov 0.99, gradients clipped at 12;
      `amp`: autocast float16 with a GradScaler, nnU-Net's default on CUDA) on a synthetic batch of
      the plan's patch and batch size, and the peak memory PyTorch allocated (for
      tools/bench_gpu_train.sh).

Requires nnunetv2 2.8.1 from PyPI (with torch, CPU use); not installed by CI: its outputs are
committed fixtures.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

LABELS = {"background": 0, "pancreas": 1, "kidney": 2, "liver": 3}
N_TRAIN, N_TEST = 10, 2
DATASET_ID, DATASET_NAME = 987, "Dataset987_StatappRef"
TRAINER, CONFIG = "nnUNetTrainer_5epochs", "3d_tiny"


def phantom(rng, shape):
    """A CT-like volume (HU) with a body, liver, two kidneys and a pancreas as ellipsoids."""
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    ct = np.full(shape, -1000.0)
    lab = np.zeros(shape, np.uint8)
    jit = lambda: rng.uniform(-0.08, 0.08)
    body = (z / 1.1) ** 2 + (y / 0.85) ** 2 + (x / 0.9) ** 2 < 1
    ct[body] = 20.0
    organs = [(3, (0.1 + jit(), -0.1 + jit(), 0.35 + jit()), (0.5, 0.35, 0.3), 60.0),
              (2, (0.0 + jit(), 0.3 + jit(), -0.45 + jit()), (0.3, 0.15, 0.12), 150.0),
              (2, (0.0 + jit(), 0.3 + jit(), 0.45 + jit()), (0.3, 0.15, 0.12), 150.0),
              (1, (0.0 + jit(), 0.05 + jit(), -0.1 + jit()), (0.15, 0.1, 0.3), 100.0)]
    for label, c, r, hu in organs:
        m = ((z - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((x - c[2]) / r[2]) ** 2 < 1
        ct[m & body] = hu
        lab[m & body] = label
    ct += rng.normal(0, 15, shape)
    return ct.astype(np.float32), lab


def write_case(sitk, arr, spacing_zyx, path, is_label=False):
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(tuple(float(s) for s in spacing_zyx[::-1]))
    # an axis flip and an offset in the direction, as scanners write them
    img.SetDirection((-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))
    img.SetOrigin((12.5, -30.0, 100.0))
    sitk.WriteImage(img, str(path), useCompression=True)


def make_raw(raw, test_dir, rng):
    import SimpleITK as sitk
    d = raw / DATASET_NAME
    for sub in ("imagesTr", "labelsTr"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    test_dir.mkdir(parents=True, exist_ok=True)
    for i in range(N_TRAIN + N_TEST):
        # array axes (z, y, x); the last one is the coarse one
        spacing = (rng.choice([0.9, 1.0, 1.1]), rng.choice([0.9, 1.0, 1.1]), rng.choice([3.2, 3.5, 3.8]))
        shape = tuple(int(round(e / s)) for e, s in zip((40.0, 44.0, 70.0), spacing))
        ct, lab = phantom(rng, shape)
        case = f"case_{i:03d}"
        if i < N_TRAIN:
            write_case(sitk, ct, spacing, d / "imagesTr" / f"{case}_0000.nii.gz")
            write_case(sitk, lab, spacing, d / "labelsTr" / f"{case}.nii.gz")
        else:
            write_case(sitk, ct, spacing, test_dir / f"{case}_0000.nii.gz")
    (d / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT"}, "labels": LABELS, "numTraining": N_TRAIN,
        "file_ending": ".nii.gz"}, indent=2))


def add_tiny_configuration(plans_file):
    plans = json.loads(plans_file.read_text())
    full = plans["configurations"]["3d_fullres"]
    arch = json.loads(json.dumps(full["architecture"]))
    k = arch["arch_kwargs"]
    # after transpose_forward the coarse axis is first, as in a CT's z
    k.update({"n_stages": 3, "features_per_stage": [8, 16, 32],
              "kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 3, 3]],
              "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2]],
              "n_conv_per_stage": [2, 2, 2], "n_conv_per_stage_decoder": [2, 2]})
    plans["configurations"][CONFIG] = {
        "inherits_from": "3d_fullres", "data_identifier": "nnUNetPlans_" + CONFIG,
        "patch_size": [8, 32, 32], "batch_size": 2, "architecture": arch}
    plans_file.write_text(json.dumps(plans, indent=2))
    return plans


def run(cmd, env):
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env)


def train(out):
    import torch
    out = Path(out)
    work = out / "_work"
    shutil.rmtree(work, ignore_errors=True)
    env = dict(os.environ, nnUNet_raw=str(work / "raw"), nnUNet_preprocessed=str(work / "pre"),
               nnUNet_results=str(work / "results"), nnUNet_n_proc_DA="2")
    rng = np.random.default_rng(20261203)
    images = out / "images"
    shutil.rmtree(images, ignore_errors=True)
    make_raw(work / "raw", images, rng)
    bindir = Path(sys.executable).parent
    run([str(bindir / "nnUNetv2_plan_and_preprocess"), "-d", str(DATASET_ID), "-c", "3d_fullres",
         "--no_pp", "--verify_dataset_integrity"], env)
    plans = add_tiny_configuration(work / "pre" / DATASET_NAME / "nnUNetPlans.json")
    print("transpose_forward", plans["transpose_forward"], flush=True)
    run([str(bindir / "nnUNetv2_preprocess"), "-d", str(DATASET_ID), "-c", CONFIG, "-np", "2"], env)
    torch.manual_seed(0)
    run([str(bindir / "nnUNetv2_train"), str(DATASET_ID), CONFIG, "all", "-tr", TRAINER,
         "-device", "cpu"], env)
    folder = work / "results" / DATASET_NAME / f"{TRAINER}__nnUNetPlans__{CONFIG}"
    model = out / "model" / folder.name
    shutil.rmtree(out / "model", ignore_errors=True)
    model.mkdir(parents=True)
    for f in ("plans.json", "dataset.json", "dataset_fingerprint.json"):
        shutil.copy(folder / f, model / f)
    (model / "fold_all").mkdir()
    shutil.copy(folder / "fold_all" / "checkpoint_final.pth", model / "fold_all" / "checkpoint_final.pth")
    predict_reference(model, images, out / "expected")
    patch_logits(model, work, out / "expected")
    shutil.rmtree(work)


def predictor(model, mirroring):
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    torch.set_num_threads(2)
    p = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirroring,
                        perform_everything_on_device=False, device=torch.device("cpu"),
                        allow_tqdm=False)
    p.initialize_from_trained_model_folder(str(model), use_folds=("all",),
                                           checkpoint_name="checkpoint_final.pth")
    return p


def predict_all(p, images, out, suffix):
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    out.mkdir(parents=True, exist_ok=True)
    for f in sorted(images.glob("*_0000.nii.gz")):
        case = f.name[: -len("_0000.nii.gz")]
        img, props = SimpleITKIO().read_images([str(f)])
        seg, probs = p.predict_single_npy_array(img, props, None, None, True)
        np.save(out / f"{case}_probabilities{suffix}.npy", probs.astype(np.float16))
        np.save(out / f"{case}_segmentation{suffix}.npy", seg.astype(np.uint8))
        print(case, suffix, probs.shape, flush=True)


def predict_reference(model, images, out):
    predict_all(predictor(model, True), images, out, "_mirror")
    predict_all(predictor(model, False), images, out, "_nomirror")


def patch_logits(model, work, out):
    """float32 logits of the network (eval mode) on one preprocessed training patch."""
    import torch
    p = predictor(model, False)
    pre = work / "pre" / DATASET_NAME / ("nnUNetPlans_" + CONFIG)
    import blosc2
    files = sorted(pre.glob("*.b2nd"))
    data = [f for f in files if not f.name.endswith("_seg.b2nd")][0]
    arr = np.asarray(blosc2.open(urlpath=str(data), mode="r")[:]).astype(np.float32)
    ps = p.configuration_manager.patch_size
    start = [max(0, (s - q) // 2) for s, q in zip(arr.shape[1:], ps)]
    x = np.zeros((1, 1, *ps), np.float32)
    crop = arr[0, start[0]:start[0] + ps[0], start[1]:start[1] + ps[1], start[2]:start[2] + ps[2]]
    x[0, 0, :crop.shape[0], :crop.shape[1], :crop.shape[2]] = crop
    net = p.network.eval()
    with torch.no_grad():
        logits = net(torch.from_numpy(x)).numpy()
    np.save(out / "patch_input.npy", x)
    np.save(out / "patch_logits.npy", logits.astype(np.float32))


def predict_exported(model, images, out):
    predict_all(predictor(Path(model), False), Path(images), Path(out), "")


def clip(out):
    import torch
    g = torch.Generator().manual_seed(5)
    shapes = [(4, 1, 3, 3, 3), (4,), (8, 4, 1, 3, 3), (8,), (3, 8, 1, 1, 1)]
    params = [torch.nn.Parameter(torch.zeros(s)) for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape, generator=g) * 3.0
    before = [p.grad.clone() for p in params]
    total = torch.nn.utils.clip_grad_norm_(params, 12)
    Path(out).write_text(json.dumps({
        "max_norm": 12.0, "total_norm": float(total),
        "gradients": [{"shape": list(b.shape), "before": b.flatten().tolist(),
                       "after": p.grad.flatten().tolist()} for b, p in zip(before, params)]}))


def curvas_model(plans_dir, out):
    import torch
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    plans = json.loads((Path(plans_dir) / "nnUNetPlans.json").read_text())
    dataset = json.loads((Path(plans_dir) / "dataset.json").read_text())
    cm = PlansManager(plans).get_configuration("3d_fullres")
    torch.manual_seed(1)
    net = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                 cm.network_arch_init_kwargs_req_import, 1, len(dataset["labels"]),
                                 allow_init=True, deep_supervision=False)
    out = Path(out)
    (out / "fold_all").mkdir(parents=True, exist_ok=True)
    (out / "plans.json").write_text(json.dumps(plans, indent=2))
    (out / "dataset.json").write_text(json.dumps(dataset, indent=2))
    torch.save({"network_weights": net.state_dict(), "optimizer_state": None, "grad_scaler_state": None,
                "logging": {}, "_best_ema": np.float64(0.5), "current_epoch": 1,
                "init_args": {"plans": plans, "configuration": "3d_fullres", "fold": "all",
                              "dataset_json": dataset, "device": torch.device("cpu")},
                "trainer_name": "nnUNetTrainer", "inference_allowed_mirroring_axes": (0, 1, 2)},
               out / "fold_all" / "checkpoint_final.pth")


def bench_tile(model, mirroring, repeats):
    import time
    import torch
    p = predictor(Path(model), mirroring == "on")
    net = p.network.eval()
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(
        (1, 1, *p.configuration_manager.patch_size)).astype(np.float32))
    times = []
    with torch.inference_mode():
        if int(repeats) > 1:
            p._internal_maybe_mirror_and_predict(x)  # warm-up
        for _ in range(int(repeats)):
            t = time.perf_counter()
            p._internal_maybe_mirror_and_predict(x)
            times.append(time.perf_counter() - t)
    print(f"pytorch {torch.__version__} threads {torch.get_num_threads()} mirroring {mirroring}: "
          f"{sorted(times)[len(times) // 2]:.2f} s per tile (median of {repeats})")


def bench_train(plans_dir, device, steps, precision):
    import time
    import torch
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    plans = json.loads((Path(plans_dir) / "nnUNetPlans.json").read_text())
    cm = PlansManager(plans).get_configuration("3d_fullres")
    dev = torch.device(device)
    torch.manual_seed(1)
    net = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                 cm.network_arch_init_kwargs_req_import, 1, len(LABELS),
                                 allow_init=True, deep_supervision=True).to(dev)
    # nnUNetTrainer._get_deep_supervision_scales and _build_loss
    scales = list(list(i) for i in 1 / np.cumprod(np.vstack(cm.pool_op_kernel_sizes), axis=0))[:-1]
    weights = np.array([1 / (2 ** i) for i in range(len(scales))])
    weights[-1] = 0
    loss = DeepSupervisionWrapper(
        DC_and_CE_loss({"batch_dice": cm.batch_dice, "smooth": 1e-5, "do_bg": False, "ddp": False},
                       {}, weight_ce=1, weight_dice=1, ignore_label=None,
                       dice_class=MemoryEfficientSoftDiceLoss),
        weights / weights.sum())
    opt = torch.optim.SGD(net.parameters(), 0.01, weight_decay=3e-5, momentum=0.99, nesterov=True)
    amp = precision == "amp" and dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if amp else None
    rng = np.random.default_rng(1)
    patch, batch = list(cm.patch_size), cm.batch_size
    x = torch.from_numpy(rng.standard_normal((batch, 1, *patch)).astype(np.float32))
    labels = rng.integers(0, len(LABELS), (batch, 1, *patch)).astype(np.float32)
    targets = [torch.from_numpy(np.ascontiguousarray(
        labels[:, :, ::round(1 / s[0]), ::round(1 / s[1]), ::round(1 / s[2])])) for s in scales]
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    times = []
    for _ in range(int(steps)):
        t = time.perf_counter()
        data, target = x.to(dev, non_blocking=True), [y.to(dev, non_blocking=True) for y in targets]
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, enabled=amp):
            l = loss(net(data), target)
        if scaler is not None:
            scaler.scale(l).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(net.parameters(), 12)
            scaler.step(opt)
            scaler.update()
        else:
            l.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 12)
            opt.step()
        l.item()
        sync()
        times.append(time.perf_counter() - t)
    for i, s in enumerate(times):
        print(f"step {i}: {s * 1000:.1f} ms")
    rest = sorted(times[1:])
    peak = (f", peak allocated {torch.cuda.max_memory_allocated(dev) / 2**30:.2f} GiB"
            if dev.type == "cuda" else "")
    print(f"pytorch {torch.__version__} on {device} ({'amp' if amp else 'f32'}): 3d_fullres patch "
          f"{patch} batch {batch}, median {rest[len(rest) // 2] * 1000:.1f} ms per step over "
          f"{len(rest)} steps after the first{peak}")


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "train" and len(sys.argv) == 3:
        train(sys.argv[2])
    elif cmd == "predict-exported" and len(sys.argv) == 5:
        predict_exported(*sys.argv[2:])
    elif cmd == "curvas-model" and len(sys.argv) == 4:
        curvas_model(*sys.argv[2:])
    elif cmd == "bench-tile" and len(sys.argv) == 5:
        bench_tile(*sys.argv[2:])
    elif cmd == "bench-train" and len(sys.argv) == 6:
        bench_train(*sys.argv[2:])
    elif cmd == "clip" and len(sys.argv) == 3:
        clip(sys.argv[2])
    else:
        sys.exit(__doc__)
