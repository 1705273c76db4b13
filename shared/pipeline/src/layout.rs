//! Where uploads sit in the bucket. Cases are uploaded under `incoming/` (and, for users of the
//! original project, under its `S3_DATA_DIR`), models under `models/` (and the original's
//! `S3_ARTIFACTS_DIR/S3_MODEL_ARTIFACTS_SUBDIR`). Under a case prefix three layouts are read:
//!
//! - statapp's and the original's: `<case>/image.nii.gz`, `<case>/annotation_<k>.nii.gz`, at any
//!   depth (the case is the file's folder, so a copied `data/UKCHLL001/...` tree works as is);
//! - nnU-Net's raw layout, one dataset per annotator as the original's `download-dataset` writes
//!   them: `<Dataset>/imagesTr|imagesTs/<case>_0000.nii.gz` and
//!   `<Dataset..ANNO<k>..>/labelsTr/<case>.nii.gz`, the annotator read from the dataset's name.

use crate::Key;

/// The four files of a case, by role.
pub const ROLES: [&str; 4] = ["image", "annotation_1", "annotation_2", "annotation_3"];

/// The upload prefixes, each ending in `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefixes {
    /// Where cases are uploaded; `incoming/` first.
    pub cases: Vec<String>,
    /// Where the original uploads models; copied to `models/<id>/` (the canonical place).
    pub model_aliases: Vec<String>,
}

impl Default for Prefixes {
    fn default() -> Self {
        Self {
            cases: vec!["incoming/".into()],
            model_aliases: Vec::new(),
        }
    }
}

/// `dir` as a prefix: trimmed of slashes, `None` when empty.
fn as_prefix(dir: &str) -> Option<String> {
    let d = dir.trim().trim_matches('/');
    (!d.is_empty()).then(|| format!("{d}/"))
}

impl Prefixes {
    /// statapp's prefixes plus the original's `S3_DATA_DIR` and `S3_ARTIFACTS_DIR` /
    /// `S3_MODEL_ARTIFACTS_SUBDIR` (default `models`) where they are set.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let mut p = Self::default();
        if let Some(data) = var("S3_DATA_DIR").as_deref().and_then(as_prefix)
            && !p.cases.contains(&data)
            && !reserved(&data)
        {
            p.cases.push(data);
        }
        if let Some(artifacts) = var("S3_ARTIFACTS_DIR").as_deref().and_then(as_prefix) {
            let sub = var("S3_MODEL_ARTIFACTS_SUBDIR")
                .as_deref()
                .and_then(as_prefix)
                .unwrap_or_else(|| "models/".into());
            let alias = format!("{artifacts}{sub}");
            if !reserved(&alias) {
                p.model_aliases.push(alias);
            }
        }
        p
    }

    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Every prefix whose object-created events go to the ingest queue.
    pub fn notified(&self) -> Vec<String> {
        let mut all = self.cases.clone();
        all.push("models/".into());
        all.extend(self.model_aliases.iter().cloned());
        all
    }

    /// A key under a model alias: the model id and where its canonical copy goes
    /// (`models/<id>/<rest>`).
    pub fn model_alias(&self, key: &Key) -> Option<(String, Key)> {
        let rest = self
            .model_aliases
            .iter()
            .find_map(|p| key.as_str().strip_prefix(p.as_str()))?;
        let (id, _) = rest.split_once('/')?;
        let canonical = Key::new(format!("models/{rest}")).ok()?;
        Some((id.to_string(), canonical))
    }

    /// What a key under one of the case prefixes is (`None`: under none of them).
    pub fn case_path(&self, key: &Key) -> Option<CasePath> {
        self.cases.iter().find_map(|p| case_path(p, key))
    }
}

/// Prefixes statapp writes under: an upload prefix there would loop.
fn reserved(prefix: &str) -> bool {
    [
        "cases/",
        "preprocessed/",
        "predictions/",
        "ensembles/",
        "metrics/",
        "errors/",
        "partials/",
        "models/",
    ]
    .iter()
    .any(|r| prefix.starts_with(r) || r.starts_with(prefix))
}

/// One key under a case prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CasePath {
    /// A file of a case. `group` is a prefix holding all the case's files: listing it finds
    /// the others.
    File {
        case: String,
        role: &'static str,
        group: String,
    },
    /// Part of a layout without being a case file (`dataset.json`, a file manager's
    /// `.DS_Store`).
    Ignored,
    /// Not a file of any layout; the text says what was expected.
    Unexpected(String),
}

/// The role of a file name (`image.nii.gz`, `annotation_2.nii`, ...).
pub fn role_of(file: &str) -> Option<&'static str> {
    ROLES.iter().copied().find(|r| nifti_stem(file) == Some(*r))
}

fn nifti_stem(file: &str) -> Option<&str> {
    file.strip_suffix(".nii.gz")
        .or_else(|| file.strip_suffix(".nii"))
}

fn case_path(prefix: &str, key: &Key) -> Option<CasePath> {
    let rest = key.as_str().strip_prefix(prefix)?;
    let segs: Vec<&str> = rest.split('/').collect();
    let n = segs.len();
    let file = segs[n - 1];
    if file == "dataset.json" || file.starts_with('.') || file == "Thumbs.db" {
        return Some(CasePath::Ignored);
    }
    let join = |upto: usize| -> String { segs[..upto].iter().map(|s| format!("{s}/")).collect() };
    if n >= 3 && matches!(segs[n - 2], "imagesTr" | "imagesTs" | "labelsTr") {
        return Some(nnunet_file(
            &segs[n - 3..],
            format!("{prefix}{}", join(n - 3)),
        ));
    }
    if let (Some(role), true) = (role_of(file), n >= 2) {
        return Some(CasePath::File {
            case: segs[n - 2].to_string(),
            role,
            group: format!("{prefix}{}", join(n - 1)),
        });
    }
    Some(CasePath::Unexpected(format!(
        "a case is {prefix}<case>/{{image, annotation_1, annotation_2, annotation_3}}.nii.gz, or nnU-Net's <Dataset>/imagesTr/<case>_0000.nii.gz and <Dataset_ANNO<k>>/labelsTr/<case>.nii.gz"
    )))
}

/// `[dataset, imagesTr|imagesTs|labelsTr, file]` of nnU-Net's raw layout.
fn nnunet_file(segs: &[&str], group: String) -> CasePath {
    let (dataset, folder, file) = (segs[0], segs[1], segs[2]);
    let Some(stem) = nifti_stem(file) else {
        return CasePath::Unexpected(format!("{folder}/ holds NIfTI files (.nii.gz, .nii)"));
    };
    if folder == "labelsTr" {
        return match annotator_of(dataset) {
            Some(k) => CasePath::File {
                case: stem.to_string(),
                role: ROLES[k],
                group,
            },
            None => CasePath::Unexpected(format!(
                "dataset {dataset}: its name does not say whose labels labelsTr/ holds; name it ..._ANNO<k>_... (k = 1, 2, 3), as the original project does"
            )),
        };
    }
    match stem.rsplit_once('_') {
        Some((case, "0000")) => CasePath::File {
            case: case.to_string(),
            role: ROLES[0],
            group,
        },
        Some((_, channel)) if channel.len() == 4 && channel.bytes().all(|b| b.is_ascii_digit()) => {
            CasePath::Unexpected(format!(
                "channel {channel}: a CURVAS case has one channel (CT, _0000)"
            ))
        }
        _ => CasePath::Unexpected(format!("{folder}/ images are named <case>_0000.nii.gz")),
    }
}

/// `k` of `ANNO<k>` (any case) in a dataset name, for k in 1..=3.
fn annotator_of(dataset: &str) -> Option<usize> {
    let upper = dataset.to_ascii_uppercase();
    upper.match_indices("ANNO").find_map(|(i, _)| {
        let digits: String = upper[i + 4..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse::<usize>().ok().filter(|k| (1..=3).contains(k))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(p: &Prefixes, key: &str) -> Option<CasePath> {
        p.case_path(&Key::new(key).unwrap())
    }

    fn file(case: &str, role: &'static str, group: &str) -> Option<CasePath> {
        Some(CasePath::File {
            case: case.into(),
            role,
            group: group.into(),
        })
    }

    #[test]
    fn statapp_and_original_layouts_at_any_depth() {
        let p = Prefixes::default();
        assert_eq!(
            parse(&p, "incoming/c1/image.nii.gz"),
            file("c1", "image", "incoming/c1/")
        );
        assert_eq!(
            parse(&p, "incoming/data/UKCHLL077/annotation_3.nii"),
            file("UKCHLL077", "annotation_3", "incoming/data/UKCHLL077/")
        );
        assert_eq!(parse(&p, "cases/c1/image.nii.gz"), None);
        assert!(matches!(
            parse(&p, "incoming/image.nii.gz"),
            Some(CasePath::Unexpected(_))
        ));
        assert!(matches!(
            parse(&p, "incoming/c1/notes.txt"),
            Some(CasePath::Unexpected(_))
        ));
        assert_eq!(parse(&p, "incoming/c1/.DS_Store"), Some(CasePath::Ignored));
    }

    #[test]
    fn nnunet_raw_layout_with_one_dataset_per_annotator() {
        let p = Prefixes::default();
        let root = "incoming/nnUNet_raw/";
        assert_eq!(
            parse(
                &p,
                "incoming/nnUNet_raw/Dataset475_CURVAS_ANNO1_all/imagesTr/CURVAS_077_0000.nii.gz"
            ),
            file("CURVAS_077", "image", root)
        );
        assert_eq!(
            parse(
                &p,
                "incoming/nnUNet_raw/Dataset475_CURVAS_ANNO2_all/labelsTr/CURVAS_077.nii.gz"
            ),
            file("CURVAS_077", "annotation_2", root)
        );
        assert_eq!(
            parse(&p, "incoming/D1_anno3/labelsTr/x.nii"),
            file("x", "annotation_3", "incoming/")
        );
        for bad in [
            "incoming/Dataset1_Organs/labelsTr/x.nii.gz",
            "incoming/D_ANNO1/imagesTr/x_0001.nii.gz",
            "incoming/D_ANNO1/imagesTr/x.nii.gz",
            "incoming/D_ANNO4/labelsTr/x.nii.gz",
        ] {
            assert!(
                matches!(parse(&p, bad), Some(CasePath::Unexpected(_))),
                "{bad}"
            );
        }
        assert_eq!(
            parse(&p, "incoming/D_ANNO1/dataset.json"),
            Some(CasePath::Ignored)
        );
    }

    #[test]
    fn the_originals_prefixes_from_its_variables() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let p = Prefixes::from_vars(vars(&[
            ("S3_DATA_DIR", "data"),
            ("S3_ARTIFACTS_DIR", "artifacts/"),
        ]));
        assert_eq!(p.cases, ["incoming/", "data/"]);
        assert_eq!(p.model_aliases, ["artifacts/models/"]);
        assert_eq!(
            parse(&p, "data/UKCHLL001/image.nii.gz"),
            file("UKCHLL001", "image", "data/UKCHLL001/")
        );
        let key = Key::new("artifacts/models/anno1_init112233_foldall/x/plans.json").unwrap();
        assert_eq!(
            p.model_alias(&key),
            Some((
                "anno1_init112233_foldall".into(),
                Key::new("models/anno1_init112233_foldall/x/plans.json").unwrap()
            ))
        );
        // a prefix statapp writes under is never an upload prefix
        let p = Prefixes::from_vars(vars(&[
            ("S3_DATA_DIR", "metrics"),
            ("S3_ARTIFACTS_DIR", ""),
        ]));
        assert_eq!(p, Prefixes::default());
        assert_eq!(Prefixes::default().notified(), ["incoming/", "models/"]);
    }
}
