//! The original's patient selectors: `all`, `train`, `validation`, `test`, or ids. An id is a
//! case id or the original's 3-digit number (`077` is `UKCHLL077`, or nnU-Net's `CURVAS_077`).
//! The sets come from `splits.json` at the bucket root (`{"train": [...], "validation": [...],
//! "test": [...]}`); a case listed in no set is a test case (DESIGN.md §2). The original only
//! warned about an unknown id and went on without it; here it is an error, so a typo cannot
//! silently drop a patient.

use anyhow::{Context, Result, bail};
use statapp_pipeline::names::{names_case, role_of};
use statapp_pipeline::{CaseRoles, ObjectStore, Role};

/// The case of `id` among `cases`: the case of that id, else one the original's number names.
fn resolve<'a>(id: &str, cases: &'a [String]) -> Option<&'a String> {
    cases
        .iter()
        .find(|c| *c == id)
        .or_else(|| cases.iter().find(|c| names_case(id, c)))
}

/// The cases `selector` names among `cases` (the ingested ones), sorted.
pub fn select(
    selector: &[String],
    cases: &[String],
    store: &dyn ObjectStore,
) -> Result<Vec<String>> {
    let set = match selector {
        [] => Some("all"),
        [one] => ["all", "train", "validation", "test"]
            .into_iter()
            .find(|s| one == s),
        _ => None,
    };
    let mut out: Vec<String> = match set {
        Some("all") => cases.to_vec(),
        Some(name) => {
            let role = Role::ALL
                .into_iter()
                .find(|r| r.name() == name)
                .context("a set name")?;
            let roles = CaseRoles::read(store)?;
            if roles.is_none() && role != Role::Test {
                bail!(
                    "`{name}` needs splits.json at the bucket root ({{\"train\": [...], \"validation\": [...], \"test\": [...]}}); without it every case is a test case"
                );
            }
            let mut found = Vec::new();
            for c in cases {
                if role_of(roles.as_ref(), c)? == role {
                    found.push(c.clone());
                }
            }
            found
        }
        None => {
            let unknown: Vec<&String> = selector
                .iter()
                .filter(|id| resolve(id, cases).is_none())
                .collect();
            if !unknown.is_empty() {
                bail!(
                    "unknown patient(s) {unknown:?}: not among the {} ingested case(s)",
                    cases.len()
                );
            }
            selector
                .iter()
                .filter_map(|id| resolve(id, cases))
                .cloned()
                .collect()
        }
    };
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use statapp_pipeline::{DirStore, Key};

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn sets_ids_and_the_originals_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::open(dir.path(), "b").unwrap();
        let cases = ids(&["UKCHLL001", "UKCHLL002", "UKCHLL049", "other"]);
        assert_eq!(select(&ids(&["all"]), &cases, &store).unwrap(), cases);
        assert_eq!(select(&ids(&["test"]), &cases, &store).unwrap(), cases);
        assert!(select(&ids(&["train"]), &cases, &store).is_err());
        assert_eq!(
            select(&ids(&["002", "other", "UKCHLL002"]), &cases, &store).unwrap(),
            ids(&["UKCHLL002", "other"])
        );
        let err = select(&ids(&["003"]), &cases, &store).unwrap_err();
        assert!(err.to_string().contains("003"), "{err}");
        let splits = br#"{"train": ["001", "031"], "validation": ["049"], "test": []}"#;
        store
            .put(&Key::new("splits.json").unwrap(), splits)
            .unwrap();
        assert_eq!(
            select(&ids(&["train"]), &cases, &store).unwrap(),
            ids(&["UKCHLL001"])
        );
        assert_eq!(
            select(&ids(&["validation"]), &cases, &store).unwrap(),
            ids(&["UKCHLL049"])
        );
        assert_eq!(
            select(&ids(&["test"]), &cases, &store).unwrap(),
            ids(&["UKCHLL002", "other"])
        );
    }

    #[test]
    fn the_originals_sets_are_disjoint_and_cover_89_patients() {
        let mut all: Vec<&str> = ORIGINAL_TRAIN
            .iter()
            .chain(&ORIGINAL_VALIDATION)
            .chain(&ORIGINAL_TEST)
            .copied()
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 19 + 5 + 65);
    }
}

/// The original project's fixed patient sets (its `core/constants.py`; `031` appears twice in its
/// train list and once here).
const ORIGINAL_TRAIN: [&str; 19] = [
    "001", "002", "009", "011", "015", "017", "021", "023", "031", "034", "035", "037", "038",
    "039", "042", "043", "045", "046", "048",
];
const ORIGINAL_VALIDATION: [&str; 5] = ["049", "051", "058", "059", "061"];
const ORIGINAL_TEST: [&str; 65] = [
    "003", "005", "007", "008", "010", "013", "018", "020", "025", "026", "027", "028", "030",
    "032", "052", "053", "054", "055", "057", "062", "064", "066", "067", "069", "070", "071",
    "073", "075", "076", "077", "078", "080", "081", "082", "083", "084", "086", "087", "089",
    "090", "091", "092", "093", "094", "095", "096", "097", "098", "099", "100", "101", "102",
    "103", "104", "105", "106", "107", "108", "109", "110", "111", "112", "113", "114", "115",
];

#[derive(Debug, clap::Args)]
pub struct SplitsArgs {
    /// Where to write it; copy it to the bucket root (`BUCKET/splits.json`).
    #[arg(short, long, default_value = "splits.json")]
    output: std::path::PathBuf,
}

/// `statapp original-splits`: the original's train/validation/test sets as `splits.json`, with
/// its case ids (`UKCHLL<NNN>`).
pub fn write_original_splits(args: SplitsArgs) -> Result<()> {
    let ids = |set: &[&str]| -> Vec<String> { set.iter().map(|n| format!("UKCHLL{n}")).collect() };
    let doc = serde_json::json!({
        "train": ids(&ORIGINAL_TRAIN),
        "validation": ids(&ORIGINAL_VALIDATION),
        "test": ids(&ORIGINAL_TEST),
    });
    let text = serde_json::to_string_pretty(&doc)? + "\n";
    statapp_volume::write_atomic(&args.output, text.as_bytes())
        .with_context(|| args.output.display().to_string())?;
    println!(
        "{}: {} train, {} validation, {} test patients",
        args.output.display(),
        ORIGINAL_TRAIN.len(),
        ORIGINAL_VALIDATION.len(),
        ORIGINAL_TEST.len()
    );
    Ok(())
}
