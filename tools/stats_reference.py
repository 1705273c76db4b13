#!/usr/bin/env python3
"""Reference values for the report's statistics (shared/report/src/stats.rs), from the libraries
researchers use: scipy.stats.wilcoxon with its defaults (zero_method="wilcox", correction=False,
two-sided, method="auto": exact distribution without ties or zeros up to 50 pairs, an exhaustive
sign-flip permutation test up to 13 pairs otherwise, the normal approximation beyond),
statsmodels' Holm correction, numpy's mean, median and linear-interpolated quartiles. The
matched-pairs rank-biserial correlation, which scipy does not compute, is written out literally
from scipy's own ranks.

Usage:
  stats_reference.py OUT_DIR     # stats_reference.json, and two small studies with the tests
                                 # `statapp report` must find: study_statapp.csv (statapp's
                                 # columns) and study_original.csv (the original's 35 columns in
                                 # its published order, patient ids UKCHLL<NNN> or bare numbers),
                                 # each with <name>_expected.json

Requires: numpy, scipy==1.17.1, statsmodels (not needed by the test suite: the fixture it writes
is committed).
"""
import csv
import json
import os
import sys

import numpy as np
import scipy
from scipy import stats
from statsmodels.stats.multitest import multipletests


def rank_biserial(x, y):
    d = np.asarray(x, float) - np.asarray(y, float)
    d = d[d != 0]
    if d.size == 0:
        return None
    r = stats.rankdata(np.abs(d))
    plus, minus = r[d > 0].sum(), r[d < 0].sum()
    return float((plus - minus) / (plus + minus))


def num(v):
    v = float(v)
    return None if np.isnan(v) else v


def wilcoxon_cases(rng):
    cases = []

    def add(name, x, y):
        x, y = [float(v) for v in x], [float(v) for v in y]
        res = stats.wilcoxon(x, y)
        cases.append({
            "name": name, "x": x, "y": y,
            "statistic": num(res.statistic), "pvalue": num(res.pvalue),
            "effect_size": rank_biserial(x, y),
        })

    for n in [1, 2, 3, 5, 8, 10, 13, 14, 20, 30, 50, 51, 61, 120]:
        x = rng.normal(0.0, 1.0, n)
        add(f"continuous n={n}", x + rng.normal(0.3, 1.0, n), x)
    for n in [4, 6, 9, 12, 13, 14, 25, 60]:
        # metric values on a coarse grid: tied absolute differences
        x = np.round(rng.uniform(0, 1, n), 1)
        y = np.round(x + rng.choice([-0.2, -0.1, 0.1, 0.2, 0.3], n), 1)
        add(f"ties n={n}", y, x)
    for n in [5, 11, 13, 15, 40, 70]:
        x = np.round(rng.uniform(0, 1, n), 2)
        y = x.copy()
        k = max(1, n // 3)
        y[:k] = np.round(y[:k] + rng.choice([-0.05, 0.05, 0.1], k), 2)
        add(f"mostly zero differences n={n}", y, x)
    for n in [6, 20]:
        x = rng.uniform(0, 1, n)
        y = x + 0.25
        y[0] = x[0]
        add(f"one zero n={n}", y, x)
    add("all zero n=7", [0.5] * 7, [0.5] * 7)
    add("all zero n=20", [0.5] * 20, [0.5] * 20)
    add("all positive n=9", np.arange(1, 10) * 0.01 + 1, np.ones(9))
    add("ECE-like n=12", rng.uniform(0.002, 0.004, 12), rng.uniform(0.003, 0.005, 12))
    return cases


def holm_cases(rng):
    out = []
    for m in [1, 2, 4, 7, 12]:
        p = rng.uniform(0, 0.2, m)
        p[0] = 0.0001
        if m > 3:
            p[2] = p[1]  # a tie
        rej, adj, _, _ = multipletests(p, alpha=0.05, method="holm")
        out.append({"p": [float(v) for v in p], "adjusted": [float(v) for v in adj]})
    return out


def describe_cases(rng):
    out = []
    for n in [1, 2, 3, 4, 7, 10, 61]:
        v = rng.normal(0, 1, n)
        out.append({
            "values": [float(x) for x in v],
            "mean": float(np.mean(v)),
            "median": float(np.median(v)),
            "q1": float(np.percentile(v, 25)),
            "q3": float(np.percentile(v, 75)),
        })
    return out


ORIGINAL_ORDER = (
    "CT,DICE_panc,DICE_kidn,DICE_livr,CONF_panc,CONF_kidn,CONF_livr,Entropy_GT,Entropy_Pred,"
    "Hausdorff_1,Hausdorff_2,Hausdorff_3,ECE_1,ECE_2,ECE_3,ACE_1,ACE_2,ACE_3,AUROC_panc,"
    "AUROC_kidn,AUROC_livr,AURC_panc,AURC_kidn,AURC_livr,EAURC_panc,EAURC_kidn,EAURC_livr,"
    "CRPS_panc,CRPS_kidn,CRPS_livr,NCC_GT1-2,NCC_GT1-3,NCC_GT2-3,NCC_mean,Patient_ID"
).split(",")
MODELS = [f"anno{k}_init{s}_foldall" for k in (1, 2, 3) for s in (112233, 445566, 778899)]
ENSEMBLES = ["ensemble_anno1", "ensemble_anno2", "ensemble_anno3", "ensemble_all"]


def make_study(rng, patients, columns, undefined):
    """Rows per patient and model: each column a patient effect, a model effect and noise, the
    ensembles a little better; values on a coarse grid for ties; some cells empty."""
    rows = []
    for i, p in enumerate(patients):
        base = {c: rng.uniform(0.2, 0.9) for c in columns}
        for m in MODELS + (ENSEMBLES if i != 3 else []):  # patient 3 has no ensembles
            shift = -0.03 if m.startswith("ensemble") else rng.normal(0, 0.03)
            row = {"Patient_ID": p, "CT": m}
            for c in columns:
                v = round(base[c] + shift + rng.normal(0, 0.02), 3)
                row[c] = "" if (c in undefined and rng.uniform() < 0.15) else repr(v)
            rows.append(row)
    return rows


def expected_tests(rows, parts):
    """The report's protocol: per patient the mean of the defined single-model values, paired
    with each ensemble's defined value; scipy's wilcoxon; Holm over the ensembles of a part."""
    def value(row, cols):
        cells = [row[c] for c in cols]
        return float("nan") if any(c == "" for c in cells) else float(np.mean([float(c) for c in cells]))

    out = []
    for metric, organ, cols in parts:
        singles = {}
        for r in rows:
            if not r["CT"].startswith("ensemble"):
                v = value(r, cols)
                if not np.isnan(v):
                    singles.setdefault(r["Patient_ID"], []).append(v)
        tests = []
        for e in ENSEMBLES:
            x, y = [], []
            for r in rows:
                v = value(r, cols)
                if r["CT"] == e and not np.isnan(v) and r["Patient_ID"] in singles:
                    x.append(v)
                    y.append(float(np.mean(singles[r["Patient_ID"]])))
            res = stats.wilcoxon(x, y)
            tests.append({"metric": metric, "organ": organ, "group": e, "n": len(x),
                          "statistic": num(res.statistic), "p": num(res.pvalue),
                          "effect_size": rank_biserial(x, y),
                          "median_single": float(np.median(y)), "median_ensemble": float(np.median(x))})
        _, adj, _, _ = multipletests([t["p"] for t in tests], method="holm")
        for t, a in zip(tests, adj):
            t["p_holm"] = float(a)
        out.extend(tests)
    return out


def write_study(out_dir, name, rows, header, parts):
    with open(os.path.join(out_dir, f"{name}.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({h: r.get(h, "") for h in header})
    with open(os.path.join(out_dir, f"{name}_expected.json"), "w") as f:
        json.dump(expected_tests(rows, parts), f, indent=1)
        f.write("\n")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out_dir = sys.argv[1]
    rng = np.random.default_rng(18)
    doc = {
        "scipy": scipy.__version__,
        "wilcoxon": wilcoxon_cases(rng),
        "holm": holm_cases(rng),
        "describe": describe_cases(rng),
    }
    with open(os.path.join(out_dir, "stats_reference.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")

    organs = ["panc", "kidn", "livr"]
    names = {"panc": "pancreas", "kidn": "kidney", "livr": "liver"}
    # statapp's columns (a subset: the report reads columns by name)
    cols = [f"dice_{o}" for o in organs] + [f"hd95_mm_{o}" for o in organs] + ["ece_a1", "ece_a2", "ece_a3"]
    patients = [f"case_{i:02d}" for i in range(12)]
    rows = make_study(rng, patients, cols, undefined={"hd95_mm_panc", "ece_a2"})
    parts = [("dice", names[o], [f"dice_{o}"]) for o in organs]
    parts += [("hd95", names[o], [f"hd95_mm_{o}"]) for o in organs]
    parts += [("ece", "all", ["ece_a1", "ece_a2", "ece_a3"])]
    write_study(out_dir, "study_statapp", rows, ["Patient_ID", "CT"] + cols, parts)

    # the original's 35 columns in its published order, mixed patient id spellings
    patients = [f"UKCHLL{i:03d}" if i % 2 else str(i) for i in range(3, 17)]
    metric_cols = [c for c in ORIGINAL_ORDER if c not in ("CT", "Patient_ID")]
    rows = make_study(rng, patients, metric_cols, undefined={"Hausdorff_2"})
    parts = [("ece", "all", ["ECE_1", "ECE_2", "ECE_3"]), ("ace", "all", ["ACE_1", "ACE_2", "ACE_3"]),
             ("hausdorff", "all", ["Hausdorff_1", "Hausdorff_2", "Hausdorff_3"])]
    parts += [("dice", names[o], [f"DICE_{o}"]) for o in organs]
    write_study(out_dir, "study_original", rows, ORIGINAL_ORDER, parts)


if __name__ == "__main__":
    main()
