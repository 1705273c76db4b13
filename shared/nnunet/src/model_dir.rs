//! Model directories' description, `model.json`: the network's architecture, where its weights
//! are, and how it predicts (classes, mirroring). Plain data, no burn, so that the ingest stage can
//! register models without linking the network.

use crate::plans_file::{Configuration, Layers};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const MODEL_JSON: &str = "model.json";
/// Weights with the best EMA pseudo-Dice seen during training.
pub const CHECKPOINT_BEST: &str = "checkpoint_best.bpk";
/// Weights at the end of training (and of `statapp init-model`).
pub const CHECKPOINT_FINAL: &str = "checkpoint_final.bpk";

/// The CURVAS classes, in label order, for models whose `model.json` names none.
pub const CURVAS_CLASSES: [&str; 4] = ["background", "pancreas", "kidney", "liver"];

#[derive(Debug, thiserror::Error)]
pub enum ModelDirError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid model description: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// The architecture of a PlainConvUNet (nnU-Net's `arch_kwargs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UNetConfig {
    pub in_channels: usize,
    pub num_classes: usize,
    pub features: Vec<usize>,
    pub kernel_sizes: Vec<[usize; 3]>,
    pub strides: Vec<[usize; 3]>,
    pub n_conv: Vec<usize>,
    pub n_conv_decoder: Vec<usize>,
    /// Conv bias, norm and nonlinearity settings (nnU-Net's defaults for older model.json files).
    #[serde(default)]
    pub layers: Layers,
}

impl UNetConfig {
    /// The network of a plan configuration: one CT channel and `num_classes` outputs.
    pub fn from_configuration(c: &Configuration, num_classes: usize) -> Self {
        Self {
            in_channels: 1,
            num_classes,
            features: c.features_per_stage.clone(),
            kernel_sizes: c.kernel_sizes.clone(),
            strides: c.strides.clone(),
            n_conv: c.n_conv_per_stage.clone(),
            n_conv_decoder: c.n_conv_per_stage_decoder.clone(),
            layers: c.layers,
        }
    }

    pub fn n_stages(&self) -> usize {
        self.features.len()
    }
}

fn yes() -> bool {
    true
}

fn all_axes() -> Vec<usize> {
    vec![0, 1, 2]
}

fn curvas_classes() -> Vec<String> {
    CURVAS_CLASSES.iter().map(|c| c.to_string()).collect()
}

/// What a model directory says about its network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// `anno<k>_init<seed>_fold<f>`, or any id of an imported model.
    pub model_id: String,
    /// Plan configuration the network was built from (`3d_fullres`, `3d_cpu`).
    pub configuration: String,
    /// Initialisation seed of a network statapp trained; imported models carry none.
    #[serde(default)]
    pub seed: Option<u64>,
    pub network: UNetConfig,
    /// Weight files, relative to the model directory: `checkpoint_best.bpk`,
    /// `checkpoint_final.bpk`, or an nnU-Net `.../fold_all/checkpoint_final.pth`.
    pub checkpoints: Vec<String>,
    /// Class names in label order, background first (`dataset.json`'s `labels`).
    #[serde(default = "curvas_classes")]
    pub classes: Vec<String>,
    /// Axes test-time mirroring may flip (nnU-Net's `inference_allowed_mirroring_axes`).
    #[serde(default = "all_axes")]
    pub mirroring_axes: Vec<usize>,
    /// Whether prediction mirrors by default (nnU-Net's default: yes).
    #[serde(default = "yes")]
    pub mirroring: bool,
    /// The nnU-Net results folder the model came from, when it was imported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nnunet: Option<NnunetSource>,
}

/// A run's test-time mirroring: each model's own default (`model.json`'s `mirroring`), or on
/// (the model's allowed axes) or off for every model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mirroring {
    #[default]
    Model,
    On,
    Off,
}

impl std::str::FromStr for Mirroring {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "model" => Ok(Self::Model),
            "on" => Ok(Self::On),
            "off" => Ok(Self::Off),
            other => Err(format!("mirroring {other:?}: expected model, on or off")),
        }
    }
}

/// Provenance of an imported nnU-Net model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NnunetSource {
    /// `trainer_name` of the checkpoint, e.g. `nnUNetTrainer`.
    pub trainer: String,
    /// The results folder's name, `<Trainer>__<Plans>__<configuration>`.
    pub folder: String,
    pub fold: String,
    /// The checkpoint file imported, e.g. `checkpoint_final.pth`.
    pub checkpoint: String,
}

impl ModelInfo {
    /// A network statapp trained or initialised: CURVAS classes, mirroring over every axis.
    pub fn native(
        model_id: String,
        configuration: String,
        seed: u64,
        network: UNetConfig,
        checkpoints: Vec<String>,
    ) -> Self {
        Self {
            model_id,
            configuration,
            seed: Some(seed),
            network,
            checkpoints,
            classes: curvas_classes(),
            mirroring_axes: all_axes(),
            mirroring: true,
            nnunet: None,
        }
    }

    /// The weights to predict with: the best checkpoint when training kept one, as the original
    /// trainer does, else the final weights, else the one checkpoint an import named.
    pub fn prediction_checkpoint(&self) -> &str {
        let has = |name: &str| self.checkpoints.iter().any(|c| c == name);
        if has(CHECKPOINT_BEST) {
            CHECKPOINT_BEST
        } else if has(CHECKPOINT_FINAL) {
            CHECKPOINT_FINAL
        } else {
            self.checkpoints
                .first()
                .map_or(CHECKPOINT_FINAL, String::as_str)
        }
    }

    /// The axes prediction mirrors over for a run's `setting`.
    pub fn mirror_axes(&self, setting: Mirroring) -> Vec<usize> {
        match setting {
            Mirroring::Model if self.mirroring => self.mirroring_axes.clone(),
            Mirroring::On => self.mirroring_axes.clone(),
            Mirroring::Model | Mirroring::Off => Vec::new(),
        }
    }
}

/// The file of one class's probability map: CURVAS organs by the original's short names
/// (`prob_panc.nii.gz`, `prob_kidn`, `prob_livr`), any other class by its own name.
pub fn probability_file(class: &str) -> String {
    let short = match class {
        "pancreas" => "panc",
        "kidney" => "kidn",
        "liver" => "livr",
        other => other,
    };
    format!("prob_{short}.nii.gz")
}

/// The bytes of `model.json`; `path` names it in errors.
pub fn encode_info(path: &Path, info: &ModelInfo) -> Result<Vec<u8>, ModelDirError> {
    let text = serde_json::to_string_pretty(info).map_err(|source| ModelDirError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    Ok((text + "\n").into_bytes())
}

pub fn write_info(dir: &Path, info: &ModelInfo) -> Result<(), ModelDirError> {
    let path = dir.join(MODEL_JSON);
    std::fs::create_dir_all(dir).map_err(|source| ModelDirError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let bytes = encode_info(&path, info)?;
    statapp_volume::write_atomic(&path, &bytes).map_err(|source| ModelDirError::Io { path, source })
}

pub fn read_info(dir: &Path) -> Result<ModelInfo, ModelDirError> {
    let path = dir.join(MODEL_JSON);
    let text = std::fs::read_to_string(&path).map_err(|source| ModelDirError::Io {
        path: path.clone(),
        source,
    })?;
    parse_info(&path, text.as_bytes())
}

/// `model.json` from its bytes; `path` names it in errors.
pub fn parse_info(path: &Path, bytes: &[u8]) -> Result<ModelInfo, ModelDirError> {
    serde_json::from_slice(bytes).map_err(|source| ModelDirError::Json {
        path: path.to_path_buf(),
        source,
    })
}
