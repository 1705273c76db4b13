//! Reading nnU-Net v2 checkpoints.

use crate::{StateTensor, TorchFileError};
use pytorch_reader::{DType, PickleValue, PytorchReader};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What a `checkpoint_*.pth` of nnU-Net's trainer holds that prediction needs.
#[derive(Debug, Clone)]
pub struct NnunetCheckpoint {
    /// `network_weights`, keys without the `_orig_mod.` (torch.compile) and `module.` (DDP)
    /// prefixes; every alias the state dict holds is kept.
    pub weights: BTreeMap<String, StateTensor>,
    /// `trainer_name`, e.g. `nnUNetTrainer`.
    pub trainer_name: String,
    /// `init_args.configuration`, e.g. `3d_fullres`.
    pub configuration: Option<String>,
    /// `init_args.fold` as nnU-Net wrote it (`all`, `0`, ...).
    pub fold: Option<String>,
    /// `inference_allowed_mirroring_axes`; `None` where the trainer disabled mirroring.
    pub mirroring_axes: Option<Vec<usize>>,
}

fn content(path: &Path, detail: impl Into<String>) -> TorchFileError {
    TorchFileError::Content {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

fn read_err(path: &Path) -> impl Fn(pytorch_reader::PytorchError) -> TorchFileError + '_ {
    move |source| TorchFileError::Read {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads an nnU-Net checkpoint: the network weights as f32 and the metadata around them.
pub fn read_checkpoint(path: &Path) -> Result<NnunetCheckpoint, TorchFileError> {
    let mut ckpt = read_metadata(path)?;
    let reader =
        PytorchReader::with_top_level_key(path, "network_weights").map_err(read_err(path))?;
    for (name, t) in reader.into_tensors() {
        let values = to_f32(path, &name, &t)?;
        ckpt.weights.insert(
            canonical_key(&name),
            StateTensor {
                shape: t.shape().to_vec(),
                values,
            },
        );
    }
    Ok(ckpt)
}

/// Reads what an nnU-Net checkpoint says about itself, without its weights (left empty).
pub fn read_metadata(path: &Path) -> Result<NnunetCheckpoint, TorchFileError> {
    let root = PytorchReader::read_pickle_data(path, None).map_err(read_err(path))?;
    let PickleValue::Dict(root) = root else {
        return Err(content(path, "the checkpoint is not a dictionary"));
    };
    let trainer_name = match root.get("trainer_name") {
        Some(PickleValue::String(s)) => s.clone(),
        _ => {
            return Err(content(
                path,
                "no trainer_name: not a checkpoint of nnU-Net v2's trainer",
            ));
        }
    };
    let init = match root.get("init_args") {
        Some(PickleValue::Dict(d)) => Some(d),
        _ => None,
    };
    let text = |k: &str| match init.and_then(|d| d.get(k)) {
        Some(PickleValue::String(s)) => Some(s.clone()),
        Some(PickleValue::Int(i)) => Some(i.to_string()),
        _ => None,
    };
    let mirroring_axes = mirroring(path, root.get("inference_allowed_mirroring_axes"))?;
    Ok(NnunetCheckpoint {
        weights: BTreeMap::new(),
        trainer_name,
        configuration: text("configuration"),
        fold: text("fold"),
        mirroring_axes,
    })
}

fn mirroring(path: &Path, v: Option<&PickleValue>) -> Result<Option<Vec<usize>>, TorchFileError> {
    match v {
        None | Some(PickleValue::None) => Ok(None),
        Some(PickleValue::List(items)) => items
            .iter()
            .map(|i| match i {
                PickleValue::Int(a) if (0..3).contains(a) => Ok(*a as usize),
                other => Err(content(
                    path,
                    format!("inference_allowed_mirroring_axes holds {other:?}, not an axis 0..2"),
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => Err(content(
            path,
            format!("inference_allowed_mirroring_axes is {other:?}, not a tuple of axes"),
        )),
    }
}

/// A state-dict key without the wrappers torch.compile (`_orig_mod.`) and DDP (`module.`) add.
pub fn canonical_key(name: &str) -> String {
    let mut k = name;
    loop {
        if let Some(rest) = k.strip_prefix("_orig_mod.") {
            k = rest;
        } else if let Some(rest) = k.strip_prefix("module.") {
            k = rest;
        } else {
            break;
        }
    }
    k.replace("._orig_mod.", ".")
}

fn to_f32(path: &Path, name: &str, t: &pytorch_reader::Tensor) -> Result<Vec<f32>, TorchFileError> {
    let err = |detail: String| TorchFileError::Tensor {
        path: PathBuf::from(path),
        name: name.to_string(),
        detail,
    };
    let bytes = t.read().map_err(|e| err(e.to_string()))?;
    let values = match t.dtype() {
        DType::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        DType::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        DType::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        DType::F64 => bytes
            .chunks_exact(8)
            .map(|b| {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                f64::from_le_bytes(a) as f32
            })
            .collect(),
        other => return Err(err(format!("element type {other:?} is not a float weight"))),
    };
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::canonical_key;

    #[test]
    fn wrapper_prefixes_are_removed() {
        assert_eq!(canonical_key("_orig_mod.encoder.x"), "encoder.x");
        assert_eq!(canonical_key("module._orig_mod.decoder.y"), "decoder.y");
        assert_eq!(canonical_key("encoder.stages.0"), "encoder.stages.0");
    }
}
