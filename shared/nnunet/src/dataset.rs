//! Datasets in the two layouts the project accepts, viewed through one annotator's labels:
//! the bucket layout `incoming/<case>/{image, annotation_<k>}.nii.gz` (with optional `splits.json`
//! at the root) and nnU-Net's raw layout `{dataset.json, imagesTr/<case>_0000.nii.gz,
//! labelsTr/<case>.nii.gz, imagesTs/}`.

use statapp_pipeline::names::{CaseRoles, Role, RolesError, role_of};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{path}: {detail}")]
    Io { path: PathBuf, detail: String },
    #[error("{0}: neither a bucket root (incoming/) nor an nnU-Net raw dataset (dataset.json)")]
    UnknownLayout(PathBuf),
    #[error("unknown case id(s): {0}")]
    UnknownCases(String),
    #[error("{path}: {source}")]
    Roles {
        path: PathBuf,
        #[source]
        source: RolesError,
    },
    /// A case `splits.json` lists in two sets.
    #[error(transparent)]
    Role(#[from] RolesError),
}

/// One case: its image and, when the annotator drew it, its labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseFiles {
    pub id: String,
    pub image: PathBuf,
    pub labels: Option<PathBuf>,
}

/// Which cases to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseSet {
    Train,
    Validation,
    /// Listed as test, or listed nowhere.
    Test,
    All,
    Ids(Vec<String>),
}

impl std::str::FromStr for CaseSet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "train" => CaseSet::Train,
            "validation" => CaseSet::Validation,
            "test" => CaseSet::Test,
            "all" => CaseSet::All,
            ids => CaseSet::Ids(ids.split(',').map(|s| s.trim().to_string()).collect()),
        })
    }
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, DatasetError> {
    let entries = std::fs::read_dir(dir).map_err(|e| DatasetError::Io {
        path: dir.to_path_buf(),
        detail: e.to_string(),
    })?;
    let mut out: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    out.sort();
    Ok(out)
}

/// The cases of a dataset root for annotator `annotator` (1-3; nnU-Net layouts have one).
pub fn list_cases(root: &Path, annotator: usize) -> Result<Vec<CaseFiles>, DatasetError> {
    if root.join("incoming").is_dir() {
        let mut out = Vec::new();
        for dir in read_dir_sorted(&root.join("incoming"))? {
            let image = dir.join("image.nii.gz");
            if !dir.is_dir() || !image.is_file() {
                continue;
            }
            let labels = dir.join(format!("annotation_{annotator}.nii.gz"));
            out.push(CaseFiles {
                id: dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                image,
                labels: labels.is_file().then_some(labels),
            });
        }
        Ok(out)
    } else if root.join("dataset.json").is_file() {
        let mut out = Vec::new();
        for sub in ["imagesTr", "imagesTs"] {
            let dir = root.join(sub);
            if !dir.is_dir() {
                continue;
            }
            for image in read_dir_sorted(&dir)? {
                let name = image
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let Some(id) = name.strip_suffix("_0000.nii.gz") else {
                    continue;
                };
                let labels = root.join("labelsTr").join(format!("{id}.nii.gz"));
                out.push(CaseFiles {
                    id: id.to_string(),
                    image: image.clone(),
                    labels: (sub == "imagesTr" && labels.is_file()).then_some(labels),
                });
            }
        }
        Ok(out)
    } else {
        Err(DatasetError::UnknownLayout(root.to_path_buf()))
    }
}

/// Reads `splits.json` at the root (statapp-pipeline's [`CaseRoles`], the bucket's own rules);
/// `None` when there is none: every case is a test case.
pub fn read_splits(root: &Path) -> Result<Option<CaseRoles>, DatasetError> {
    let path = root.join("splits.json");
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read(&path).map_err(|e| DatasetError::Io {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    CaseRoles::parse(&text)
        .map(Some)
        .map_err(|source| DatasetError::Roles { path, source })
}

/// The cases of a set, in id order.
pub fn select(
    cases: &[CaseFiles],
    roles: Option<&CaseRoles>,
    set: &CaseSet,
) -> Result<Vec<CaseFiles>, DatasetError> {
    let role = match set {
        CaseSet::All => return Ok(cases.to_vec()),
        CaseSet::Train => Role::Train,
        CaseSet::Validation => Role::Validation,
        CaseSet::Test => Role::Test,
        CaseSet::Ids(list) => {
            let known: BTreeSet<&str> = cases.iter().map(|c| c.id.as_str()).collect();
            let unknown: Vec<&str> = list
                .iter()
                .map(String::as_str)
                .filter(|i| !known.contains(i))
                .collect();
            if !unknown.is_empty() {
                return Err(DatasetError::UnknownCases(unknown.join(", ")));
            }
            return Ok(cases
                .iter()
                .filter(|c| list.contains(&c.id))
                .cloned()
                .collect());
        }
    };
    let mut out = Vec::new();
    for c in cases {
        if role_of(roles, &c.id)? == role {
            out.push(c.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(id: &str) -> CaseFiles {
        CaseFiles {
            id: id.into(),
            image: PathBuf::from(id),
            labels: None,
        }
    }

    #[test]
    fn sets_follow_the_splits() {
        let cases: Vec<CaseFiles> = ["a", "b", "c", "d"].map(case).to_vec();
        let splits =
            CaseRoles::parse(br#"{"train": ["a"], "validation": ["b"], "test": ["c"]}"#).unwrap();
        let splits = Some(&splits);
        let ids = |s: CaseSet| {
            select(&cases, splits, &s)
                .unwrap()
                .into_iter()
                .map(|c| c.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(CaseSet::Train), ["a"]);
        assert_eq!(
            ids(CaseSet::Test),
            ["c", "d"],
            "unlisted cases are test cases"
        );
        assert_eq!(ids(CaseSet::All).len(), 4);
        assert_eq!(ids("b,d".parse().unwrap()), ["b", "d"]);
        assert!(select(&cases, splits, &"zz".parse().unwrap()).is_err());
    }
}
