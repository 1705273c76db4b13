//! Model directories: `model.json` (architecture, seed, plan configuration) next to the weights
//! in burn's burnpack format, written atomically.

use crate::unet::{PlainConvUNet, UNetConfig};
use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const MODEL_JSON: &str = "model.json";
/// Weights with the best EMA pseudo-Dice seen during training.
pub const CHECKPOINT_BEST: &str = "checkpoint_best.bpk";
/// Weights at the end of training (and of `statapp init-model`).
pub const CHECKPOINT_FINAL: &str = "checkpoint_final.bpk";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {detail}")]
    Io { path: PathBuf, detail: String },
    #[error("{path}: invalid model description: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// What a model directory says about its network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// `anno<k>_init<seed>_fold<f>`.
    pub model_id: String,
    /// Plan configuration the network was built from (`3d_fullres`, `3d_cpu`).
    pub configuration: String,
    pub seed: u64,
    pub network: UNetConfig,
    /// Weight files present, e.g. `checkpoint_best.bpk`, `checkpoint_final.bpk`.
    pub checkpoints: Vec<String>,
}

impl ModelInfo {
    /// The weights to predict with: the best checkpoint when training kept one, as the original
    /// trainer does, else the final weights.
    pub fn prediction_checkpoint(&self) -> &'static str {
        if self.checkpoints.iter().any(|c| c == CHECKPOINT_BEST) {
            CHECKPOINT_BEST
        } else {
            CHECKPOINT_FINAL
        }
    }
}

fn io(path: &Path, e: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::Io {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

/// Saves weights to `dir/file` through a temporary name, so readers never see half a file.
pub fn save_weights(net: &PlainConvUNet, dir: &Path, file: &str) -> Result<(), CheckpointError> {
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let path = dir.join(file);
    let tmp = dir.join(format!(".partial-{file}"));
    net.clone()
        .into_record()
        .save(&tmp)
        .map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))
}

/// Loads weights into a network of the given architecture.
pub fn load_weights(
    cfg: &UNetConfig,
    path: &Path,
    device: &Device,
) -> Result<PlainConvUNet, CheckpointError> {
    let record = ModuleRecord::load(path).map_err(|e| io(path, e))?;
    PlainConvUNet::new(cfg, 0, device)
        .try_load_record(record)
        .map_err(|e| io(path, e))
}

pub fn write_info(dir: &Path, info: &ModelInfo) -> Result<(), CheckpointError> {
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let path = dir.join(MODEL_JSON);
    let text = serde_json::to_string_pretty(info).map_err(|source| CheckpointError::Json {
        path: path.clone(),
        source,
    })?;
    std::fs::write(&path, text + "\n").map_err(|e| io(&path, e))
}

pub fn read_info(dir: &Path) -> Result<ModelInfo, CheckpointError> {
    let path = dir.join(MODEL_JSON);
    let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
    serde_json::from_str(&text).map_err(|source| CheckpointError::Json { path, source })
}
