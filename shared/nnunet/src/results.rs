//! nnU-Net v2 trained-model folders (`<Trainer>__<Plans>__<configuration>/` with `plans.json`,
//! `dataset.json`, `fold_<f>/checkpoint_{final,best}.pth`) described as statapp models: which
//! fold and checkpoint, the network from the plans, the classes from `dataset.json`, mirroring
//! from the checkpoint. No weights are read here (the ingest stage links no network).

use crate::model_dir::{ModelInfo, NnunetSource, UNetConfig};
use crate::plans_file::Plans;
use serde_json::Value;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error(
        "{path}: missing (an nnU-Net trained-model folder holds plans.json, dataset.json and fold_<f>/checkpoint_final.pth)"
    )]
    Missing { path: PathBuf },
    #[error("{path}: {detail}")]
    Invalid { path: PathBuf, detail: String },
    #[error(transparent)]
    Checkpoint(#[from] statapp_torchfile::TorchFileError),
}

/// Which of a fold's checkpoints to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Final,
    Best,
}

impl Which {
    pub fn file(self) -> &'static str {
        match self {
            Self::Final => "checkpoint_final.pth",
            Self::Best => "checkpoint_best.pth",
        }
    }
}

/// A trained-model folder, ready to register or import.
#[derive(Debug, Clone)]
pub struct ResultsFolder {
    /// `model.json` for it, with `checkpoints` naming the `.pth` relative to the folder's parent.
    pub info: ModelInfo,
    pub plans_file: PathBuf,
    pub dataset_file: PathBuf,
    pub checkpoint_file: PathBuf,
}

fn invalid(path: &Path, detail: impl Into<String>) -> ResultsError {
    ResultsError::Invalid {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

fn existing(path: PathBuf) -> Result<PathBuf, ResultsError> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(ResultsError::Missing { path })
    }
}

fn read_json(path: &Path) -> Result<Value, ResultsError> {
    let text = std::fs::read(path).map_err(|e| invalid(path, e.to_string()))?;
    serde_json::from_slice(&text).map_err(|e| invalid(path, format!("not JSON: {e}")))
}

/// The fold to use: the one asked for, else `all` when present, else the only fold there is.
fn pick_fold(dir: &Path, fold: Option<&str>, which: Which) -> Result<String, ResultsError> {
    if let Some(f) = fold {
        return Ok(f.to_string());
    }
    if dir.join("fold_all").join(which.file()).is_file() {
        return Ok("all".into());
    }
    let mut folds: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| invalid(dir, e.to_string()))?
        .filter_map(Result::ok)
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("fold_")
                .map(String::from)
        })
        .filter(|f| dir.join(format!("fold_{f}")).join(which.file()).is_file())
        .collect();
    folds.sort();
    match folds.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(ResultsError::Missing {
            path: dir.join("fold_all").join(which.file()),
        }),
        many => Err(invalid(
            dir,
            format!("holds folds {many:?}: choose one (statapp runs one fold per model)"),
        )),
    }
}

/// Class names in label order from `dataset.json`'s `labels` (`{"background": 0, ...}`), without
/// an `ignore` label.
pub fn classes(path: &Path, dataset: &Value) -> Result<Vec<String>, ResultsError> {
    let labels = dataset
        .get("labels")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid(path, "no `labels` object"))?;
    let mut pairs = Vec::with_capacity(labels.len());
    // nnU-Net's `ignore` label marks unannotated voxels in training; the network has no head for it
    for (name, v) in labels.iter().filter(|(n, _)| n.as_str() != "ignore") {
        let id = v.as_u64().ok_or_else(|| {
            invalid(
                path,
                format!(
                    "label {name:?} is {v}: region-based models (lists of labels) are not supported"
                ),
            )
        })?;
        pairs.push((id as usize, name.clone()));
    }
    pairs.sort();
    if pairs.iter().enumerate().any(|(i, (id, _))| *id != i) {
        return Err(invalid(
            path,
            "label values are not 0, 1, 2, ... without gaps",
        ));
    }
    if pairs.len() < 2 {
        return Err(invalid(path, "fewer than two labels"));
    }
    Ok(pairs.into_iter().map(|(_, n)| n).collect())
}

fn check_channels(path: &Path, dataset: &Value) -> Result<(), ResultsError> {
    let channels = dataset
        .get("channel_names")
        .or_else(|| dataset.get("modality"))
        .and_then(Value::as_object)
        .ok_or_else(|| invalid(path, "no `channel_names` object"))?;
    if channels.len() != 1 {
        return Err(invalid(
            path,
            format!(
                "{} input channels: statapp runs single-channel CT models",
                channels.len()
            ),
        ));
    }
    Ok(())
}

/// Describes the trained-model folder `dir` as model `id`.
pub fn read_results_folder(
    dir: &Path,
    id: &str,
    fold: Option<&str>,
    which: Which,
) -> Result<ResultsFolder, ResultsError> {
    let plans_file = existing(dir.join("plans.json"))?;
    let dataset_file = existing(dir.join("dataset.json"))?;
    let fold = pick_fold(dir, fold, which)?;
    let checkpoint_file = existing(dir.join(format!("fold_{fold}")).join(which.file()))?;
    let meta = statapp_torchfile::read_metadata(&checkpoint_file)?;
    let folder = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| invalid(dir, "not a folder name"))?
        .to_string();
    let from_name = folder.rsplit("__").next().filter(|_| folder.contains("__"));
    let configuration = match (meta.configuration.as_deref(), from_name) {
        (Some(c), _) => c.to_string(),
        (None, Some(c)) => c.to_string(),
        (None, None) => {
            return Err(invalid(
                &checkpoint_file,
                "names no configuration (init_args) and the folder is not <Trainer>__<Plans>__<configuration>",
            ));
        }
    };
    let plans = Plans::from_json(&read_json(&plans_file)?)
        .map_err(|e| invalid(&plans_file, e.to_string()))?;
    let config = plans
        .configuration(&configuration)
        .map_err(|e| invalid(&plans_file, e.to_string()))?;
    let dataset = read_json(&dataset_file)?;
    check_channels(&dataset_file, &dataset)?;
    let classes = classes(&dataset_file, &dataset)?;
    let network = UNetConfig::from_configuration(config, classes.len());
    let checkpoint = format!("{folder}/fold_{fold}/{}", which.file());
    Ok(ResultsFolder {
        info: ModelInfo {
            model_id: id.to_string(),
            configuration,
            seed: None,
            network,
            checkpoints: vec![checkpoint],
            classes,
            mirroring: meta.mirroring_axes.is_some(),
            mirroring_axes: meta.mirroring_axes.unwrap_or_default(),
            nnunet: Some(NnunetSource {
                trainer: meta.trainer_name,
                folder,
                fold,
                checkpoint: which.file().into(),
            }),
        },
        plans_file,
        dataset_file,
        checkpoint_file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn classes_follow_label_values_and_drop_ignore() {
        let p = Path::new("dataset.json");
        let d = json!({"labels": {"liver": 2, "background": 0, "tumour": 1, "ignore": 3}});
        assert_eq!(classes(p, &d).unwrap(), ["background", "tumour", "liver"]);
        let regions = json!({"labels": {"background": 0, "whole": [1, 2]}});
        assert!(
            classes(p, &regions)
                .unwrap_err()
                .to_string()
                .contains("region")
        );
        let gap = json!({"labels": {"background": 0, "a": 2}});
        assert!(classes(p, &gap).is_err());
    }
}
