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
                    "conv_bias": true,
                    "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                    "norm_op_kwargs": {"eps": 1e-5, "affine": true},
                    "dropout_op": null,
                    "dropout_op_kwargs": null,
                    "nonlin": "torch.nn.LeakyReLU",
                    "nonlin_kwargs": {"inplace": true}
                },
                "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]
            },
            "batch_dice": false
        })
    }

    fn from_json(name: &str, v: &Value) -> Result<Self, PlansError> {
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
    pub intensity: IntensityProperties,
}

impl Plans {
    pub fn configuration(&self, name: &str) -> Result<&Configuration, PlansError> {
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

    /// Reads nnU-Net v2 plans (ours or nnU-Net's); configurations that are not 3-D PlainConvUNets
    /// (nnU-Net's `2d`, cascades) are skipped.
    pub fn from_json(v: &Value) -> Result<Self, PlansError> {
        let get = |k: &str| v.get(k).cloned().ok_or_else(|| PlansError::Field(k.into()));
        let mut configurations = BTreeMap::new();
        if let Some(map) = v.get("configurations").and_then(Value::as_object) {
            for (name, c) in map {
                if let Ok(cfg) = Configuration::from_json(name, c)
                    && cfg.patch_size.len() == 3
                {
                    configurations.insert(name.clone(), cfg);
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
