//! What a prediction writes: one probability map per foreground class (named by the model's
//! classes), `prediction.json` recording how it was made, and the segmentation, last, as the
//! completion mark. The same bytes whether `statapp predict` writes files or the infer stage
//! puts objects.

use crate::infer::CasePrediction;
use crate::predict::{Accumulation, PredictOptions};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use statapp_nnunet::ensemble::SEGMENTATION_FILE;
use statapp_nnunet::model_dir::{ModelInfo, probability_file};
use statapp_volume::{Geometry, Volume, VolumeError, WriteOptions, encode_nifti};

pub const PREDICTION_JSON: &str = "prediction.json";

/// How a prediction was made, written next to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionRecord {
    pub model: String,
    pub checkpoint: String,
    pub configuration: String,
    pub step: f64,
    /// Axes mirrored at test time (empty: no mirroring).
    pub mirroring_axes: Vec<usize>,
    pub accumulation: Accumulation,
    /// sha256 of the model's `plans.json`.
    pub plan_digest: String,
    pub code_version: String,
}

impl PredictionRecord {
    pub fn new(
        info: &ModelInfo,
        checkpoint: &str,
        plans_json: &[u8],
        opts: &PredictOptions,
    ) -> Self {
        Self {
            model: info.model_id.clone(),
            checkpoint: checkpoint.to_string(),
            configuration: info.configuration.clone(),
            step: opts.step,
            mirroring_axes: opts.mirrored(),
            accumulation: opts.accumulation,
            plan_digest: digest(plans_json),
            code_version: format!("statapp {}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// Hex sha256.
pub fn digest(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The files of a prediction as `(name, bytes)`, segmentation last.
pub fn encode_prediction(
    info: &ModelInfo,
    pred: CasePrediction,
    geometry: &Geometry,
    record: &PredictionRecord,
) -> Result<Vec<(String, Vec<u8>)>, VolumeError> {
    let w = WriteOptions::default();
    let mut out = Vec::new();
    for (class, p) in info.classes.iter().zip(pred.probabilities).skip(1) {
        let v = Volume::new(p, geometry.clone())?;
        out.push((probability_file(class), encode_nifti(&v, &w, true)));
    }
    let json = serde_json::to_string_pretty(record).unwrap_or_default() + "\n";
    out.push((PREDICTION_JSON.to_string(), json.into_bytes()));
    let labels = Volume::new(pred.labels, geometry.clone())?;
    out.push((
        SEGMENTATION_FILE.to_string(),
        encode_nifti(&labels, &w, true),
    ));
    Ok(out)
}
