//! The original's patient selectors: `all`, `train`, `validation`, `test`, or ids. An id is a
//! case id or the original's 3-digit number (`077` is `UKCHLL077`, or nnU-Net's `CURVAS_077`).
//! The sets come from `splits.json` at the bucket root (`{"train": [...], "validation": [...],
//! "test": [...]}`); a case listed in no set is a test case (DESIGN.md §2). The original only
//! warned about an unknown id and went on without it; here it is an error, so a typo cannot
//! silently drop a patient.

use anyhow::{Context, Result, bail};
use statapp_pipeline::{Key, ObjectStore};
use std::collections::BTreeMap;

/// The case of `id` among `cases`.
fn resolve<'a>(id: &str, cases: &'a [String]) -> Option<&'a String> {
    [
        id.to_string(),
        format!("UKCHLL{id}"),
        format!("CURVAS_{id}"),
    ]
    .into_iter()
    .find_map(|name| cases.iter().find(|c| **c == name))
}

/// `splits.json`, each set resolved to case ids (ids of cases not in the bucket are dropped).
fn splits(
    store: &dyn ObjectStore,
    cases: &[String],
) -> Result<Option<BTreeMap<String, Vec<String>>>> {
    let Some(body) = store.get(&Key::new("splits.json")?)? else {
        return Ok(None);
    };
    let sets: BTreeMap<String, Vec<String>> =
        serde_json::from_slice(&body).context("splits.json: expected {\"train\": [ids], ...}")?;
    Ok(Some(
        sets.into_iter()
            .map(|(set, ids)| {
                let found = ids
                    .iter()
                    .filter_map(|id| resolve(id, cases))
                    .cloned()
                    .collect();
                (set, found)
            })
            .collect(),
    ))
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
            let splits = splits(store, cases)?;
            match (name, splits) {
                ("test", None) => cases.to_vec(),
                (_, None) => bail!(
                    "`{name}` needs splits.json at the bucket root ({{\"train\": [...], \"validation\": [...], \"test\": [...]}}); without it every case is a test case"
                ),
                ("test", Some(s)) => {
                    let other: Vec<&String> = ["train", "validation"]
                        .iter()
                        .flat_map(|k| s.get(*k).into_iter().flatten())
                        .collect();
                    cases
                        .iter()
                        .filter(|c| !other.contains(c))
                        .cloned()
                        .collect()
                }
                (_, Some(s)) => s.get(name).cloned().unwrap_or_default(),
            }
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
    use statapp_pipeline::DirStore;

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
