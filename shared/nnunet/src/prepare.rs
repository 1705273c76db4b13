//! nnU-Net's `plan_and_preprocess` for one annotator's view of a dataset: fingerprint, plans
//! (`3d_fullres` and the small `3d_cpu`), and every case preprocessed for each configuration into
//! `nnUNetPlans_<configuration>/{<case>_data, <case>_seg}.nii.gz` with `<case>.json` properties.

use crate::dataset::{CaseFiles, CaseSet, DatasetError, list_cases, read_splits, select};
use crate::plans::{percentile, plan_from_fingerprint};
use crate::plans_file::{Configuration, Plans};
use crate::preprocess::{case_fingerprint, dataset_fingerprint, preprocess, transpose};
use statapp_volume::{
    Geometry, ReadOptions, Volume, VolumeError, read_nifti, write_atomic, write_nifti,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error(transparent)]
    Volume(#[from] VolumeError),
    #[error("no labelled cases in {root} for annotator {annotator}")]
    NoCases { root: PathBuf, annotator: usize },
    #[error("no foreground voxels in any case of {0}")]
    NoForeground(PathBuf),
    #[error("{path}: {detail}")]
    Io { path: PathBuf, detail: String },
}

fn io(path: &Path, e: impl std::fmt::Display) -> PrepareError {
    PrepareError::Io {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

/// What to prepare.
#[derive(Debug, Clone)]
pub struct PrepareRequest {
    pub annotator: usize,
    pub cases: CaseSet,
    /// Largest patch of `3d_cpu`, `[z, y, x]`.
    pub cpu_patch: [usize; 3],
    /// How much coarser than `3d_fullres` the `3d_cpu` spacing is (in-plane; 1 keeps it).
    pub cpu_spacing_factor: f64,
    /// `dataset_name` written into the plans.
    pub dataset_name: String,
}

/// Stages reported to the progress callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Fingerprint,
    Preprocess,
}

/// Fingerprints, plans and preprocesses the labelled cases; returns the plans written.
pub fn prepare_dataset(
    root: &Path,
    out: &Path,
    req: &PrepareRequest,
    progress: &mut dyn FnMut(Stage, usize, usize),
) -> Result<Plans, PrepareError> {
    let all = list_cases(root, req.annotator)?;
    let splits = read_splits(root)?;
    let cases: Vec<CaseFiles> = select(&all, splits.as_ref(), &req.cases)?
        .into_iter()
        .filter(|c| c.labels.is_some())
        .collect();
    if cases.is_empty() {
        return Err(PrepareError::NoCases {
            root: root.to_path_buf(),
            annotator: req.annotator,
        });
    }
    let opts = ReadOptions::default();
    let load = |c: &CaseFiles| -> Result<(Volume<f32>, Volume<u8>), PrepareError> {
        let image = read_nifti(&c.image, &opts)?.into_f32();
        let labels_path = c.labels.as_deref().unwrap_or(&c.image);
        let labels = read_nifti(labels_path, &opts)?.to_labels(3)?;
        image.ensure_same_grid(&c.image, &labels, labels_path)?;
        Ok((image, labels))
    };
    let mut fps = Vec::with_capacity(cases.len());
    for (i, c) in cases.iter().enumerate() {
        let (image, labels) = load(c)?;
        fps.push(case_fingerprint(
            image.data(),
            labels.data(),
            image.geometry().spacing_zyx(),
        ));
        progress(Stage::Fingerprint, i + 1, cases.len());
    }
    let fp = dataset_fingerprint(&fps);
    let (plan, forward, backward) =
        plan_from_fingerprint(&fp.spacings, &fp.shapes_after_crop, cases.len(), 4);
    let intensity = fp
        .foreground_intensity_properties_per_channel
        .get("0")
        .cloned()
        .ok_or_else(|| PrepareError::NoForeground(root.to_path_buf()))?;
    let mut configurations = BTreeMap::new();
    configurations.insert(
        "3d_fullres".to_string(),
        Configuration::from_plan("3d_fullres", &plan),
    );
    configurations.insert(
        "3d_cpu".to_string(),
        Configuration::cpu(&plan, req.cpu_patch, req.cpu_spacing_factor),
    );
    let median = |values: Vec<f64>| percentile(&values, 50.0);
    let plans = Plans {
        dataset_name: req.dataset_name.clone(),
        transpose_forward: forward,
        transpose_backward: backward,
        original_median_spacing_after_transp: forward
            .map(|k| median(fp.spacings.iter().map(|s| s[k]).collect())),
        original_median_shape_after_transp: forward
            .map(|k| median(fp.shapes_after_crop.iter().map(|s| s[k] as f64).collect())),
        configurations,
        unsupported: BTreeMap::new(),
        intensity: intensity.clone(),
    };
    std::fs::create_dir_all(out).map_err(|e| io(out, e))?;
    let write_text = |path: PathBuf, text: String| -> Result<(), PrepareError> {
        write_atomic(&path, (text + "\n").as_bytes()).map_err(|e| io(&path, e))
    };
    write_text(out.join("dataset_fingerprint.json"), pretty(&fp))?;
    write_text(out.join("nnUNetPlans.json"), pretty(&plans.to_json()))?;
    let configs: Vec<&Configuration> = plans.configurations.values().collect();
    for c in &configs {
        let dir = out.join(c.data_identifier());
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    }
    for (i, case) in cases.iter().enumerate() {
        let (image, labels) = load(case)?;
        for c in &configs {
            let dir = out.join(c.data_identifier());
            // nnU-Net preprocesses the image with its axes in the plan's order
            let forward = plans.transpose_forward;
            let spacing = image.geometry().spacing_zyx();
            let pre = preprocess(
                &transpose(image.data(), forward),
                Some(&transpose(labels.data(), forward)),
                forward.map(|a| spacing[a]),
                c.spacing,
                &intensity,
            );
            let (z, y, x) = pre.data.dim();
            let g = Geometry::axis_aligned([z, y, x], c.spacing.map(|v| v as f32), [0.0; 3]);
            write_nifti(
                dir.join(format!("{}_data.nii.gz", case.id)),
                &Volume::new(pre.data, g.clone())?,
            )?;
            if let Some(seg) = pre.seg {
                write_nifti(
                    dir.join(format!("{}_seg.nii.gz", case.id)),
                    &Volume::new(seg, g)?,
                )?;
            }
            write_text(
                dir.join(format!("{}.json", case.id)),
                pretty(&pre.properties),
            )?;
        }
        progress(Stage::Preprocess, i + 1, cases.len());
    }
    Ok(plans)
}

/// Pretty JSON of plain data (string keys, finite numbers: cannot fail).
fn pretty<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}
