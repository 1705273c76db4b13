//! `nnUNetPlans.json` in nnU-Net v2's own layout (the fields that apply), so a plan written by
//! either tool reads in the other; plus a small `3d_cpu` configuration for Lambda and tests.

use crate::plans::{FullresPlan, Topology, pool_and_conv_props};
use crate::preprocess::IntensityProperties;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum PlansError {
    #[error("plans: missing or malformed field {0}")]
    Field(String),
    #[error("plans: no configuration {0:?}")]
    NoConfiguration(String),
    #[error("plans: configuration {name:?} cannot be run here: {reason}")]
    Unsupported { name: String, reason: String },
    #[error("plans: {0}")]
    Json(#[from] serde_json::Error),
}

/// A configuration as the network and the preprocessor need it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Configuration {
    pub name: String,
    pub spacing: [f64; 3],
    pub patch_size: [usize; 3],
    pub batch_size: usize,
    pub median_image_size_in_voxels: [f64; 3],
    pub features_per_stage: Vec<usize>,
    pub kernel_sizes: Vec<[usize; 3]>,
    pub strides: Vec<[usize; 3]>,
    pub n_conv_per_stage: Vec<usize>,
    pub n_conv_per_stage_decoder: Vec<usize>,
    /// The layers around the convolutions (`arch_kwargs`' conv bias, norm and nonlinearity).
    #[serde(default)]
    pub layers: Layers,
    /// Soft Dice over the whole batch (true) or per sample, as the trainer uses it.
    #[serde(default)]
    pub batch_dice: bool,
}

/// What the PlainConvUNet's blocks are made of besides their shapes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Layers {
    pub conv_bias: bool,
    pub norm_eps: f64,
    pub norm_affine: bool,
    /// LeakyReLU's slope (0 for ReLU).
    pub negative_slope: f64,
    /// nonlinearity before the norm (`nonlin_first`).
    pub nonlin_first: bool,
}

impl Default for Layers {
    /// nnU-Net's defaults: biased convs, InstanceNorm3d(eps 1e-5, affine), LeakyReLU(0.01).
    fn default() -> Self {
        Self {
            conv_bias: true,
            norm_eps: 1e-5,
            norm_affine: true,
            negative_slope: 0.01,
            nonlin_first: false,
        }
    }
}

impl Layers {
    /// Reads and checks `arch_kwargs`: only what a 3-D PlainConvUNet with instance norm and a
    /// (leaky) ReLU needs is accepted; anything else is an error naming it.
    fn from_arch_kwargs(k: &Value) -> Result<Self, String> {
        let name = |key: &str| k.get(key).and_then(Value::as_str).unwrap_or("");
        let last = |s: &str| s.rsplit('.').next().unwrap_or("").to_string();
        if last(name("conv_op")) != "Conv3d" {
            return Err(format!("conv_op {:?} is not Conv3d", name("conv_op")));
        }
        if last(name("norm_op")) != "InstanceNorm3d" {
            return Err(format!(
                "norm_op {:?} is not InstanceNorm3d",
                name("norm_op")
            ));
        }
        let norm = k.get("norm_op_kwargs").cloned().unwrap_or(Value::Null);
        if norm.get("track_running_stats").and_then(Value::as_bool) == Some(true) {
            return Err("norm_op_kwargs.track_running_stats is true".into());
        }
        let nonlin = k.get("nonlin_kwargs").cloned().unwrap_or(Value::Null);
        let negative_slope = match last(name("nonlin")).as_str() {
            "LeakyReLU" => nonlin
                .get("negative_slope")
                .and_then(Value::as_f64)
                .unwrap_or(0.01),
            "ReLU" => 0.0,
            other => return Err(format!("nonlin {other:?} is not LeakyReLU or ReLU")),
        };
        Ok(Self {
            conv_bias: k.get("conv_bias").and_then(Value::as_bool).unwrap_or(false),
            norm_eps: norm.get("eps").and_then(Value::as_f64).unwrap_or(1e-5),
            // torch's InstanceNorm3d has no affine parameters unless asked
            norm_affine: norm.get("affine").and_then(Value::as_bool).unwrap_or(false),
            negative_slope,
            nonlin_first: k
                .get("nonlin_first")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        })
    }
}

/// nnU-Net's conversion of plans written before 2.4 (`UNet_class_name`, `UNet_base_num_features`,
/// `conv_kernel_sizes`, `pool_op_kernel_sizes`, ...) to the `architecture` block, as its
/// ConfigurationManager does on load; a configuration that has one is returned as is.
fn with_architecture(mut c: Value) -> Value {
    if c.get("architecture").is_some() || c.get("UNet_class_name").is_none() {
        return c;
    }
    let get = |k: &str| c.get(k).cloned().unwrap_or(Value::Null);
    let class = match get("UNet_class_name").as_str() {
        Some("PlainConvUNet") => "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        Some("ResidualEncoderUNet") => {
            "dynamic_network_architectures.architectures.residual_unet.ResidualEncoderUNet"
        }
        _ => "unknown",
    };
    let n = get("n_conv_per_stage_encoder")
        .as_array()
        .map_or(0, Vec::len);
    let base = get("UNet_base_num_features").as_u64().unwrap_or(0);
    let max = get("unet_max_num_features").as_u64().unwrap_or(u64::MAX);
    let features: Vec<u64> = (0..n).map(|i| (base << i).min(max)).collect();
    let arch = json!({
        "network_class_name": class,
        "arch_kwargs": {
            "n_stages": n,
            "features_per_stage": features,
            "conv_op": "torch.nn.modules.conv.Conv3d",
            "kernel_sizes": get("conv_kernel_sizes"),
            "strides": get("pool_op_kernel_sizes"),
            "n_conv_per_stage": get("n_conv_per_stage_encoder"),
            "n_conv_per_stage_decoder": get("n_conv_per_stage_decoder"),
            "conv_bias": true,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
            "norm_op_kwargs": {"eps": 1e-5, "affine": true},
            "dropout_op": null,
            "dropout_op_kwargs": null,
            "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": true}
        }
    });
    if let Some(o) = c.as_object_mut() {
        o.insert("architecture".into(), arch);
    }
    c
}

/// The network classes statapp runs, by nnU-Net's `network_class_name`.
const PLAIN_CONV_UNET: &str = "PlainConvUNet";

/// A configuration with its `inherits_from` chain resolved as nnU-Net's PlansManager does: the
/// parent's fields, overridden key by key (top level only) by the child's.
fn resolve_inheritance(
    configs: &serde_json::Map<String, Value>,
    name: &str,
) -> Result<Value, String> {
    let mut chain = vec![name.to_string()];
    let mut merged = serde_json::Map::new();
    let mut cur = name.to_string();
    loop {
        let c = configs
            .get(&cur)
            .and_then(Value::as_object)
            .ok_or_else(|| format!("inherits from {cur:?}, which the plans do not have"))?;
        for (k, v) in c {
            merged.entry(k.clone()).or_insert_with(|| v.clone());
        }
        match c.get("inherits_from").and_then(Value::as_str) {
            Some(parent) if chain.iter().any(|v| v == parent) => {
                return Err(format!("circular inheritance through {parent:?}"));
            }
            Some(parent) => {
                chain.push(parent.to_string());
                cur = parent.to_string();
            }
            None => return Ok(Value::Object(merged)),
        }
    }
}

impl Configuration {
    pub fn from_plan(name: &str, p: &FullresPlan) -> Self {
        let n = p.topology.strides.len();
        Self {
            name: name.into(),
            spacing: p.spacing,
            patch_size: p.patch_size,
            batch_size: p.batch_size,
            median_image_size_in_voxels: p.median_image_size_in_voxels,
            features_per_stage: p.features_per_stage.clone(),
            kernel_sizes: p.topology.kernel_sizes.clone(),
            strides: p.topology.strides.clone(),
            n_conv_per_stage: vec![2; n],
            n_conv_per_stage_decoder: vec![2; n - 1],
            layers: Layers::default(),
            // nnU-Net's planner: per-sample Dice for 3d_fullres
            batch_dice: false,
        }
    }

    /// A CPU-sized variant, like nnU-Net's `3d_lowres`: every axis finer than the coarsest is
    /// coarsened by `spacing_factor` (capped at the coarsest; all axes when isotropic), the patch
    /// is at most `max_patch` and at most the median image at that spacing, 8 base features capped
    /// at 64. On a CPU this buys more context and more iterations per second for a little
    /// resolution; predictions are resampled back to the image grid as for any plan.
    pub fn cpu(fullres: &FullresPlan, max_patch: [usize; 3], spacing_factor: f64) -> Self {
        let old = fullres.spacing;
        let coarsest = old.iter().copied().fold(f64::MIN, f64::max);
        let isotropic = old.iter().all(|s| (s - coarsest).abs() < 1e-9);
        let spacing: [f64; 3] = std::array::from_fn(|a| {
            if isotropic {
                old[a] * spacing_factor
            } else {
                (old[a] * spacing_factor).min(coarsest).max(old[a])
            }
        });
        let median: [f64; 3] =
            std::array::from_fn(|a| fullres.median_image_size_in_voxels[a] * old[a] / spacing[a]);
        let patch: [f64; 3] =
            std::array::from_fn(|a| (max_patch[a] as f64).min(median[a].round().max(8.0)));
        let topo: Topology = pool_and_conv_props(spacing, patch, 4.0);
        let n = topo.strides.len();
        Self {
            name: "3d_cpu".into(),
            spacing,
            patch_size: topo.patch_size,
            batch_size: 2,
            median_image_size_in_voxels: median,
            features_per_stage: (0..n).map(|i| (8usize << i).min(64)).collect(),
            kernel_sizes: topo.kernel_sizes,
            strides: topo.strides,
            n_conv_per_stage: vec![2; n],
            n_conv_per_stage_decoder: vec![2; n - 1],
            layers: Layers::default(),
            // as nnU-Net's 3d_lowres: the Dice over the batch
            batch_dice: true,
        }
    }

    /// Folder of this configuration's preprocessed cases (nnU-Net's `data_identifier`).
    pub fn data_identifier(&self) -> String {
        format!("nnUNetPlans_{}", self.name)
    }

    fn to_json(&self) -> Value {
        json!({
            "data_identifier": self.data_identifier(),
            "preprocessor_name": "DefaultPreprocessor",
            "batch_size": self.batch_size,
            "patch_size": self.patch_size,
            "median_image_size_in_voxels": self.median_image_size_in_voxels,
            "spacing": self.spacing,
            "normalization_schemes": ["CTNormalization"],
            "use_mask_for_norm": [false],
            "resampling_fn_data": "resample_data_or_seg_to_shape",
            "resampling_fn_seg": "resample_data_or_seg_to_shape",
            "resampling_fn_data_kwargs": {"is_seg": false, "order": 3, "order_z": 0, "force_separate_z": null},
            "resampling_fn_seg_kwargs": {"is_seg": true, "order": 1, "order_z": 0, "force_separate_z": null},
            "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
            "resampling_fn_probabilities_kwargs": {"is_seg": false, "order": 1, "order_z": 0, "force_separate_z": null},
            "architecture": {
                "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                "arch_kwargs": {
                    "n_stages": self.strides.len(),
                    "features_per_stage": self.features_per_stage,
                    "conv_op": "torch.nn.modules.conv.Conv3d",
                    "kernel_sizes": self.kernel_sizes,
                    "strides": self.strides,
                    "n_conv_per_stage": self.n_conv_per_stage,
                    "n_conv_per_stage_decoder": self.n_conv_per_stage_decoder,
                    "conv_bias": self.layers.conv_bias,
                    "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                    "norm_op_kwargs": {"eps": self.layers.norm_eps, "affine": self.layers.norm_affine},
                    "dropout_op": null,
                    "dropout_op_kwargs": null,
                    "nonlin": "torch.nn.LeakyReLU",
                    "nonlin_kwargs": {"inplace": true, "negative_slope": self.layers.negative_slope},
                    "nonlin_first": self.layers.nonlin_first
                },
                "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]
            },
            "batch_dice": self.batch_dice
        })
    }

    fn from_json(name: &str, v: &Value) -> Result<Self, PlansError> {
        let unsupported = |reason: String| PlansError::Unsupported {
            name: name.into(),
            reason,
        };
        let class = v
            .pointer("/architecture/network_class_name")
            .and_then(Value::as_str)
            .unwrap_or("");
        if class.rsplit('.').next() != Some(PLAIN_CONV_UNET) {
            return Err(unsupported(format!(
                "network class {class:?} is not supported (statapp runs {PLAIN_CONV_UNET})"
            )));
        }
        if let Some(schemes) = v.get("normalization_schemes").and_then(Value::as_array)
            && schemes
                .iter()
                .any(|n| n.as_str() != Some("CTNormalization"))
        {
            return Err(unsupported(format!(
                "normalization {schemes:?}: statapp preprocesses CT (CTNormalization) only"
            )));
        }
        let layers = Layers::from_arch_kwargs(
            v.pointer("/architecture/arch_kwargs")
                .unwrap_or(&Value::Null),
        )
        .map_err(unsupported)?;
        let field = |k: &str| -> Result<Value, PlansError> {
            let mut cur = v;
            for part in k.split('.') {
                cur = cur
                    .get(part)
                    .ok_or_else(|| PlansError::Field(format!("{name}.{k}")))?;
            }
            Ok(cur.clone())
        };
        let arch = "architecture.arch_kwargs";
        Ok(Self {
            name: name.into(),
            spacing: serde_json::from_value(field("spacing")?)?,
            patch_size: serde_json::from_value(field("patch_size")?)?,
            batch_size: serde_json::from_value(field("batch_size")?)?,
            median_image_size_in_voxels: serde_json::from_value(field(
                "median_image_size_in_voxels",
            )?)?,
            features_per_stage: serde_json::from_value(field(&format!(
                "{arch}.features_per_stage"
            ))?)?,
            kernel_sizes: serde_json::from_value(field(&format!("{arch}.kernel_sizes"))?)?,
            strides: serde_json::from_value(field(&format!("{arch}.strides"))?)?,
            n_conv_per_stage: serde_json::from_value(field(&format!("{arch}.n_conv_per_stage"))?)?,
            n_conv_per_stage_decoder: serde_json::from_value(field(&format!(
                "{arch}.n_conv_per_stage_decoder"
            ))?)?,
            layers,
            batch_dice: v
                .get("batch_dice")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        })
    }
}

/// The plans of a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Plans {
    pub dataset_name: String,
    pub transpose_forward: [usize; 3],
    pub transpose_backward: [usize; 3],
    pub original_median_spacing_after_transp: [f64; 3],
    pub original_median_shape_after_transp: [f64; 3],
    pub configurations: BTreeMap<String, Configuration>,
    /// Configurations present in the file that statapp cannot run, with the reason.
    pub unsupported: BTreeMap<String, String>,
    pub intensity: IntensityProperties,
}

impl Plans {
    pub fn configuration(&self, name: &str) -> Result<&Configuration, PlansError> {
        if let Some(reason) = self.unsupported.get(name) {
            return Err(PlansError::Unsupported {
                name: name.into(),
                reason: reason.clone(),
            });
        }
        self.configurations
            .get(name)
            .ok_or_else(|| PlansError::NoConfiguration(name.into()))
    }

    pub fn to_json(&self) -> Value {
        let configs: serde_json::Map<String, Value> = self
            .configurations
            .iter()
            .map(|(k, c)| (k.clone(), c.to_json()))
            .collect();
        json!({
            "dataset_name": self.dataset_name,
            "plans_name": "nnUNetPlans",
            "original_median_spacing_after_transp": self.original_median_spacing_after_transp,
            "original_median_shape_after_transp": self.original_median_shape_after_transp,
            "image_reader_writer": "SimpleITKIO",
            "transpose_forward": self.transpose_forward,
            "transpose_backward": self.transpose_backward,
            "configurations": configs,
            "experiment_planner_used": "ExperimentPlanner",
            "label_manager": "LabelManager",
            "foreground_intensity_properties_per_channel": {"0": self.intensity},
        })
    }

    /// Reads nnU-Net v2 plans (ours or nnU-Net's), `inherits_from` resolved; configurations
    /// that are not 3-D PlainConvUNets (nnU-Net's `2d`, ResEnc presets) are kept aside with the
    /// reason, which [`Plans::configuration`] reports when one is asked for.
    pub fn from_json(v: &Value) -> Result<Self, PlansError> {
        let get = |k: &str| v.get(k).cloned().ok_or_else(|| PlansError::Field(k.into()));
        let mut configurations = BTreeMap::new();
        let mut unsupported = BTreeMap::new();
        if let Some(map) = v.get("configurations").and_then(Value::as_object) {
            for name in map.keys() {
                let parsed = resolve_inheritance(map, name)
                    .map_err(|reason| PlansError::Unsupported {
                        name: name.clone(),
                        reason,
                    })
                    .and_then(|c| Configuration::from_json(name, &with_architecture(c)));
                match parsed {
                    Ok(cfg) => {
                        configurations.insert(name.clone(), cfg);
                    }
                    Err(PlansError::Unsupported { reason, .. }) => {
                        unsupported.insert(name.clone(), reason);
                    }
                    Err(other) => {
                        unsupported.insert(name.clone(), other.to_string());
                    }
                }
            }
        }
        Ok(Self {
            dataset_name: serde_json::from_value(get("dataset_name")?)?,
            transpose_forward: serde_json::from_value(get("transpose_forward")?)?,
            transpose_backward: serde_json::from_value(get("transpose_backward")?)?,
            original_median_spacing_after_transp: serde_json::from_value(get(
                "original_median_spacing_after_transp",
            )?)?,
            original_median_shape_after_transp: serde_json::from_value(get(
                "original_median_shape_after_transp",
            )?)?,
            configurations,
            unsupported,
            intensity: serde_json::from_value(
                v.pointer("/foreground_intensity_properties_per_channel/0")
                    .cloned()
                    .ok_or_else(|| {
                        PlansError::Field("foreground_intensity_properties_per_channel.0".into())
                    })?,
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plans(configs: Value) -> Value {
        json!({
            "dataset_name": "D", "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
            "original_median_spacing_after_transp": [1.0, 1.0, 1.0],
            "original_median_shape_after_transp": [10, 10, 10],
            "foreground_intensity_properties_per_channel": {"0": {"max": 1.0, "mean": 0.0,
                "median": 0.0, "min": 0.0, "percentile_00_5": 0.0, "percentile_99_5": 1.0, "std": 1.0}},
            "configurations": configs,
        })
    }

    fn base() -> Value {
        json!({
            "spacing": [2.0, 1.0, 1.0], "patch_size": [16, 32, 32], "batch_size": 2,
            "median_image_size_in_voxels": [40, 80, 80], "normalization_schemes": ["CTNormalization"],
            "architecture": {
                "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                "arch_kwargs": {"n_stages": 2, "features_per_stage": [8, 16],
                    "conv_op": "torch.nn.modules.conv.Conv3d", "kernel_sizes": [[1, 3, 3], [3, 3, 3]],
                    "strides": [[1, 1, 1], [1, 2, 2]], "n_conv_per_stage": [2, 2],
                    "n_conv_per_stage_decoder": [2], "conv_bias": true,
                    "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                    "norm_op_kwargs": {"eps": 1e-5, "affine": true},
                    "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": true}}
            }
        })
    }

    #[test]
    fn inheritance_overrides_top_level_keys() {
        let p = Plans::from_json(&plans(json!({
            "3d_fullres": base(),
            "3d_small": {"inherits_from": "3d_fullres", "patch_size": [8, 16, 16]},
        })))
        .unwrap();
        let c = p.configuration("3d_small").unwrap();
        assert_eq!(c.patch_size, [8, 16, 16]);
        assert_eq!(c.features_per_stage, [8, 16]);
    }

    #[test]
    fn unsupported_networks_say_which_class() {
        let mut resenc = base();
        resenc["architecture"]["network_class_name"] =
            json!("dynamic_network_architectures.architectures.residual_unet.ResidualEncoderUNet");
        let p = Plans::from_json(&plans(json!({"3d_fullres": resenc}))).unwrap();
        let err = p.configuration("3d_fullres").unwrap_err().to_string();
        assert!(err.contains("ResidualEncoderUNet"), "{err}");
        let mut mr = base();
        mr["normalization_schemes"] = json!(["ZScoreNormalization"]);
        let p = Plans::from_json(&plans(json!({"3d_fullres": mr}))).unwrap();
        assert!(
            p.configuration("3d_fullres")
                .unwrap_err()
                .to_string()
                .contains("ZScore")
        );
    }

    #[test]
    fn old_plans_without_architecture_are_converted() {
        let old = json!({
            "spacing": [2.0, 1.0, 1.0], "patch_size": [16, 32, 32], "batch_size": 2,
            "median_image_size_in_voxels": [40, 80, 80], "UNet_class_name": "PlainConvUNet",
            "UNet_base_num_features": 32, "unet_max_num_features": 48,
            "n_conv_per_stage_encoder": [2, 2, 2], "n_conv_per_stage_decoder": [2, 2],
            "conv_kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 3, 3]],
            "pool_op_kernel_sizes": [[1, 1, 1], [1, 2, 2], [2, 2, 2]],
        });
        let p = Plans::from_json(&plans(json!({"3d_fullres": old}))).unwrap();
        let c = p.configuration("3d_fullres").unwrap();
        assert_eq!(c.features_per_stage, [32, 48, 48]);
        assert_eq!(c.strides[2], [2, 2, 2]);
        assert!(c.layers.norm_affine && c.layers.conv_bias);
    }
}
