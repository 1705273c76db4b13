//! Model weights: burn's burnpack format for networks statapp trains, and nnU-Net v2's PyTorch
//! checkpoints (`.pth`) read as they are; both written atomically.

use crate::nnunet_format::StateDictSource;
use crate::unet::{PlainConvUNet, UNetConfig};
use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::Device;
use std::path::{Path, PathBuf};

pub use statapp_nnunet::model_dir::{
    CHECKPOINT_BEST, CHECKPOINT_FINAL, MODEL_JSON, ModelDirError, ModelInfo, read_info, write_info,
};

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {detail}")]
    Io { path: PathBuf, detail: String },
    #[error(transparent)]
    ModelDir(#[from] ModelDirError),
    #[error(transparent)]
    Torch(#[from] statapp_torchfile::TorchFileError),
    #[error("{path}: {detail}")]
    StateDict { path: PathBuf, detail: String },
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

/// Loads weights into a network of the given architecture: a burnpack file, or an nnU-Net
/// checkpoint (`.pth`, its `network_weights`).
pub fn load_weights(
    cfg: &UNetConfig,
    path: &Path,
    device: &Device,
) -> Result<PlainConvUNet, CheckpointError> {
    if path.extension().is_some_and(|e| e == "pth") {
        let ckpt = statapp_torchfile::read_checkpoint(path)?;
        let mut src = StateDictSource::new(&ckpt.weights, device);
        return PlainConvUNet::build(cfg, &mut src, device).map_err(|detail| {
            CheckpointError::StateDict {
                path: path.to_path_buf(),
                detail,
            }
        });
    }
    let record = ModuleRecord::load(path).map_err(|e| io(path, e))?;
    PlainConvUNet::new(cfg, 0, device)
        .try_load_record(record)
        .map_err(|e| io(path, e))
}
