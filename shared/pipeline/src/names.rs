//! Names the pipeline gives a meaning to. Model ids become key prefixes and metric row names, so
//! one must neither escape its prefix nor collide with an ensemble's name; case roles come from
//! `splits.json` at the bucket root and decide which cases are inferred and scored (DESIGN.md §2:
//! test cases; a case listed in no set is a test case).

use crate::{Key, KeyError, ObjectStore, StoreError};
use serde::Deserialize;

/// Where the case roles are: the bucket root.
pub const SPLITS_KEY: &str = "splits.json";

/// An id usable as one key segment: 1 to 128 letters, digits, `_`, `-` or `.`, not starting with
/// `.` (so neither `..` nor a hidden name).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Why a model id is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelIdError {
    #[error(
        "model id `{0}`: ids are 1 to 128 letters, digits, `_`, `-` and `.`, not starting with `.`"
    )]
    Characters(String),
    #[error(
        "model id `{0}`: names starting with `ensemble` belong to the ensembles (ensemble_anno<k>, ensemble_all), whose rows it would overwrite"
    )]
    Ensemble(String),
    #[error("model id `{id}`: starts like anno<k>_init<seed>_fold<f> but {why}")]
    Malformed { id: String, why: &'static str },
}

impl ModelIdError {
    /// A stable name for `errors/` entries.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Characters(_) => "InvalidModelId",
            Self::Ensemble(_) => "ReservedModelId",
            Self::Malformed { .. } => "MalformedModelId",
        }
    }
}

/// Accepts the original's `anno<k>_init<seed>_fold<f>` (k >= 1, f a number or `all`) and free ids
/// that cannot be mistaken for it: an id starting with `anno<digit>` joins `ensemble_anno<k>`, so
/// it must be the whole pattern; one starting with `ensemble` is refused.
pub fn check_model_id(id: &str) -> Result<(), ModelIdError> {
    if !valid_id(id) {
        return Err(ModelIdError::Characters(id.to_string()));
    }
    if id.to_ascii_lowercase().starts_with("ensemble") {
        return Err(ModelIdError::Ensemble(id.to_string()));
    }
    let Some(rest) = id.strip_prefix("anno") else {
        return Ok(());
    };
    if !rest.starts_with(|c: char| c.is_ascii_digit()) {
        return Ok(());
    }
    structured(rest).map_err(|why| ModelIdError::Malformed {
        id: id.to_string(),
        why,
    })
}

/// `<k>_init<seed>_fold<f>` after the `anno`.
fn structured(rest: &str) -> Result<(), &'static str> {
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    let (k, rest) = rest.split_once("_init").ok_or("has no `_init<seed>`")?;
    let (seed, fold) = rest.split_once("_fold").ok_or("has no `_fold<f>`")?;
    if !digits(k) || k.trim_start_matches('0').is_empty() {
        return Err("the annotator k is not a number from 1");
    }
    if !digits(seed) {
        return Err("the seed is not a number");
    }
    if !(digits(fold) || fold == "all") {
        return Err("the fold is neither a number nor `all`");
    }
    Ok(())
}

/// A case's role in `splits.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Train,
    Validation,
    Test,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Train, Role::Validation, Role::Test];

    pub fn name(self) -> &'static str {
        match self {
            Role::Train => "train",
            Role::Validation => "validation",
            Role::Test => "test",
        }
    }
}

/// The roles whose cases are inferred and scored (`STATAPP_INFER_SETS`, e.g. `test`,
/// `validation,test` or `all`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSet(Vec<Role>);

impl Default for RoleSet {
    /// Test cases only (DESIGN.md §2).
    fn default() -> Self {
        Self(vec![Role::Test])
    }
}

impl RoleSet {
    pub fn contains(&self, role: Role) -> bool {
        self.0.contains(&role)
    }
}

impl std::str::FromStr for RoleSet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut roles = Vec::new();
        for name in s.split(',').map(str::trim) {
            match name {
                "all" => roles.extend(Role::ALL),
                _ => roles.push(
                    Role::ALL
                        .into_iter()
                        .find(|r| r.name() == name)
                        .ok_or_else(|| {
                            format!("`{name}` is none of train, validation, test, all")
                        })?,
                ),
            }
        }
        roles.sort();
        roles.dedup();
        Ok(Self(roles))
    }
}

/// Why `splits.json` cannot say a case's role.
#[derive(Debug, thiserror::Error)]
pub enum RolesError {
    #[error(
        "{SPLITS_KEY}: {0} (expected {{\"train\": [ids], \"validation\": [ids], \"test\": [ids]}})"
    )]
    Parse(String),
    #[error("{SPLITS_KEY} lists case {case} in both `{first}` and `{second}`")]
    Conflict {
        case: String,
        first: &'static str,
        second: &'static str,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// The sets of `splits.json`. An id names a case by its id or by the original's number (`077` is
/// `UKCHLL077`, or nnU-Net's `CURVAS_077`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseRoles {
    #[serde(default)]
    train: Vec<String>,
    #[serde(default)]
    validation: Vec<String>,
    #[serde(default)]
    test: Vec<String>,
}

/// Whether the listed `id` names `case`.
pub fn names_case(id: &str, case: &str) -> bool {
    case == id
        || case.strip_prefix("UKCHLL") == Some(id)
        || case.strip_prefix("CURVAS_") == Some(id)
}

impl CaseRoles {
    /// `splits.json` at the bucket root; `None` when there is none (every case is a test case).
    pub fn read(store: &dyn ObjectStore) -> Result<Option<Self>, RolesError> {
        let key = Key::new(SPLITS_KEY)?;
        let Some(body) = store.get(&key)? else {
            return Ok(None);
        };
        Self::parse(&body).map(Some)
    }

    pub fn parse(body: &[u8]) -> Result<Self, RolesError> {
        serde_json::from_slice(body).map_err(|e| RolesError::Parse(e.to_string()))
    }

    fn set(&self, role: Role) -> &[String] {
        match role {
            Role::Train => &self.train,
            Role::Validation => &self.validation,
            Role::Test => &self.test,
        }
    }

    /// The role of `case`: the one set that lists it, or test when none does.
    pub fn role(&self, case: &str) -> Result<Role, RolesError> {
        let mut found: Option<Role> = None;
        for role in Role::ALL {
            if !self.set(role).iter().any(|id| names_case(id, case)) {
                continue;
            }
            if let Some(first) = found {
                return Err(RolesError::Conflict {
                    case: case.to_string(),
                    first: first.name(),
                    second: role.name(),
                });
            }
            found = Some(role);
        }
        Ok(found.unwrap_or(Role::Test))
    }
}

/// The role of `case` under optional roles (no `splits.json`: test).
pub fn role_of(roles: Option<&CaseRoles>, case: &str) -> Result<Role, RolesError> {
    roles.map_or(Ok(Role::Test), |r| r.role(case))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids() {
        for ok in [
            "anno1_init112233_foldall",
            "anno3_init7_fold0",
            "anno12_init1_fold4",
            "ref_nnunet",
            "annotated-model",
            "curvas.v2",
        ] {
            assert_eq!(check_model_id(ok), Ok(()), "{ok}");
        }
        let kind = |id: &str| check_model_id(id).unwrap_err().kind();
        assert_eq!(kind("ensemble_all"), "ReservedModelId");
        assert_eq!(kind("Ensemble_anno1"), "ReservedModelId");
        for bad in ["", ".hidden", "a/b", "..", "a b", &"x".repeat(129)] {
            assert_eq!(kind(bad), "InvalidModelId", "{bad:?}");
        }
        for bad in [
            "anno1",
            "anno1_init112233",
            "anno1_initX_foldall",
            "anno0_init1_fold0",
            "anno1_init1_foldx",
            "anno1_init1_fold",
        ] {
            assert_eq!(kind(bad), "MalformedModelId", "{bad}");
        }
    }

    #[test]
    fn roles_by_id_or_the_originals_number() {
        let r = CaseRoles::parse(br#"{"train": ["001", "CURVAS_002"], "validation": ["049"]}"#)
            .unwrap();
        assert_eq!(r.role("UKCHLL001").unwrap(), Role::Train);
        assert_eq!(r.role("CURVAS_001").unwrap(), Role::Train);
        assert_eq!(r.role("CURVAS_002").unwrap(), Role::Train);
        assert_eq!(r.role("UKCHLL049").unwrap(), Role::Validation);
        assert_eq!(r.role("UKCHLL0011").unwrap(), Role::Test);
        assert_eq!(r.role("other").unwrap(), Role::Test);
        assert_eq!(role_of(None, "UKCHLL001").unwrap(), Role::Test);
    }

    #[test]
    fn bad_splits_are_errors_that_name_the_file() {
        let typo = CaseRoles::parse(br#"{"tets": []}"#)
            .unwrap_err()
            .to_string();
        assert!(
            typo.contains("splits.json") && typo.contains("tets"),
            "{typo}"
        );
        let r = CaseRoles::parse(br#"{"train": ["001"], "test": ["UKCHLL001"]}"#).unwrap();
        let both = r.role("UKCHLL001").unwrap_err().to_string();
        assert!(
            both.contains("UKCHLL001") && both.contains("train"),
            "{both}"
        );
    }

    #[test]
    fn role_sets() {
        let s: RoleSet = "validation, test".parse().unwrap();
        assert!(s.contains(Role::Test) && s.contains(Role::Validation) && !s.contains(Role::Train));
        let all: RoleSet = "all".parse().unwrap();
        assert!(Role::ALL.into_iter().all(|r| all.contains(r)));
        assert!(RoleSet::default().contains(Role::Test));
        assert!("tests".parse::<RoleSet>().is_err());
    }
}
