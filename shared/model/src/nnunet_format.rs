//! nnU-Net v2's state-dict layout for the PlainConvUNet: weights read from an nnU-Net checkpoint
//! (canonical keys such as `encoder.stages.0.0.convs.0.conv.weight`) and written back with every
//! alias PyTorch's `load_state_dict` expects (`...all_modules.0.weight`, `decoder.encoder.*`).

use crate::checkpoint::{
    CHECKPOINT_BEST, CHECKPOINT_FINAL, CheckpointError, ModelInfo, load_weights, read_info,
    save_weights, write_info,
};
use crate::unet::{ParamSource, PlainConvUNet};
use burn::tensor::{Device, Tensor, TensorData};
use statapp_nnunet::plans_file::Layers;
use statapp_nnunet::results::{Which, read_results_folder};
use statapp_torchfile::{CheckpointOut, StateTensor, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Parameters taken from a state dict; a missing key or a shape that differs from the plan's
/// network is an error naming it.
pub struct StateDictSource<'a> {
    weights: &'a BTreeMap<String, StateTensor>,
    device: &'a Device,
}

impl std::fmt::Debug for StateDictSource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StateDictSource({} tensors)", self.weights.len())
    }
}

impl<'a> StateDictSource<'a> {
    pub fn new(weights: &'a BTreeMap<String, StateTensor>, device: &'a Device) -> Self {
        Self { weights, device }
    }

    fn get(&self, key: &str, shape: &[usize]) -> Result<Vec<f32>, String> {
        let t = self.weights.get(key).ok_or_else(|| {
            format!(
                "network_weights has no {key}: the checkpoint does not match plans.json's network"
            )
        })?;
        if t.shape != shape {
            return Err(format!(
                "{key} has shape {:?}, plans.json's network needs {shape:?}",
                t.shape
            ));
        }
        Ok(t.values.clone())
    }
}

impl ParamSource for StateDictSource<'_> {
    type Error = String;

    fn weight(&mut self, key: &str, shape: [usize; 5]) -> Result<Tensor<5>, String> {
        let v = self.get(key, &shape)?;
        Ok(Tensor::from_data(TensorData::new(v, shape), self.device))
    }

    fn vector(&mut self, key: &str, n: usize, _ones: bool) -> Result<Tensor<1>, String> {
        let v = self.get(key, &[n])?;
        Ok(Tensor::from_data(TensorData::new(v, [n]), self.device))
    }
}

/// Every key a parameter has in PyTorch's `state_dict()` of dynamic_network_architectures'
/// PlainConvUNet: the named one, its `all_modules.<i>` alias, and for encoder parameters the same
/// again under `decoder.encoder.` (the decoder holds the encoder).
pub fn aliases(key: &str, layers: &Layers) -> Vec<String> {
    let mut out = vec![key.to_string()];
    // ConvDropoutNormReLU.all_modules: conv, norm, nonlin (nonlin before norm with nonlin_first)
    let norm_index = if layers.nonlin_first { 2 } else { 1 };
    for (part, index) in [(".conv.", 0), (".norm.", norm_index)] {
        if let Some(pos) = key.rfind(part)
            && key[..pos].contains(".convs.")
        {
            out.push(format!(
                "{}.all_modules.{index}.{}",
                &key[..pos],
                &key[pos + part.len()..]
            ));
        }
    }
    if key.starts_with("encoder.") {
        let encoder: Vec<String> = out.iter().map(|k| format!("decoder.{k}")).collect();
        out.extend(encoder);
    }
    out
}

/// The network's state dict as nnU-Net saves it: `(key, tensor)` with aliases, each alias of a
/// parameter given the same tensor.
pub fn state_dict(
    net: &PlainConvUNet,
    layers: &Layers,
) -> Result<Vec<(Vec<String>, StateTensor)>, String> {
    net.parameters()
        .into_iter()
        .map(|(key, data)| {
            let shape = data.shape().to_vec();
            let values = data
                .try_to_vec::<f32>()
                .map_err(|e| format!("{key}: {e:?}"))?;
            Ok((aliases(&key, layers), StateTensor { shape, values }))
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum ModelIoError {
    #[error(transparent)]
    Results(#[from] statapp_nnunet::results::ResultsError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Torch(#[from] statapp_torchfile::TorchFileError),
    #[error("{path}: {detail}")]
    Io { path: PathBuf, detail: String },
    #[error("{path}: {detail}")]
    Invalid { path: PathBuf, detail: String },
}

fn io(path: &Path, e: impl std::fmt::Display) -> ModelIoError {
    ModelIoError::Io {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

/// `statapp import-model`: converts the nnU-Net trained-model folder `folder` into the statapp
/// model directory `out/<id>/` (burnpack weights, `plans.json` and `dataset.json` as they are,
/// `model.json` last), assembled under a temporary name and renamed into place.
pub fn import_model(
    folder: &Path,
    id: &str,
    out: &Path,
    fold: Option<&str>,
    which: Which,
) -> Result<PathBuf, ModelIoError> {
    let found = read_results_folder(folder, id, fold, which)?;
    let device = Device::flex();
    let net = load_weights(&found.info.network, &found.checkpoint_file, &device)?;
    let weights = match which {
        Which::Final => CHECKPOINT_FINAL,
        Which::Best => CHECKPOINT_BEST,
    };
    let dest = out.join(id);
    let work = out.join(format!(".partial-{id}"));
    if work.exists() {
        std::fs::remove_dir_all(&work).map_err(|e| io(&work, e))?;
    }
    save_weights(&net, &work, weights)?;
    for (src, name) in [
        (&found.plans_file, "plans.json"),
        (&found.dataset_file, "dataset.json"),
    ] {
        std::fs::copy(src, work.join(name)).map_err(|e| io(src, e))?;
    }
    let mut info = found.info;
    info.checkpoints = vec![weights.to_string()];
    write_info(&work, &info).map_err(CheckpointError::from)?;
    if dest.exists() {
        std::fs::remove_dir_all(&dest).map_err(|e| io(&dest, e))?;
    }
    std::fs::rename(&work, &dest).map_err(|e| io(&dest, e))?;
    Ok(dest)
}

/// `dataset.json` for a model that has none (statapp-trained): its classes, one CT channel.
fn dataset_json(info: &ModelInfo) -> serde_json::Value {
    let labels: serde_json::Map<String, serde_json::Value> = info
        .classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.clone(), serde_json::Value::from(i)))
        .collect();
    serde_json::json!({
        "channel_names": {"0": "CT"},
        "labels": labels,
        "numTraining": 0,
        "file_ending": ".nii.gz",
    })
}

/// JSON as a pickled Python value (dicts keep their order).
fn to_value(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::None,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => Value::Str(s.clone()),
        J::Array(a) => Value::List(a.iter().map(to_value).collect()),
        J::Object(o) => Value::Dict(o.iter().map(|(k, v)| (k.clone(), to_value(v))).collect()),
    }
}

fn read_json(path: &Path) -> Result<serde_json::Value, ModelIoError> {
    let bytes = std::fs::read(path).map_err(|e| io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| ModelIoError::Invalid {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

/// `statapp export-model`: writes the model directory `model` as an nnU-Net v2 trained-model
/// folder `out/` (`plans.json`, `dataset.json`, `fold_all/checkpoint_final.pth`) that
/// nnU-Net's `nnUNetPredictor` loads: trainer `nnUNetTrainer`, the model's configuration and
/// mirroring axes, the state dict with every alias PyTorch's strict loading expects.
pub fn export_model(model: &Path, out: &Path) -> Result<(), ModelIoError> {
    let info = read_info(model).map_err(CheckpointError::from)?;
    let checkpoint = info.prediction_checkpoint().to_string();
    let device = Device::flex();
    let net = load_weights(&info.network, &model.join(&checkpoint), &device)?;
    let plans_file = model.join("plans.json");
    let plans = read_json(&plans_file)?;
    let dataset_file = model.join("dataset.json");
    let dataset = if dataset_file.is_file() {
        read_json(&dataset_file)?
    } else {
        dataset_json(&info)
    };
    let fold_dir = out.join("fold_all");
    std::fs::create_dir_all(&fold_dir).map_err(|e| io(&fold_dir, e))?;
    let mut ckpt = CheckpointOut::default();
    let mut weights = Vec::new();
    let tensors =
        state_dict(&net, &info.network.layers).map_err(|detail| ModelIoError::Invalid {
            path: model.join(&checkpoint),
            detail,
        })?;
    for (keys, t) in tensors {
        let v = ckpt.tensor(&t);
        weights.extend(keys.into_iter().map(|k| (k, v.clone())));
    }
    let axes: Vec<Value> = info
        .mirroring_axes
        .iter()
        .map(|a| Value::Int(*a as i64))
        .collect();
    ckpt.root = vec![
        ("network_weights".into(), Value::OrderedDict(weights)),
        ("optimizer_state".into(), Value::None),
        ("grad_scaler_state".into(), Value::None),
        ("logging".into(), Value::Dict(Vec::new())),
        ("_best_ema".into(), Value::None),
        ("current_epoch".into(), Value::Int(0)),
        (
            "init_args".into(),
            Value::Dict(vec![
                ("plans".into(), to_value(&plans)),
                (
                    "configuration".into(),
                    Value::Str(info.configuration.clone()),
                ),
                ("fold".into(), Value::Str("all".into())),
                ("dataset_json".into(), to_value(&dataset)),
            ]),
        ),
        ("trainer_name".into(), Value::Str("nnUNetTrainer".into())),
        (
            "inference_allowed_mirroring_axes".into(),
            if info.mirroring {
                Value::Tuple(axes)
            } else {
                Value::None
            },
        ),
    ];
    statapp_torchfile::write_checkpoint(&fold_dir.join("checkpoint_final.pth"), &ckpt)?;
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default() + "\n";
    for (name, v) in [("plans.json", &plans), ("dataset.json", &dataset)] {
        let path = out.join(name);
        statapp_volume::write_atomic(&path, pretty(v).as_bytes()).map_err(|e| io(&path, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_follow_dynamic_network_architectures() {
        let l = Layers::default();
        assert_eq!(
            aliases("encoder.stages.1.0.convs.0.norm.bias", &l),
            [
                "encoder.stages.1.0.convs.0.norm.bias",
                "encoder.stages.1.0.convs.0.all_modules.1.bias",
                "decoder.encoder.stages.1.0.convs.0.norm.bias",
                "decoder.encoder.stages.1.0.convs.0.all_modules.1.bias",
            ]
        );
        assert_eq!(
            aliases("decoder.stages.0.convs.1.conv.weight", &l),
            [
                "decoder.stages.0.convs.1.conv.weight",
                "decoder.stages.0.convs.1.all_modules.0.weight",
            ]
        );
        assert_eq!(
            aliases("decoder.seg_layers.2.bias", &l),
            ["decoder.seg_layers.2.bias"]
        );
    }
}
