#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The 5-fold splits equal scikit-learn's KFold(5, shuffle=True, random_state=12345) over sorted
//! ids, as nnU-Net makes them (fixtures from tools/splits_reference.py).

use statapp_nnunet::splits::{Fold, FoldSpec, SPLIT_SEED, crossval_split, fold_cases};
use std::path::Path;

#[test]
fn folds_equal_scikit_learn() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/splits");
    let mut checked = 0;
    for n in [5, 7, 20, 23, 30, 64, 101] {
        let text = std::fs::read_to_string(dir.join(format!("splits_{n}.json"))).unwrap();
        let expected: Vec<Fold> = serde_json::from_str(&text).unwrap();
        // shuffled input order: the split sorts the ids first, as nnU-Net does
        let ids: Vec<String> = (0..n).rev().map(|i| format!("case_{i:03}")).collect();
        assert_eq!(
            crossval_split(&ids, SPLIT_SEED, 5).unwrap(),
            expected,
            "n = {n}"
        );
        checked += 1;
    }
    assert_eq!(checked, 7);
}

#[test]
fn splits_file_is_written_once_and_reused() {
    let tmp = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..12).map(|i| format!("case_{i:03}")).collect();
    let f0 = fold_cases(tmp.path(), &ids, FoldSpec::Index(0)).unwrap();
    assert!(tmp.path().join("splits_final.json").exists());
    // a hand-edited split file wins over the default, as in nnU-Net
    let custom = vec![
        Fold {
            train: ids[..6].to_vec(),
            val: ids[6..].to_vec(),
        };
        5
    ];
    std::fs::write(
        tmp.path().join("splits_final.json"),
        serde_json::to_string(&custom).unwrap(),
    )
    .unwrap();
    let f0b = fold_cases(tmp.path(), &ids, FoldSpec::Index(0)).unwrap();
    assert_ne!(f0, f0b);
    assert_eq!(f0b.val, ids[6..].to_vec());
    let all = fold_cases(tmp.path(), &ids, FoldSpec::All).unwrap();
    assert_eq!(all.train, ids);
    assert_eq!(all.val, ids);
}
