//! nnU-Net's 5-fold cross-validation split (`splits_final.json`): scikit-learn's
//! `KFold(n_splits=5, shuffle=True, random_state=12345)` over the sorted case ids. The shuffle is
//! numpy's legacy `RandomState` (MT19937 seeded with `init_genrand`, Fisher-Yates with masked
//! rejection sampling), reproduced here so the folds are the ones nnU-Net would make.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// nnU-Net's split seed and fold count.
pub const SPLIT_SEED: u32 = 12345;
pub const N_FOLDS: usize = 5;
pub const SPLITS_FILE: &str = "splits_final.json";

/// One fold: training and validation case ids (nnU-Net's `{"train": [...], "val": [...]}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fold {
    pub train: Vec<String>,
    pub val: Vec<String>,
}

/// Which fold to train: one of the cross-validation folds, or every case (`all`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FoldSpec {
    Index(usize),
    All,
}

impl std::fmt::Display for FoldSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FoldSpec::Index(i) => write!(f, "{i}"),
            FoldSpec::All => f.write_str("all"),
        }
    }
}

impl std::str::FromStr for FoldSpec {
    type Err = SplitError;
    fn from_str(s: &str) -> Result<Self, SplitError> {
        match s {
            "all" => Ok(FoldSpec::All),
            _ => s
                .parse::<usize>()
                .ok()
                .filter(|i| *i < N_FOLDS)
                .map(FoldSpec::Index)
                .ok_or_else(|| SplitError::BadFold(s.to_string())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    #[error("fold must be `all` or 0..4, got `{0}`")]
    BadFold(String),
    #[error("{n} case(s) cannot make {N_FOLDS} folds: use fold `all`")]
    TooFewCases { n: usize },
    #[error("fold {fold} is not in {path} ({folds} folds)")]
    MissingFold {
        path: PathBuf,
        fold: usize,
        folds: usize,
    },
    #[error("{path}: {detail}")]
    File { path: PathBuf, detail: String },
}

/// MT19937 as numpy's legacy `RandomState(int)`.
struct Mt19937 {
    state: [u32; 624],
    index: usize,
}

impl Mt19937 {
    fn new(seed: u32) -> Self {
        let mut state = [0u32; 624];
        state[0] = seed;
        for i in 1..624 {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        Self { state, index: 624 }
    }

    fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            for i in 0..624 {
                let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % 624] & 0x7fff_ffff);
                let mut v = self.state[(i + 397) % 624] ^ (y >> 1);
                if y & 1 != 0 {
                    v ^= 0x9908_b0df;
                }
                self.state[i] = v;
            }
            self.index = 0;
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// numpy's `random_interval(max)`: uniform in [0, max] by masked rejection.
    fn interval(&mut self, max: u32) -> u32 {
        if max == 0 {
            return 0;
        }
        let mut mask = max;
        for shift in [1, 2, 4, 8, 16] {
            mask |= mask >> shift;
        }
        loop {
            let v = self.next_u32() & mask;
            if v <= max {
                return v;
            }
        }
    }
}

/// `RandomState(seed).shuffle(arange(n))`.
fn shuffled_indices(n: usize, seed: u32) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    let mut mt = Mt19937::new(seed);
    for i in (1..n).rev() {
        let j = mt.interval(i as u32) as usize;
        idx.swap(i, j);
    }
    idx
}

/// nnU-Net's `generate_crossval_split` over the sorted case ids.
pub fn crossval_split(
    case_ids: &[String],
    seed: u32,
    n_splits: usize,
) -> Result<Vec<Fold>, SplitError> {
    let mut keys = case_ids.to_vec();
    keys.sort();
    let n = keys.len();
    if n < n_splits {
        return Err(SplitError::TooFewCases { n });
    }
    let order = shuffled_indices(n, seed);
    let mut folds = Vec::with_capacity(n_splits);
    let mut start = 0;
    for f in 0..n_splits {
        let size = n / n_splits + usize::from(f < n % n_splits);
        let mut in_val = vec![false; n];
        for &i in &order[start..start + size] {
            in_val[i] = true;
        }
        start += size;
        let pick = |want: bool| -> Vec<String> {
            (0..n)
                .filter(|&i| in_val[i] == want)
                .map(|i| keys[i].clone())
                .collect()
        };
        folds.push(Fold {
            train: pick(false),
            val: pick(true),
        });
    }
    Ok(folds)
}

/// The folds of `dir/splits_final.json`, created (nnU-Net's default split) when absent, so that
/// every model trained from the same preprocessed data uses the same folds.
pub fn load_or_create(dir: &Path, case_ids: &[String]) -> Result<Vec<Fold>, SplitError> {
    let path = dir.join(SPLITS_FILE);
    let err = |e: &dyn std::fmt::Display| SplitError::File {
        path: path.clone(),
        detail: e.to_string(),
    };
    if path.exists() {
        let text = std::fs::read_to_string(&path).map_err(|e| err(&e))?;
        return serde_json::from_str(&text).map_err(|e| err(&e));
    }
    let folds = crossval_split(case_ids, SPLIT_SEED, N_FOLDS)?;
    let text = serde_json::to_string_pretty(&folds).map_err(|e| err(&e))? + "\n";
    statapp_volume::write_atomic(&path, text.as_bytes()).map_err(|e| err(&e))?;
    Ok(folds)
}

/// Training and validation ids of a fold; fold `all` trains and validates on every case, as
/// nnU-Net does.
pub fn fold_cases(dir: &Path, case_ids: &[String], fold: FoldSpec) -> Result<Fold, SplitError> {
    match fold {
        FoldSpec::All => {
            let mut ids = case_ids.to_vec();
            ids.sort();
            Ok(Fold {
                train: ids.clone(),
                val: ids,
            })
        }
        FoldSpec::Index(i) => {
            let folds = load_or_create(dir, case_ids)?;
            folds.get(i).cloned().ok_or(SplitError::MissingFold {
                path: dir.join(SPLITS_FILE),
                fold: i,
                folds: folds.len(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first outputs of MT19937 seeded with init_genrand(5489), from the reference
    /// implementation's published test vector.
    #[test]
    fn mt19937_reference_vector() {
        let mut mt = Mt19937::new(5489);
        let first: Vec<u32> = (0..3).map(|_| mt.next_u32()).collect();
        assert_eq!(first, vec![3_499_211_612, 581_869_302, 3_890_346_734]);
    }

    #[test]
    fn folds_partition_the_cases() {
        let ids: Vec<String> = (0..23).map(|i| format!("case_{i:03}")).collect();
        let folds = crossval_split(&ids, SPLIT_SEED, 5).unwrap();
        let sizes: Vec<usize> = folds.iter().map(|f| f.val.len()).collect();
        assert_eq!(sizes, vec![5, 5, 5, 4, 4]);
        let mut all: Vec<String> = folds.iter().flat_map(|f| f.val.clone()).collect();
        all.sort();
        assert_eq!(all, ids);
        for f in &folds {
            assert_eq!(f.train.len() + f.val.len(), 23);
            assert!(f.val.iter().all(|v| !f.train.contains(v)));
        }
        assert!("5".parse::<FoldSpec>().is_err());
        assert_eq!("all".parse::<FoldSpec>().unwrap(), FoldSpec::All);
    }
}
