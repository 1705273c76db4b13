//! Aggregate: the ensembles of one case (`ensemble_anno<k>` over each annotator's seeds,
//! `ensemble_all` over every model; mean probabilities, argmax labels, and the entropy, expected
//! entropy and mutual information maps) once every registered model has predicted it, then one
//! `MetricsJob` per ensemble.

use crate::StageError;
use crate::digests::{PREDICTION_INPUTS, RowInputs, recorded_inputs, sha256_hex};
use crate::ingest::registered_models;
use crate::predictions;
use statapp_nnunet::ensemble::{UNCERTAINTY_FILES, ensemble_to_dir, strategies};
use statapp_pipeline::jobs::{EnsembleJob, Job, MetricsJob};
use statapp_pipeline::{JobQueue, ObjectStore};

/// An ensemble's `inputs.json`: the digest of each member's `inputs.json`, so a member that is
/// predicted again changes the ensemble's inputs (and re-scores its row).
fn members_inputs(
    store: &dyn ObjectStore,
    case: &str,
    members: &[String],
) -> Result<Vec<u8>, StageError> {
    let mut map = std::collections::BTreeMap::new();
    for m in members {
        let prefix = format!("predictions/{m}");
        let bytes = recorded_inputs(store, &prefix, case)?.ok_or_else(|| StageError::Missing {
            key: format!("{prefix}/{case}/{PREDICTION_INPUTS}"),
        })?;
        map.insert(m.clone(), sha256_hex(&bytes));
    }
    let mut out = serde_json::to_vec_pretty(&serde_json::json!({ "members": map }))
        .map_err(StageError::json(PREDICTION_INPUTS))?;
    out.push(b'\n');
    Ok(out)
}

/// Returns the ensembles written (an ensemble whose members are unchanged is not recomputed,
/// and its row, when scored against the current annotations, not queued again).
pub fn handle_ensemble(
    job: &EnsembleJob,
    store: &dyn ObjectStore,
    metrics: &dyn JobQueue,
) -> Result<Vec<String>, StageError> {
    let case = &job.case;
    let models = registered_models(store)?;
    let mut ready = Vec::new();
    for m in &models {
        if predictions::current(store, m, case)? {
            ready.push(m.clone());
        }
    }
    if ready.len() < models.len() {
        // a later model's prediction sends this job again
        return Ok(Vec::new());
    }
    let scratch = tempfile::tempdir()?;
    let mut written = Vec::new();
    for (name, members) in strategies(&ready) {
        let prefix = format!("ensembles/{name}");
        let inputs = members_inputs(store, case, &members)?;
        let inputs_key = predictions::key(&prefix, case, PREDICTION_INPUTS)?;
        // the inputs record is written last: it matching means the ensemble is whole and current
        let current = store.get(&inputs_key)?.as_deref() == Some(inputs.as_slice());
        if !current {
            let dirs: Vec<_> = members.iter().map(|m| scratch.path().join(m)).collect();
            for (m, d) in members.iter().zip(&dirs) {
                if !d.exists() {
                    predictions::download(store, &format!("predictions/{m}"), case, d)?;
                }
            }
            let out = scratch.path().join(format!("out-{name}"));
            ensemble_to_dir(&dirs, &out).map_err(|source| StageError::Ensemble {
                case: case.to_string(),
                name: name.to_string(),
                source: Box::new(source),
            })?;
            predictions::upload(store, &out, &prefix, case)?;
            for f in UNCERTAINTY_FILES {
                let key = predictions::key(&prefix, case, f)?;
                store.put(&key, &std::fs::read(out.join(f))?)?;
            }
            store.put(&inputs_key, &inputs)?;
            written.push(name.clone());
        }
        if !(current && RowInputs::current(store, case, &name, &prefix)?) {
            metrics.send(
                &Job::Metrics(MetricsJob {
                    case: case.clone(),
                    name: name.clone(),
                    source: prefix,
                })
                .to_json(),
            )?;
        }
    }
    tracing::info!(case = %case, ensembles = written.len(), "ensembles written");
    Ok(written)
}
