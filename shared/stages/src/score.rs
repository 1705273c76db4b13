//! Metrics and merge: one CSV row per (case, model or ensemble) under
//! `metrics/rows/<case>/<name>.csv`, and `metrics/combined.csv`, into which merges fold the rows
//! that changed.

use crate::StageError;
use crate::digests::{
    PREDICTION_INPUTS, RowInputs, annotations_digest, recorded_inputs, sha256_hex,
};
use statapp_metrics::merge::{Table, parse_rows, render, upsert};
use statapp_metrics::{CasePaths, RoiMode, score_files};
use statapp_pipeline::jobs::{Job, MergeJob, MetricsJob};
use statapp_pipeline::{JobQueue, Key, ObjectStore};
use std::path::Path;
use std::time::Duration;

pub const COMBINED: &str = "metrics/combined.csv";
const ROWS: &str = "metrics/rows/";
/// Per row, its calibration bins and risk-coverage curves (`statapp report` pools them).
pub const CURVES: &str = "metrics/curves/";
/// Change markers of rows not yet in the combined CSV (see [`pending_marker`]).
pub const PENDING: &str = "metrics/pending/";
const PROBABILITIES: [&str; 3] = ["prob_panc.nii.gz", "prob_kidn.nii.gz", "prob_livr.nii.gz"];

/// Scores one prediction against `cases/<case>/annotation_{1,2,3}.nii.gz`, writes its row and
/// asks for a merge. Returns the row's key.
pub fn handle_metrics(
    job: &MetricsJob,
    store: &dyn ObjectStore,
    merge: &dyn JobQueue,
) -> Result<Key, StageError> {
    let source = job.source.trim_end_matches('/');
    let key = Key::new(format!("{ROWS}{}/{}.csv", job.case, job.name))?;
    if RowInputs::current(store, &job.case, &job.name, source)? {
        // the same row again; the merge request may be what a killed first delivery never sent
        merge.send(&Job::Merge(MergeJob::default()).to_json())?;
        return Ok(key);
    }
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
    // read before the probabilities: a prediction replaced meanwhile can only make the record
    // older than what was scored, which re-scores the row, never the other way round
    let prediction = recorded_inputs(store, source, case)?.ok_or_else(|| StageError::Missing {
        key: format!("{source}/{case}/{PREDICTION_INPUTS}"),
    })?;
    let inputs = RowInputs {
        annotations: annotations_digest([&a1, &a2, &a3]),
        prediction: sha256_hex(&prediction),
    };
    let annotations = [
        save(&a1, "a1.nii.gz")?,
        save(&a2, "a2.nii.gz")?,
        save(&a3, "a3.nii.gz")?,
    ];
    drop((a1, a2, a3));
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
    // the curves first: a row that exists has its curves beside it
    let curves_key = Key::new(format!("{CURVES}{case}/{}.json", job.name))?;
    let curves = serde_json::to_vec(&metrics.curves).map_err(StageError::json(CURVES))?;
    store.put(&curves_key, &curves)?;
    let mut table = Table::new();
    upsert(&mut table, vec![metrics.csv_row(case, &job.name)]);
    let key = put_row(store, case, &job.name, &render(&table))?;
    inputs.write(store, case, &job.name)?;
    merge.send(&Job::Merge(MergeJob::default()).to_json())?;
    tracing::info!(case = %case, model = %job.name, "metrics row written");
    Ok(key)
}

/// Writes the row file of (`case`, `name`), then its change marker, so that the next merge folds
/// it into the combined CSV. Returns the row's key.
pub fn put_row(
    store: &dyn ObjectStore,
    case: &str,
    name: &str,
    csv: &str,
) -> Result<Key, StageError> {
    let key = Key::new(format!("{ROWS}{case}/{name}.csv"))?;
    store.put(&key, csv.as_bytes())?;
    store.put(&pending_marker(case, name, csv.as_bytes())?, b"")?;
    Ok(key)
}

/// How merges coalesce (DESIGN.md §3): a merge commits the rows that changed once the oldest of
/// them has waited `window`; until then it re-queues itself, so a burst of rows costs one rewrite
/// of the combined CSV instead of one per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergeSettings {
    pub window: Duration,
}

impl MergeSettings {
    /// `STATAPP_MERGE_WINDOW_S` (default 0: commit at once, as the embedded runner, whose one
    /// process already folds the queued merge requests into one, wants).
    pub fn from_env() -> Result<Self, StageError> {
        let secs: f64 = crate::env_var("STATAPP_MERGE_WINDOW_S")?.unwrap_or(0.0);
        let window = Duration::try_from_secs_f64(secs).map_err(|e| StageError::Config {
            name: "STATAPP_MERGE_WINDOW_S",
            value: secs.to_string(),
            detail: e.to_string(),
        })?;
        Ok(Self { window })
    }
}

/// What a merge did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merged {
    /// No row changed since the last commit.
    Nothing,
    /// Rows are waiting for the coalescing window; a merge is queued for when it closes.
    Deferred(Duration),
    /// `metrics/combined.csv` holds `rows` rows, `applied` of them read in this merge.
    Committed { rows: usize, applied: usize },
}

/// A row's change marker, `metrics/pending/<ms since the epoch>-<token>~<case>~<name>`
/// (ids have no `~`): written after the row, deleted by the merge that listed it. One per write
/// (the token), so a merge that read an older version of the row never deletes the marker of a
/// newer one; flat, so listing the markers costs what they are, not what came before.
fn pending_marker(case: &str, name: &str, row: &[u8]) -> Result<Key, StageError> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(Duration::ZERO, |d| d);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let unique = format!("{}:{}:{n}", now.as_nanos(), std::process::id());
    let token = &crate::digests::sha256_parts(&[row, unique.as_bytes()])[..16];
    Ok(Key::new(format!(
        "{PENDING}{:013}-{token}~{case}~{name}",
        now.as_millis()
    ))?)
}

/// The row a marker stands for, and when it was written.
fn marker_row(marker: &Key) -> Option<(String, String, Duration)> {
    let rest = marker.as_str().strip_prefix(PENDING)?;
    let mut parts = rest.split('~');
    let (stamp, case, name) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let ms: u64 = stamp.split('-').next()?.parse().ok()?;
    Some((
        case.to_string(),
        name.to_string(),
        Duration::from_millis(ms),
    ))
}

/// Every row file under `metrics/rows/`.
fn all_rows(store: &dyn ObjectStore) -> Result<Vec<Key>, StageError> {
    Ok(store
        .list(ROWS)?
        .into_iter()
        .filter(|k| k.as_str().ends_with(".csv"))
        .collect())
}

/// Reads one row file into `table` (a vanished file removes its row).
fn apply_row(
    store: &dyn ObjectStore,
    table: &mut Table,
    case: &str,
    name: &str,
) -> Result<(), StageError> {
    let key = Key::new(format!("{ROWS}{case}/{name}.csv"))?;
    match store.get(&key)? {
        Some(body) => upsert(
            table,
            parse_rows(Path::new(key.as_str()), &String::from_utf8_lossy(&body))?,
        ),
        None => {
            table.remove(&(case.to_string(), name.to_string()));
        }
    }
    Ok(())
}

/// A merge that commits at once (window 0: it never re-queues itself, so it needs no queue), for
/// tools and tests that fold the rows in place of the merge queue.
pub fn merge_now(store: &dyn ObjectStore) -> Result<Merged, StageError> {
    let unused = statapp_pipeline::MemQueue::new(
        "merge",
        std::sync::Arc::new(statapp_pipeline::queue::SystemClock),
    );
    let settings = MergeSettings {
        window: Duration::ZERO,
    };
    let now = std::time::SystemTime::now();
    handle_merge(&MergeJob::default(), store, &unused, &settings, now)
}

/// While a coalescing merge is scheduled: the ms since the epoch when it is due. Written after
/// that merge was sent and deleted by it before it lists the markers, so a request that finds
/// the lease has its row's marker listed by that merge, and costs one read instead of a listing.
const LEASE: &str = "metrics/merge-lease";
/// A lease this far past its time lost its merge (dead-lettered): requests stop waiting for it.
const LEASE_STALE: Duration = Duration::from_secs(15 * 60);

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn lease_due(store: &dyn ObjectStore, lease: &Key) -> Result<Option<u64>, StageError> {
    let Some(body) = store.get(lease)? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&body);
    text.trim()
        .parse()
        .map(Some)
        .map_err(|e: std::num::ParseIntError| StageError::Malformed {
            key: lease.to_string(),
            detail: format!("not a time in ms: {e}"),
        })
}

/// Folds the changed rows (their markers) into `metrics/combined.csv` with a conditional write
/// on the version it read, so a concurrent merge is never overwritten: the loser starts again
/// from the winner's file. Cost O(n + k log n) for n rows and k changes; a missing combined
/// CSV is rebuilt from every row. `now` is the wall clock (markers carry their write time).
pub fn handle_merge(
    job: &MergeJob,
    store: &dyn ObjectStore,
    merge: &dyn JobQueue,
    settings: &MergeSettings,
    now: std::time::SystemTime,
) -> Result<Merged, StageError> {
    let combined = Key::new(COMBINED)?;
    let lease = Key::new(LEASE)?;
    let since_epoch = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(Duration::ZERO, |d| d);
    if !settings.window.is_zero()
        && let Some(due) = lease_due(store, &lease)?
    {
        let stale = since_epoch > Duration::from_millis(due) + LEASE_STALE;
        if job.due_ms.is_none_or(|d| d < due) && !stale {
            // a merge is scheduled for the window's end: this request is one read
            let wait = Duration::from_millis(due).saturating_sub(since_epoch);
            return Ok(Merged::Deferred(wait));
        }
        // the scheduled merge: a row written from now on sends a request that finds no lease
        store.delete(&lease)?;
    }
    loop {
        let markers = store.list(PENDING)?;
        let changes: Vec<(String, String, Duration)> = markers
            .iter()
            .filter_map(|m| {
                let row = marker_row(m);
                if row.is_none() {
                    tracing::warn!(key = %m, "not a row marker: deleted with the others");
                }
                row
            })
            .collect();
        // a merge with nothing to do, or one that waits, never reads the combined CSV
        let oldest = changes.iter().map(|c| c.2).min();
        let wait = oldest.map(|t| {
            settings
                .window
                .saturating_sub(since_epoch.saturating_sub(t))
        });
        if (oldest.is_none() || wait.is_some_and(|w| !w.is_zero())) && store.exists(&combined)? {
            let Some(wait) = wait else {
                return Ok(Merged::Nothing);
            };
            let due = millis(since_epoch + wait);
            let scheduled = MergeJob { due_ms: Some(due) };
            merge.send_delayed(&Job::Merge(scheduled).to_json(), wait)?;
            // after the send: a lease always has its merge coming
            store.put_if_absent(&lease, due.to_string().as_bytes())?;
            return Ok(Merged::Deferred(wait));
        }
        let current = store.get_versioned(&combined)?;
        let mut table = Table::new();
        let (version, applied) = match current {
            Some((body, version)) => {
                upsert(
                    &mut table,
                    parse_rows(Path::new(COMBINED), &String::from_utf8_lossy(&body))?,
                );
                let rows: std::collections::BTreeSet<(&str, &str)> = changes
                    .iter()
                    .map(|(c, n, _)| (c.as_str(), n.as_str()))
                    .collect();
                for (case, name) in &rows {
                    apply_row(store, &mut table, case, name)?;
                }
                (Some(version), rows.len())
            }
            None => {
                let rows = all_rows(store)?;
                for k in &rows {
                    let Some(body) = store.get(k)? else { continue };
                    let text = String::from_utf8_lossy(&body);
                    upsert(&mut table, parse_rows(Path::new(k.as_str()), &text)?);
                }
                (None, rows.len())
            }
        };
        let out = render(&table);
        if store.put_if_version(&combined, out.as_bytes(), version.as_deref())? {
            store.delete_many(&markers)?;
            return Ok(Merged::Committed {
                rows: table.len(),
                applied,
            });
        }
        tracing::info!("combined CSV changed during the merge; merging again");
    }
}
