#!/usr/bin/env python3
"""Reference implementation of `statapp metrics case` (METRICS.md §18), for test fixtures and for
the speed comparison. Independent of the Rust code: it uses the trusted libraries the metrics are
defined by (scikit-learn roc_auc_score, properscoring, scipy directed_hausdorff / quad / entropy /
distance_transform_edt, nibabel) and literal numpy loops for the torchmetrics ECE, the MONAI Dice
rule and the ValUES/statapp risk-coverage loops.

Usage:
  metrics_reference.py case --annotation A1 --annotation A2 --annotation A3 \
      --probabilities P1 P2 P3 [--prediction L] [--ct CT] [--roi annotations|ct|none]
  metrics_reference.py fixtures OUT_DIR      # writes the fixture cases and their expected JSON

Requires: numpy, scipy, scikit-learn, properscoring, nibabel (tools/requirements-reference.txt).
"""
import argparse
import json
import math
import os
import sys
import time

import nibabel as nib
import numpy as np
import properscoring as ps
from scipy import integrate
from scipy.ndimage import binary_erosion, distance_transform_edt
from scipy.spatial.distance import directed_hausdorff
from scipy.stats import entropy as scipy_entropy
from scipy.stats import norm
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import label_binarize

ORGANS = ["pancreas", "kidney", "liver"]
SHORT = ["panc", "kidn", "livr"]


# ---------------------------------------------------------------- loading (nibabel, z y x order)
def load(path, labels=False):
    img = nib.load(path)
    data = np.asarray(img.dataobj)  # applies scl_slope / scl_inter
    data = np.transpose(data.reshape(data.shape[:3]), (2, 1, 0))
    if labels:
        data = np.rint(data).astype(np.uint8)
    else:
        data = data.astype(np.float32)
    return data, img


def roi_box(mode, anns, ct):
    z, y, x = anns[0].shape
    if mode == "none":
        return "none", (0, y, 0, x)
    mask = (anns[0] > 0) | (anns[1] > 0) | (anns[2] > 0) if mode == "annotations" else ct > 0
    if not mask.any():
        return f"{mode} (empty mask: no crop)", (0, y, 0, x)
    ys = np.where(mask.any(axis=(0, 2)))[0]
    xs = np.where(mask.any(axis=(0, 1)))[0]
    return mode, (int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1)


def real(v):
    v = float(v)
    if math.isnan(v):
        return None
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


# ---------------------------------------------------------------- metrics
def linewise_dice(P, G):
    """MONAI DiceMetric(include_background=False, ignore_empty=True) on a (z, y, x) array."""
    per_slice = []
    for z in range(P.shape[0]):
        vals = []
        for y in range(1, P.shape[1]):  # row 0 is the dropped "background channel"
            g, p = G[z, y], P[z, y]
            if g.sum() == 0:
                continue  # NaN
            vals.append(2.0 * np.sum(p & g) / (np.sum(p) + np.sum(g)))
        if vals:
            per_slice.append(np.mean(vals))
    return float(np.mean(per_slice)) if per_slice else 0.0


def crps_curvas_numeric(v, mu, sigma):
    if sigma == 0:
        return 0.0
    lo, hi = norm.ppf(0.01, loc=mu, scale=sigma), norm.ppf(0.99, loc=mu, scale=sigma)
    x = np.linspace(lo, hi, 100)
    cdf = norm.cdf(x, loc=mu, scale=sigma)

    def F(t):
        if t < x[0]:
            return 0.0
        if t > x[-1]:
            return 1.0
        return float(np.interp(t, x, cdf))

    def integrand(t):
        h = 0.5 * (np.sign(t - v) + 1.0)
        return (F(t) - h) ** 2

    a, b = mu - 3 * sigma, mu + 3 * sigma
    points = [p for p in list(x) + [v] if a < p < b]
    # integrate piece by piece between breakpoints: the integrand is smooth on each
    edges = sorted(set([a, b] + points))
    total = 0.0
    for s, e in zip(edges[:-1], edges[1:]):
        val, _ = integrate.quad(integrand, s, e, epsabs=0, epsrel=1e-13, limit=200)
        total += val
    return total


def erf_as(x):
    a1, a2, a3, a4, a5 = 0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429
    p = 0.3275911
    sign = np.sign(x)
    x = np.abs(x)
    t = 1.0 / (1.0 + p * x)
    y = 1.0 - (((((a5 * t + a4) * t + a3) * t + a2) * t + a1) * t) * np.exp(-x * x)
    return sign * y


def crps_statapp_numeric(v, mu, sigma):
    if sigma == 0:
        return 0.0
    x = np.linspace(mu - 4 * sigma, mu + 4 * sigma, 500)
    cdf = 0.5 * (1 + erf_as((x - mu) / (sigma * np.sqrt(2))))
    h = 0.5 * (np.sign(x - v) + 1.0)
    return float(np.trapezoid((cdf - h) ** 2, x))


def hd_full(a, b, spacing):
    pa = np.argwhere(a) * np.asarray(spacing)
    pb = np.argwhere(b) * np.asarray(spacing)
    return max(directed_hausdorff(pa, pb)[0], directed_hausdorff(pb, pa)[0])


def monai_surface(a, b, spacing):
    ea = a ^ binary_erosion(a)
    eb = b ^ binary_erosion(b)
    d_ab = distance_transform_edt(~eb, sampling=spacing)[ea]
    d_ba = distance_transform_edt(~ea, sampling=spacing)[eb]
    hd95 = max(np.percentile(d_ab, 95), np.percentile(d_ba, 95))
    return hd95, max(d_ab.max(), d_ba.max())


def ncc(g, u):
    g = np.asarray(g, np.float64).ravel()
    u = np.asarray(u, np.float64).ravel()
    if g.size < 2:
        return float("nan")
    sg, su = np.std(g, ddof=1), np.std(u, ddof=1)
    if sg == 0 or su == 0:
        return float("nan")
    return float(np.sum((g - g.mean()) * (u - u.mean())) / (g.size * sg * su))


def thresholded_dice(prob, masks):
    """CURVAS-PDACVI's leaderboard Dice (evaluation_metrics `merged_dice_score`, its soft part):
    at each threshold t of linspace(0.1, 0.8, 6), the prediction p > t against the mean of the
    annotators' binary masks > t, 2 |P & G| / (|P| + |G| + 1e-6), 1 when both are empty; the
    mean over thresholds."""
    mean_gt = np.mean(np.stack(masks, axis=0), axis=0).ravel()
    p = prob.ravel()
    scores = []
    for t in np.linspace(0.1, 0.8, 6):
        pb, gb = p > t, mean_gt > t
        if not pb.any() and not gb.any():
            scores.append(1.0)
        else:
            scores.append(2.0 * np.sum(pb & gb) / (np.sum(pb) + np.sum(gb) + 1e-6))
    return float(np.mean(scores))


def auroc(y, s):
    y = np.asarray(y).ravel()
    if y.min() == y.max():
        return float("nan")
    return float(roc_auc_score(y, np.asarray(s, np.float64).ravel()))


def rc_values(risks, confids, final_point):
    """ValUES rc_curve_stats + aurc, with a stable argsort (statapp's copy has no final point)."""
    n = len(risks)
    idx = np.argsort(confids, kind="stable")
    r, c = risks[idx], confids[idx]
    error_sum = float(np.sum(r))
    sel = [error_sum / n]
    weights = []
    tmp = 0
    for i in range(n - 1):
        error_sum -= float(r[i])
        tmp += 1
        if i == 0 or c[i] != c[i - 1]:
            sel.append(error_sum / (n - 1 - i))
            weights.append(tmp / n)
            tmp = 0
    if final_point and tmp > 0:
        sel.append(sel[-1])
        weights.append(tmp / n)
    return sum((sel[i] + sel[i + 1]) * 0.5 * weights[i] for i in range(len(weights)))


def rc_tie_aware(risks, confids):
    """fd-shifts selective_risk_stats: a point after each whole tie group, final point at 0."""
    n = len(risks)
    idx = np.argsort(confids, kind="stable")
    r, c = risks[idx].astype(np.float64), confids[idx]
    total = r.sum()
    cov, risk = [1.0], [total / n]
    cum = np.cumsum(r)
    for i in range(n - 1):
        if c[i] != c[i + 1]:
            cov.append((n - 1 - i) / n)
            risk.append((total - cum[i]) / (n - 1 - i))
    cov.append(0.0)
    risk.append(risk[-1])
    return sum((cov[j] - cov[j + 1]) * (risk[j] + risk[j + 1]) / 2 for j in range(len(cov) - 1))


def geifman(risks):
    n = len(risks)
    r = np.sort(np.asarray(risks, np.float64))
    return float((np.cumsum(r) / np.arange(1, n + 1)).sum() / n)


def ece_torchmetrics(probs, target):
    """torchmetrics MulticlassCalibrationError(n_bins=50, norm='l1'), literally."""
    if np.any(probs < 0) or np.any(probs > 1):
        e = np.exp(probs.astype(np.float64) - probs.max(axis=1, keepdims=True))
        probs = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
        fallback = True
    else:
        fallback = False
    conf = probs.max(axis=1)
    pred = probs.argmax(axis=1)
    acc = (pred == target).astype(np.float64)
    step = np.float32(1.0) / np.float32(50)
    bounds = np.array(
        [np.float32(i) * step if i < 25 else np.float32(1.0) - np.float32(50 - i) * step for i in range(51)],
        dtype=np.float32,
    )
    idx = np.searchsorted(bounds, conf, side="right") - 1
    ece = 0.0
    for b in range(52):
        m = idx == b
        if m.any():
            ece += abs(acc[m].mean() - conf[m].astype(np.float64).mean()) * m.sum() / len(conf)
    return ece, fallback


def ace_values(correct, conf, binarize_bug):
    if conf.min() < 0 or conf.max() > 1:
        return float("nan")
    y = correct.astype(int)
    if binarize_bug:
        y = label_binarize(y, classes=np.unique(y))[:, 0]
    bins = np.linspace(0.0, 1.0 + 1e-8, 21)
    ids = np.digitize(conf.astype(np.float64), bins) - 1
    sums = np.bincount(ids, weights=conf.astype(np.float64), minlength=len(bins))
    true = np.bincount(ids, weights=y, minlength=len(bins))
    tot = np.bincount(ids, minlength=len(bins))
    nz = tot != 0
    return float(np.mean(np.abs(true[nz] / tot[nz] - sums[nz] / tot[nz])))


def label_entropy(arr):
    hist, _ = np.histogram(arr.ravel(), bins=256, range=(0, 256), density=True)
    return float(scipy_entropy(hist))


_T0 = time.monotonic()


def progress(what):
    """Stage times on stderr when STATAPP_REF_PROGRESS is set (benchmarks of large cases)."""
    if os.environ.get("STATAPP_REF_PROGRESS"):
        print(f"{time.monotonic() - _T0:9.1f} s  {what}", file=sys.stderr, flush=True)


def score(anns, probs, pred, ct, spacing, roi_mode, pred_name, case):
    progress("loaded")
    shape = anns[0].shape
    mode, (y0, y1, x0, x1) = roi_box(roi_mode, anns, ct)
    crop = lambda a: a[:, y0:y1, x0:x1]
    A = [crop(a) for a in anns]
    p = [crop(q) for q in probs]
    p0 = np.float32(1) - ((p[0] + p[1]) + p[2])
    P4 = np.stack([p0, p[0], p[1], p[2]])
    L = crop(pred) if pred is not None else np.argmax(P4, axis=0).astype(np.uint8)
    n = L.size
    vv = float(np.prod(np.asarray(spacing, np.float64)))
    flat4 = P4.reshape(4, -1).T
    out = {
        "case": case,
        "inputs": {
            "shape_zyx": list(shape),
            "spacing_zyx_mm": [float(s) for s in spacing],
            "voxel_volume_mm3": vv,
            "pred_source": pred_name or "argmax([1-sum(p), p1, p2, p3])",
            "roi": {"mode": mode, "z": [0, shape[0]], "y": [y0, y1], "x": [x0, x1],
                    "shape_zyx": [shape[0], y1 - y0, x1 - x0], "n_voxels": int(n)},
            "background_prob_negative_voxels": int(np.sum(p0 < 0)),
            "all_class_probs_in_unit_interval": bool(np.all((flat4 >= 0) & (flat4 <= 1))),
        },
        "organs": {}, "annotators": {}, "global": {}, "statapp_compat": {},
    }
    compat = {}
    organ_ncc = []
    for ki, k in enumerate([1, 2, 3]):
        progress(f"organ {k}")
        says = [a == k for a in A]
        votes = says[0].astype(int) + says[1] + says[2]
        C, B = votes == 3, votes == 0
        D = ~C & ~B
        Pk = (L == k) & ~D
        dice = 2.0 * np.sum(Pk & C) / (Pk.sum() + C.sum()) if C.sum() > 0 else float("nan")
        pk = p[ki]
        m_org = float(np.mean(pk[C].astype(np.float64))) if C.any() else float("nan")
        m_bck = float(np.mean(pk[B].astype(np.float64))) if B.any() else float("nan")
        vols = [int(s.sum()) for s in says]
        mu, sigma = float(np.mean(vols)), float(np.std(vols))
        soft = float(np.sum(pk.astype(np.float64)))
        mm = lambda x: x * vv
        if sigma == 0:
            crps_mm3, crps_vox = abs(mm(soft) - mm(mu)), abs(soft - mu)
        else:
            crps_mm3 = float(ps.crps_gaussian(mm(soft), mm(mu), mm(sigma)))
            crps_vox = float(ps.crps_gaussian(soft, mu, sigma))
        crps = {
            "gt_volumes_vox": vols, "mu_vox": mu, "sigma_vox": sigma, "pred_volume_vox": soft,
            "gt_volumes_mm3": [mm(v) for v in vols], "mu_mm3": mm(mu), "sigma_mm3": mm(sigma),
            "pred_volume_mm3": mm(soft), "crps_mm3": crps_mm3, "crps_vox": crps_vox,
            "crps_empirical_mm3": float(ps.crps_ensemble(mm(soft), [mm(v) for v in vols])),
            "crps_curvas_numeric_vox": crps_curvas_numeric(soft, mu, sigma),
            "crps_statapp_numeric_vox": crps_statapp_numeric(soft, mu, sigma),
        }
        # Hausdorff per annotator
        hd = {}
        for a in range(3):
            pm, am = L == k, says[a]
            if not pm.any() and not am.any():
                vals = [float("nan")] * 4
            elif not pm.any() or not am.any():
                vals = [float("inf")] * 4
            else:
                hd95, surf = monai_surface(pm, am, spacing)
                vals = [hd_full(pm, am, spacing), hd_full(pm, am, (1, 1, 1)), hd95, surf]
            hd[str(a + 1)] = dict(zip(["hd_mm", "hd_vox", "hd95_mm", "hd_surface_mm"], vals))
        progress(f"organ {k} hausdorff done")
        hmean = lambda f: float(np.mean([hd[str(a)][f] for a in (1, 2, 3)]))
        # AUROC and risk-coverage per annotator
        au = {str(a + 1): auroc(says[a], pk) for a in range(3)}
        au_vals = [v for v in au.values() if not math.isnan(v)]
        pos = (L == k).ravel()
        pkf = pk.ravel()
        conf = np.where(pos, pkf, np.float32(1) - pkf).astype(np.float32)
        rc = {}
        for a in range(3):
            risk = (pos != says[a].ravel()).astype(np.float64)
            e = int(risk.sum())
            aurc = rc_tie_aware(risk, conf)
            # optimal: strictly decreasing confidence in order of increasing risk
            order = np.argsort(risk, kind="stable")
            opt_conf = np.empty(n)
            opt_conf[order] = np.arange(n, 0, -1)
            optimal = rc_tie_aware(risk, opt_conf)
            values = rc_values(risk, conf, True)
            rc[str(a + 1)] = {"aurc": aurc, "eaurc": aurc - optimal, "aurc_optimal": optimal,
                              "aurc_values_loop": values, "eaurc_values_loop": values - geifman(risk),
                              "error_rate": e / n}
        g = np.var(np.stack([s.astype(np.float64) for s in says]), axis=0)
        pc = np.clip(pk.astype(np.float64), 0, 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            hb = -np.where(pc > 0, pc * np.log(pc), 0) - np.where(pc < 1, (1 - pc) * np.log(1 - pc), 0)
        organ_ncc.append(ncc(g, hb))
        out["organs"][str(k)] = {
            "name": ORGANS[ki], "consensus_voxels": int(C.sum()),
            "consensus_background_voxels": int(B.sum()), "dissensus_voxels": int(D.sum()),
            "dice": dice, "dice_monai_linewise": linewise_dice(Pk, C),
            "confidence": ((1 - m_bck) + m_org) / 2,
            "confidence_mean_prob_consensus_organ": m_org,
            "confidence_mean_prob_consensus_background": m_bck,
            "crps": crps,
            "hausdorff": {"per_annotator": hd, "mean_hd_mm": hmean("hd_mm"), "mean_hd_vox": hmean("hd_vox"),
                          "mean_hd95_mm": hmean("hd95_mm"), "mean_hd_surface_mm": hmean("hd_surface_mm")},
            "auroc": {"per_annotator": au, "mean": float(np.mean(au_vals)) if au_vals else float("nan")},
            "risk_coverage": {"per_annotator": rc,
                              "mean_aurc": float(np.mean([rc[s]["aurc"] for s in "123"])),
                              "mean_eaurc": float(np.mean([rc[s]["eaurc"] for s in "123"]))},
            "ncc": organ_ncc[-1],
            "thresholded_dice": thresholded_dice(pk, says),
        }
        # statapp's bugged variants: annotator ki's any-organ mask, risk |y - p|, confidence p
        y = (A[ki] > 0).ravel()
        compat_risk = np.abs(y.astype(np.float32) - pkf).astype(np.float64)
        compat[f"AUROC_{SHORT[ki]}"] = auroc(y, pkf)
        aurc_c = rc_values(compat_risk, pkf, False)
        compat[f"AURC_{SHORT[ki]}"] = aurc_c
        compat[f"EAURC_{SHORT[ki]}"] = aurc_c - geifman(compat_risk)
    progress("annotators")
    # per annotator
    probs_flat = flat4
    Lf = L.ravel()
    conf_max = probs_flat.max(axis=1)
    for a in range(3):
        t = A[a].ravel()
        ece, fb = ece_torchmetrics(probs_flat, t)
        correct = Lf == t
        out["annotators"][str(a + 1)] = {
            "ece": ece, "ece_softmax_fallback_applied": fb,
            "ace": ace_values(correct, conf_max, False), "accuracy_vs_pred": float(correct.mean()),
        }
        compat[f"ECE_{a + 1}"] = ece
        compat[f"ACE_{a + 1}"] = ace_values(correct, conf_max, True)
        am, lm = A[a] > 0, L > 0
        compat[f"Hausdorff_{a + 1}"] = hd_full(am, lm, (1, 1, 1)) if am.any() and lm.any() else float("nan")
    q = np.clip(probs_flat.astype(np.float64), 0, 1)
    q = q / q.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.sum(np.where(q > 0, q * np.log(q), 0), axis=1)
    out["global"] = {
        "entropy_gt_labels": label_entropy(np.stack(A)),
        "entropy_pred_labels": label_entropy(L),
        "mean_predictive_entropy": float(ent.mean()),
        "mean_ncc_organs": float(np.nanmean(organ_ncc)) if not all(map(math.isnan, organ_ncc)) else float("nan"),
    }
    for i, (a, b) in enumerate([(0, 1), (0, 2), (1, 2)]):
        compat[["NCC_GT1-2", "NCC_GT1-3", "NCC_GT2-3"][i]] = ncc(A[a].astype(np.float64), A[b].astype(np.float64))
    compat["NCC_mean"] = float(np.mean([compat["NCC_GT1-2"], compat["NCC_GT1-3"], compat["NCC_GT2-3"]]))
    for ki in range(3):
        o = out["organs"][str(ki + 1)]
        compat[f"DICE_{SHORT[ki]}"] = o["dice_monai_linewise"]
        compat[f"CONF_{SHORT[ki]}"] = o["confidence"]
        compat[f"CRPS_{SHORT[ki]}"] = o["crps"]["crps_statapp_numeric_vox"]
    compat["Entropy_GT"] = out["global"]["entropy_gt_labels"]
    compat["Entropy_Pred"] = out["global"]["entropy_pred_labels"]
    out["statapp_compat"] = compat
    return encode(out)


def encode(o):
    if isinstance(o, dict):
        return {k: encode(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [encode(v) for v in o]
    if isinstance(o, (bool, np.bool_)):
        return bool(o)
    if isinstance(o, (int, np.integer)):
        return int(o)
    if isinstance(o, (float, np.floating)):
        return real(o)
    return o


def score_files(args):
    anns = [load(p, labels=True)[0] for p in args.annotation]
    img0 = nib.load(args.annotation[0])
    z = img0.header.get_zooms()[:3]
    spacing = (float(np.float32(z[2])), float(np.float32(z[1])), float(np.float32(z[0])))
    probs = [load(p)[0] for p in args.probabilities]
    pred = load(args.prediction, labels=True)[0] if args.prediction else None
    ct = load(args.ct)[0] if args.ct else None
    case = os.path.basename(os.path.dirname(os.path.abspath(args.annotation[0])))
    name = os.path.basename(args.prediction) if args.prediction else None
    return score(anns, probs, pred, ct, spacing, args.roi, name, case)


# ---------------------------------------------------------------- fixtures
def blob(shape, center, radii, rng, wobble=0.15):
    zz, yy, xx = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    r = ((zz - center[0]) / radii[0]) ** 2 + ((yy - center[1]) / radii[1]) ** 2 + ((xx - center[2]) / radii[2]) ** 2
    return r <= 1.0 + wobble * rng.standard_normal(shape) * 0.3


def make_fixtures(out):
    rng = np.random.default_rng(20261127)
    shape_xyz = (14, 12, 9)  # i, j, k
    shape = shape_xyz[::-1]  # z, y, x

    def annotators(rng, agree=False, missing=None):
        base = np.zeros(shape, np.uint8)
        centers = {3: (4, 5, 9), 2: (4, 8, 3), 1: (4, 4, 5)}
        radii = {3: (3.5, 3.5, 4.0), 2: (2.5, 2.0, 2.0), 1: (1.6, 1.4, 2.5)}
        maps = []
        for a in range(3):
            m = np.zeros(shape, np.uint8)
            for k in (3, 2, 1):
                rr = tuple(r * (1.0 if agree else 1 + 0.18 * rng.standard_normal()) for r in radii[k])
                mask = blob(shape, centers[k], rr, np.random.default_rng(99 if agree else rng.integers(1 << 30)))
                if missing == (a, k):
                    continue
                m[mask] = k
            maps.append(m)
        return maps

    def model_probs(anns, rng, grid=None, sharp=3.0):
        mean = np.stack([(np.stack(anns) == k).mean(axis=0) for k in range(4)])
        logits = sharp * mean + 0.8 * rng.standard_normal(mean.shape)
        e = np.exp(logits - logits.max(axis=0))
        p = (e / e.sum(axis=0)).astype(np.float32)
        if grid:
            p = np.floor(p * grid) / grid
            p = p.astype(np.float32)
        return p[1:]

    def aligned(spacing_zyx):
        a = np.diag([spacing_zyx[2], spacing_zyx[1], spacing_zyx[0], 1.0])
        a[:3, 3] = [-30.0, 12.5, 40.0]
        return a

    def write(case, anns, probs, spacing=(2.5, 0.8, 0.8), pred=None, ct=None, roi="annotations",
              prob_dtype=np.float32):
        d = os.path.join(out, case)
        os.makedirs(d, exist_ok=True)
        aff = aligned(spacing)
        to_nifti = lambda arr: np.transpose(arr, (2, 1, 0))
        paths = {"annotation": [], "probabilities": []}
        for i, a in enumerate(anns):
            p = os.path.join(d, f"annotation_{i + 1}.nii.gz")
            nib.save(nib.Nifti1Image(to_nifti(a).astype(np.uint8), aff), p)
            paths["annotation"].append(os.path.basename(p))
        for i, pr in enumerate(probs):
            p = os.path.join(d, f"prob_{SHORT[i]}.nii.gz")
            if prob_dtype == np.uint16:
                img = nib.Nifti1Image(np.rint(to_nifti(pr) * 65535).astype(np.uint16), aff)
                img.header.set_data_dtype(np.uint16)
                img.header.set_slope_inter(1.0 / 65535.0, 0.0)
            else:
                img = nib.Nifti1Image(to_nifti(pr).astype(np.float32), aff)
            nib.save(img, p)
            paths["probabilities"].append(os.path.basename(p))
        args = argparse.Namespace(annotation=[os.path.join(d, f) for f in paths["annotation"]],
                                  probabilities=[os.path.join(d, f) for f in paths["probabilities"]],
                                  prediction=None, ct=None, roi=roi)
        if pred is not None:
            args.prediction = os.path.join(d, "prediction.nii.gz")
            nib.save(nib.Nifti1Image(to_nifti(pred).astype(np.uint8), aff), args.prediction)
            paths["prediction"] = "prediction.nii.gz"
        if ct is not None:
            args.ct = os.path.join(d, "ct.nii.gz")
            nib.save(nib.Nifti1Image(to_nifti(ct).astype(np.int16), aff), args.ct)
            paths["ct"] = "ct.nii.gz"
        paths["roi"] = roi
        with open(os.path.join(d, "args.json"), "w") as f:
            json.dump(paths, f, indent=1)
        with open(os.path.join(d, "expected.json"), "w") as f:
            json.dump(score_files(args), f, indent=1)

    anns = annotators(rng, missing=(1, 1))
    write("organ_missing_from_one_annotator", anns, model_probs(anns, rng))

    anns = annotators(rng)
    probs = model_probs(anns, rng)
    probs[1][:] = np.float32(0.001)  # kidney never predicted
    write("organ_absent_from_prediction", anns, probs)

    anns = annotators(rng)
    onehot = np.stack([(anns[0] == k).astype(np.float32) for k in (1, 2, 3)])
    write("perfect_onehot_prediction", anns, onehot, pred=anns[0])

    anns = annotators(rng, agree=True)
    write("all_annotators_agree", anns, model_probs(anns, rng))

    anns = annotators(rng)
    write("coarse_grid_ties", anns, model_probs(anns, rng, grid=8))

    anns = annotators(rng)
    write("anisotropic_y_ne_x", anns, model_probs(anns, rng), spacing=(3.0, 0.7, 0.9))

    anns = annotators(rng)
    probs = model_probs(anns, rng)
    pred = np.argmax(np.concatenate([1 - probs.sum(axis=0, keepdims=True), probs]), axis=0).astype(np.uint8)
    pred[:, 0, :] = 2  # a false-positive row outside the annotation box
    pred[:, :, -1] = 1
    write("prediction_outside_roi", anns, probs, pred=pred)

    anns = annotators(rng)
    write("no_ct_no_prediction", anns, model_probs(anns, rng, grid=64))

    anns = annotators(rng)
    ct = np.full(shape, -1000, np.int16)
    ct[:, 1:-1, 2:-1] = 40
    write("roi_ct_scaled_u16_probs", anns, model_probs(anns, rng), ct=ct, roi="ct", prob_dtype=np.uint16)

    anns = annotators(rng)
    probs = model_probs(anns, rng, sharp=6.0)
    # organ probabilities whose f32 sum exceeds 1: p0 = 1 - sum is slightly negative (softmax fallback)
    probs[:, 4, 5, 6:9] = np.array([0.3366660177707672, 0.2657163441181183, 0.39761772751808167], np.float32)[:, None]
    write("roi_none_negative_background", anns, probs, roi="none")
    print(f"wrote fixtures to {out}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("case")
    c.add_argument("--annotation", action="append", required=True)
    c.add_argument("--probabilities", nargs=3, required=True)
    c.add_argument("--prediction")
    c.add_argument("--ct")
    c.add_argument("--roi", default="annotations", choices=["annotations", "ct", "none"])
    f = sub.add_parser("fixtures")
    f.add_argument("out")
    args = ap.parse_args()
    if args.cmd == "fixtures":
        make_fixtures(args.out)
    else:
        t = time.perf_counter()
        doc = score_files(args)
        json.dump(doc, sys.stdout)
        print(f"\nreference: {time.perf_counter() - t:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
