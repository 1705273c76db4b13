//! What the bucket holds, stage by stage, read from the objects themselves (the markers each
//! stage writes last): for `statapp status` and for re-queuing metric jobs.

use crate::StageError;
use crate::ingest::{INGESTED, registered_models};
use crate::score::COMBINED;
use statapp_nnunet::ensemble::SEGMENTATION_FILE;
use statapp_pipeline::jobs::MetricsJob;
use statapp_pipeline::{Key, ObjectStore, Prefixes};
use std::collections::BTreeMap;
use std::time::SystemTime;

/// Cases with `cases/<case>/ingested.json`, sorted.
pub fn ingested_cases(store: &dyn ObjectStore) -> Result<Vec<String>, StageError> {
    Ok(store
        .list("cases/")?
        .iter()
        .filter_map(|k| {
            let s: Vec<&str> = k.segments().collect();
            (s.len() == 3 && s[2] == INGESTED).then(|| s[1].to_string())
        })
        .collect())
}

/// Every complete prediction and ensemble (`<root>/<name>/<case>/segmentation.nii.gz`, written
/// last), as the metric job that scores it.
pub fn scorable(store: &dyn ObjectStore) -> Result<Vec<MetricsJob>, StageError> {
    let mut jobs = Vec::new();
    for root in ["predictions", "ensembles"] {
        for k in store.list(&format!("{root}/"))? {
            let s: Vec<&str> = k.segments().collect();
            if s.len() == 4 && s[3] == SEGMENTATION_FILE {
                jobs.push(MetricsJob {
                    case: s[2].to_string(),
                    name: s[1].to_string(),
                    source: format!("{root}/{}", s[1]),
                });
            }
        }
    }
    Ok(jobs)
}

/// One `errors/<case>.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ErrorEntry {
    pub case: String,
    pub kind: String,
    pub file: String,
    pub message: String,
    /// Seconds since the epoch.
    pub modified: Option<u64>,
}

/// The bucket stage by stage.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Survey {
    /// Files under the case upload prefixes.
    pub uploaded_files: usize,
    pub ingested: usize,
    pub models: Vec<String>,
    /// Cases predicted, per model.
    pub predicted: BTreeMap<String, usize>,
    /// Cases ensembled, per ensemble.
    pub ensembled: BTreeMap<String, usize>,
    /// Metric rows (`metrics/rows/<case>/<name>.csv`).
    pub scored: usize,
    /// When `metrics/combined.csv` last changed (seconds since the epoch).
    pub combined_modified: Option<u64>,
    /// The latest `errors/` entries first.
    pub errors: Vec<ErrorEntry>,
}

fn epoch_secs(t: Option<SystemTime>) -> Option<u64> {
    t.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
}

/// Reads the bucket; `max_errors` bounds the `errors/` entries kept (the latest first).
pub fn survey(
    store: &dyn ObjectStore,
    prefixes: &Prefixes,
    max_errors: usize,
) -> Result<Survey, StageError> {
    let mut uploaded_files = 0;
    for p in &prefixes.cases {
        uploaded_files += store.list(p)?.len();
    }
    let (mut predicted, mut ensembled) = (BTreeMap::new(), BTreeMap::new());
    for job in scorable(store)? {
        let counts = if job.source.starts_with("ensembles/") {
            &mut ensembled
        } else {
            &mut predicted
        };
        *counts.entry(job.name).or_insert(0) += 1;
    }
    let scored = store
        .list("metrics/rows/")?
        .iter()
        .filter(|k| k.as_str().ends_with(".csv"))
        .count();
    Ok(Survey {
        uploaded_files,
        ingested: ingested_cases(store)?.len(),
        models: registered_models(store)?,
        predicted,
        ensembled,
        scored,
        combined_modified: epoch_secs(store.modified(&Key::new(COMBINED)?)?),
        errors: latest_errors(store, max_errors)?,
    })
}

fn latest_errors(store: &dyn ObjectStore, max: usize) -> Result<Vec<ErrorEntry>, StageError> {
    let mut out = Vec::new();
    for k in store.list("errors/")? {
        let Some(body) = store.get(&k)? else { continue };
        let doc: serde_json::Value =
            serde_json::from_slice(&body).map_err(StageError::json(k.to_string()))?;
        let field = |name: &str| doc[name].as_str().unwrap_or("(missing)").to_string();
        out.push(ErrorEntry {
            case: field("case"),
            kind: field("kind"),
            file: field("file"),
            message: field("message"),
            modified: epoch_secs(store.modified(&k)?),
        });
    }
    out.sort_by(|a, b| b.modified.cmp(&a.modified).then(a.case.cmp(&b.case)));
    out.truncate(max);
    Ok(out)
}
