#!/usr/bin/env python3
"""Reference 5-fold splits: nnU-Net's generate_crossval_split, i.e. scikit-learn's
KFold(n_splits=5, shuffle=True, random_state=12345) over the sorted case ids.

Writes shared/nnunet/tests/fixtures/splits/splits_<n>.json for several dataset sizes; the Rust
test rebuilds the same folds without Python.
Usage: python tools/splits_reference.py   (needs scikit-learn, see requirements-reference.txt)
"""
import json
import pathlib

import numpy as np
from sklearn.model_selection import KFold

OUT = pathlib.Path(__file__).resolve().parent.parent / "shared/nnunet/tests/fixtures/splits"


def crossval_split(keys, seed=12345, n_splits=5):
    keys = np.sort(np.array(keys))
    folds = []
    for train_idx, val_idx in KFold(n_splits=n_splits, shuffle=True, random_state=seed).split(keys):
        folds.append({"train": [str(k) for k in keys[train_idx]], "val": [str(k) for k in keys[val_idx]]})
    return folds


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for n in (5, 7, 20, 23, 30, 64, 101):
        ids = [f"case_{i:03d}" for i in range(n)]
        (OUT / f"splits_{n}.json").write_text(json.dumps(crossval_split(ids), indent=2) + "\n")
    print(f"wrote splits fixtures to {OUT}")


if __name__ == "__main__":
    main()
