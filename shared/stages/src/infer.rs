//! Infer: one case with one model (sliding window, nnU-Net's export: logits resampled to the
//! image grid, softmax), written as f32 probability maps and labels under
//! `predictions/<model>/<case>/`, then a `MetricsJob` for it and, once every registered model has
//! predicted the case, an `EnsembleJob`. A complete prediction is not computed again.

use crate::StageError;
use crate::ingest::registered_models;
use crate::predictions;
use burn::tensor::Device;
use statapp_model::checkpoint::{load_weights, read_info};
use statapp_model::infer::predict_case;
use statapp_model::predict::PredictOptions;
use statapp_nnunet::ensemble::{PROB_FILES, SEGMENTATION_FILE};
use statapp_nnunet::plans_file::Plans;
use statapp_pipeline::jobs::{EnsembleJob, InferJob, Job, MetricsJob};
use statapp_pipeline::{JobQueue, Key, ObjectStore};
use statapp_volume::{ReadOptions, Volume, WriteOptions, encode_nifti, read_nifti_bytes};
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

fn predict(
    store: &dyn ObjectStore,
    case: &str,
    model: &str,
    prefix: &str,
    device: &Device,
) -> Result<(), StageError> {
    let scratch = tempfile::tempdir()?;
    let dir = scratch.path();
    for f in ["model.json", "plans.json"] {
        std::fs::write(dir.join(f), get(store, &format!("models/{model}/{f}"))?)?;
    }
    let info = read_info(dir).map_err(input)?;
    let checkpoint = info.prediction_checkpoint();
    std::fs::write(
        dir.join(checkpoint),
        get(store, &format!("models/{model}/{checkpoint}"))?,
    )?;
    let plans_json =
        serde_json::from_slice(&std::fs::read(dir.join("plans.json"))?).map_err(input)?;
    let plans = Plans::from_json(&plans_json).map_err(input)?;
    let config = plans.configuration(&info.configuration).map_err(input)?;
    let net = load_weights(&info.network, &dir.join(checkpoint), device).map_err(input)?;
    let image_key = format!("cases/{case}/image.nii.gz");
    let image = read_nifti_bytes(
        Path::new(&image_key),
        &get(store, &image_key)?,
        &ReadOptions::default(),
    )
    .map_err(input)?
    .into_f32();
    let opts = PredictOptions {
        mirror: false,
        tile_batch: 1,
        step: 0.5,
    };
    let out = predict_case(
        &net,
        &plans,
        config,
        image.data(),
        image.geometry().spacing_zyx(),
        opts,
        device,
    );
    let g = image.geometry().clone();
    let w = WriteOptions::default();
    for (file, p) in PROB_FILES.iter().zip(&out.probabilities[1..]) {
        let v = Volume::new(p.clone(), g.clone()).map_err(input)?;
        store.put(
            &predictions::key(prefix, case, file)?,
            &encode_nifti(&v, &w, true),
        )?;
    }
    let labels = Volume::new(out.labels, g).map_err(input)?;
    store.put(
        &predictions::key(prefix, case, SEGMENTATION_FILE)?,
        &encode_nifti(&labels, &w, true),
    )?;
    tracing::info!(case, model, "prediction written");
    Ok(())
}
