//! Metrics and merge: one CSV row per (case, model or ensemble) under
//! `metrics/rows/<case>/<name>.csv`, and `metrics/combined.csv` rebuilt from every row.

use crate::StageError;
use crate::digests::{RowInputs, annotations_digest};
use statapp_metrics::merge::{Table, parse_rows, render, upsert};
use statapp_metrics::{CasePaths, RoiMode, score_files};
use statapp_pipeline::jobs::{Job, MergeJob, MetricsJob};
use statapp_pipeline::{JobQueue, Key, ObjectStore};
use std::path::Path;

pub const COMBINED: &str = "metrics/combined.csv";
const ROWS: &str = "metrics/rows/";
const PROBABILITIES: [&str; 3] = ["prob_panc.nii.gz", "prob_kidn.nii.gz", "prob_livr.nii.gz"];

/// Scores one prediction against `cases/<case>/annotation_{1,2,3}.nii.gz`, writes its row and
/// asks for a merge. Returns the row's key.
pub fn handle_metrics(
    job: &MetricsJob,
    store: &dyn ObjectStore,
    merge: &dyn JobQueue,
) -> Result<Key, StageError> {
    let scratch = tempfile::tempdir()?;
    let get = |key: String| -> Result<Vec<u8>, StageError> {
        let key = Key::new(key)?;
        store.get(&key)?.ok_or_else(|| StageError::Missing {
            key: key.to_string(),
        })
    };
    let save = |body: &[u8], file: &str| -> Result<std::path::PathBuf, StageError> {
        let path = scratch.path().join(file);
        std::fs::write(&path, body)?;
        Ok(path)
    };
    let fetch = |key: String, file: &str| save(&get(key)?, file);
    let case = &job.case;
    // the digest of the very bytes scored: recorded beside the row
    let [a1, a2, a3] = [1, 2, 3].map(|k| get(format!("cases/{case}/annotation_{k}.nii.gz")));
    let (a1, a2, a3) = (a1?, a2?, a3?);
    let inputs = RowInputs {
        annotations: annotations_digest([&a1, &a2, &a3]),
    };
    let annotations = [
        save(&a1, "a1.nii.gz")?,
        save(&a2, "a2.nii.gz")?,
        save(&a3, "a3.nii.gz")?,
    ];
    drop((a1, a2, a3));
    let source = job.source.trim_end_matches('/');
    let probabilities = [
        fetch(
            format!("{source}/{case}/{}", PROBABILITIES[0]),
            PROBABILITIES[0],
        )?,
        fetch(
            format!("{source}/{case}/{}", PROBABILITIES[1]),
            PROBABILITIES[1],
        )?,
        fetch(
            format!("{source}/{case}/{}", PROBABILITIES[2]),
            PROBABILITIES[2],
        )?,
    ];
    let prediction = fetch(
        format!("{source}/{case}/segmentation.nii.gz"),
        "segmentation.nii.gz",
    )?;
    let metrics = score_files(
        &CasePaths {
            annotations,
            probabilities,
            prediction: Some(prediction),
            ct: None,
        },
        RoiMode::Annotations,
    )?;
    let mut table = Table::new();
    upsert(&mut table, vec![metrics.csv_row(case, &job.name)]);
    let key = Key::new(format!("{ROWS}{case}/{}.csv", job.name))?;
    store.put(&key, render(&table).as_bytes())?;
    inputs.write(store, case, &job.name)?;
    merge.send(&Job::Merge(MergeJob {}).to_json())?;
    tracing::info!(case = %case, model = %job.name, "metrics row written");
    Ok(key)
}

/// Rebuilds `metrics/combined.csv` from every row file. Concurrent merges lose no row: after
/// writing, the rows are listed again, and a merge that raced with a newer row merges again, so
/// the last write is always one that saw every row. Returns the number of rows.
pub fn handle_merge(store: &dyn ObjectStore) -> Result<usize, StageError> {
    let combined = Key::new(COMBINED)?;
    let rows_now = || -> Result<Vec<Key>, StageError> {
        Ok(store
            .list(ROWS)?
            .into_iter()
            .filter(|k| k.as_str().ends_with(".csv"))
            .collect())
    };
    let mut keys = rows_now()?;
    loop {
        let mut table = Table::new();
        for k in &keys {
            let Some(body) = store.get(k)? else { continue };
            let text = String::from_utf8_lossy(&body);
            upsert(&mut table, parse_rows(Path::new(k.as_str()), &text)?);
        }
        let out = render(&table);
        if store.get(&combined)?.as_deref() != Some(out.as_bytes()) {
            store.put(&combined, out.as_bytes())?;
        }
        let again = rows_now()?;
        if again == keys {
            return Ok(table.len());
        }
        keys = again;
    }
}
