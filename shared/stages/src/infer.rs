//! Infer: one case with one model as nnU-Net predicts it (sliding window, mirroring over the
//! model's allowed axes unless switched off, export: logits resampled to the image grid, softmax),
//! written as f32 probability maps, `prediction.json` and labels under
//! `predictions/<model>/<case>/`, then a `MetricsJob` for it and, once every registered model has
//! predicted the case, an `EnsembleJob`. A complete prediction is not computed again.

use crate::StageError;
use crate::ingest::registered_models;
use crate::predictions;
use burn::tensor::Device;
use statapp_model::checkpoint::{MODEL_JSON, load_weights};
use statapp_model::infer::predict_case;
use statapp_model::outputs::{PredictionRecord, encode_prediction};
use statapp_model::predict::PredictOptions;
use statapp_nnunet::model_dir::{Mirroring, parse_info};
use statapp_nnunet::plans_file::Plans;
use statapp_pipeline::jobs::{EnsembleJob, InferJob, Job, MetricsJob};
use statapp_pipeline::{JobQueue, Key, ObjectStore};
use statapp_volume::{ReadOptions, read_nifti_bytes};
use std::path::Path;

fn input(e: impl std::fmt::Display) -> StageError {
    StageError::Input(e.to_string())
}

pub fn handle_infer(
    job: &InferJob,
    store: &dyn ObjectStore,
    metrics: &dyn JobQueue,
    aggregate: &dyn JobQueue,
    device: &Device,
) -> Result<(), StageError> {
    let (case, model) = (&job.case, &job.model);
    let prefix = format!("predictions/{model}");
    let row = Key::new(format!("metrics/rows/{case}/{model}.csv"))?;
    let predicted = predictions::complete(store, &prefix, case)?;
    if !predicted {
        predict(store, case, model, &prefix, device)?;
    }
    // a duplicate of a job whose row is there sends no metrics job, but still checks the ensemble
    // below: the first delivery may have died between the row and the `EnsembleJob`
    if !(predicted && store.exists(&row)?) {
        metrics.send(
            &Job::Metrics(MetricsJob {
                case: case.clone(),
                name: model.clone(),
                source: prefix,
            })
            .to_json(),
        )?;
    }
    let models = registered_models(store)?;
    let mut all = true;
    for m in &models {
        all &= predictions::complete(store, &format!("predictions/{m}"), case)?;
    }
    if all && models.len() >= 2 {
        aggregate.send(&Job::Ensemble(EnsembleJob { case: case.clone() }).to_json())?;
    }
    Ok(())
}

fn get(store: &dyn ObjectStore, key: &str) -> Result<Vec<u8>, StageError> {
    let k = Key::new(key)?;
    store
        .get(&k)?
        .ok_or_else(|| StageError::Input(format!("{k}: missing")))
}

/// Mirroring for this run: `STATAPP_MIRRORING` (`model`, the default, `on` or `off`).
fn mirroring() -> Result<Mirroring, StageError> {
    match std::env::var("STATAPP_MIRRORING").as_deref() {
        Err(_) | Ok("") => Ok(Mirroring::Model),
        Ok(v) => v
            .parse()
            .map_err(|e| StageError::Input(format!("STATAPP_MIRRORING: {e}"))),
    }
}

fn predict(
    store: &dyn ObjectStore,
    case: &str,
    model: &str,
    prefix: &str,
    device: &Device,
) -> Result<(), StageError> {
    let scratch = tempfile::tempdir()?;
    let dir = scratch.path();
    let info_key = format!("models/{model}/{MODEL_JSON}");
    let info = parse_info(Path::new(&info_key), &get(store, &info_key)?).map_err(input)?;
    let plans_bytes = get(store, &format!("models/{model}/plans.json"))?;
    let checkpoint = info.prediction_checkpoint().to_string();
    // keep the checkpoint's file name: its extension says which format it is
    let name = Path::new(&checkpoint)
        .file_name()
        .ok_or_else(|| StageError::Input(format!("model {model}: checkpoint {checkpoint:?}")))?;
    let local = dir.join(name);
    std::fs::write(&local, get(store, &format!("models/{model}/{checkpoint}"))?)?;
    let plans_json = serde_json::from_slice(&plans_bytes).map_err(input)?;
    let plans = Plans::from_json(&plans_json).map_err(input)?;
    let config = plans.configuration(&info.configuration).map_err(input)?;
    let net = load_weights(&info.network, &local, device).map_err(input)?;
    let image_key = format!("cases/{case}/image.nii.gz");
    let image = read_nifti_bytes(
        Path::new(&image_key),
        &get(store, &image_key)?,
        &ReadOptions::default(),
    )
    .map_err(input)?
    .into_f32();
    let opts = PredictOptions::default().mirror(&info.mirror_axes(mirroring()?));
    let out = predict_case(&net, &plans, config, &image, opts, device).map_err(input)?;
    let record = PredictionRecord::new(&info, &checkpoint, &plans_bytes, &opts);
    for (file, bytes) in encode_prediction(&info, out, image.geometry(), &record).map_err(input)? {
        store.put(&predictions::key(prefix, case, &file)?, &bytes)?;
    }
    tracing::info!(case, model, mirroring = ?record.mirroring_axes, "prediction written");
    Ok(())
}
