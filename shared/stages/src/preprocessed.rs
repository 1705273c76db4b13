//! Preprocess once per plan (DESIGN.md §2): `preprocessed/<plan>/<case>/<image>/` (16 hex digits
//! of the image's sha256, so a re-uploaded image never mixes with the old one) holds a case on the
//! network's grid of one plan configuration (transposed, cropped, CT-normalised, resampled as
//! nnU-Net's DefaultPreprocessor does), as row chunks (`rows_<k>.f32`, little-endian float32,
//! `ROWS_PER_CHUNK` rows of axis 0 each) so a worker predicting a few tiles reads only the rows
//! under them, and `case.json` (shape, the properties that map predictions back, the image's
//! digest) written last. Models sharing a plan share the preprocessed case; the plan digest is
//! the sha256 of the model's `plans.json` bytes and configuration name.

use crate::StageError;
use ndarray::{Array3, s};
use serde::{Deserialize, Serialize};
use statapp_nnunet::model_dir::{MODEL_JSON, ModelInfo, parse_info};
use statapp_nnunet::plans_file::{Configuration, Plans};
use statapp_nnunet::preprocess::{CaseProperties, preprocess_owned, transpose};
use statapp_pipeline::{Key, ObjectStore};
use statapp_volume::{ReadOptions, read_nifti_bytes};
use std::path::Path;

/// Rows of axis 0 per chunk object (16 x 512 x 512 float32: 16 MiB).
pub const ROWS_PER_CHUNK: usize = 16;
const CASE_JSON: &str = "case.json";

/// A model's plan: what preprocessing and the sliding window need.
#[derive(Debug, Clone)]
pub struct ModelPlan {
    pub model: String,
    pub info: ModelInfo,
    pub digest: String,
    pub plans_bytes: Vec<u8>,
    pub plans: Plans,
}

impl ModelPlan {
    pub fn configuration(&self) -> Result<&Configuration, StageError> {
        self.plans
            .configuration(&self.info.configuration)
            .map_err(|source| StageError::Plans {
                model: self.model.clone(),
                source,
            })
    }
}

/// `case.json` of a preprocessed case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreprocessedCase {
    pub plan: String,
    pub case: String,
    /// Shape on the network's grid (after `transpose_forward`, crop and resampling).
    pub shape: [usize; 3],
    pub rows_per_chunk: usize,
    pub properties: CaseProperties,
    /// sha256 of `cases/<case>/image.nii.gz`.
    pub image_sha256: String,
}

use crate::digests::sha256_hex as hex;

/// The digest naming a plan configuration: 16 hex digits of sha256(plans.json, configuration).
pub fn plan_digest(plans_bytes: &[u8], configuration: &str) -> String {
    let mut all = plans_bytes.to_vec();
    all.push(0);
    all.extend_from_slice(configuration.as_bytes());
    hex(&all)[..16].to_string()
}

pub(crate) fn get(store: &dyn ObjectStore, key: &str) -> Result<Vec<u8>, StageError> {
    let k = Key::new(key)?;
    store
        .get(&k)?
        .ok_or_else(|| StageError::Missing { key: k.to_string() })
}

/// Reads `models/<model>/{model.json,plans.json}`.
pub fn model_plan(store: &dyn ObjectStore, model: &str) -> Result<ModelPlan, StageError> {
    let info_key = format!("models/{model}/{MODEL_JSON}");
    let info = parse_info(Path::new(&info_key), &get(store, &info_key)?).map_err(|source| {
        StageError::ModelInfo {
            model: model.to_string(),
            source,
        }
    })?;
    let plans_bytes = get(store, &format!("models/{model}/plans.json"))?;
    let json = serde_json::from_slice(&plans_bytes)
        .map_err(StageError::json(format!("models/{model}/plans.json")))?;
    let plans = Plans::from_json(&json).map_err(|source| StageError::Plans {
        model: model.to_string(),
        source,
    })?;
    Ok(ModelPlan {
        model: model.to_string(),
        digest: plan_digest(&plans_bytes, &info.configuration),
        info,
        plans_bytes,
        plans,
    })
}

fn prefix(plan: &str, case: &str, image_sha256: &str) -> String {
    let image = image_sha256.get(..16).unwrap_or(image_sha256);
    format!("preprocessed/{plan}/{case}/{image}")
}

/// The preprocessed case of `plan` from the image with digest `image_sha256`, if it is complete.
pub fn load(
    store: &dyn ObjectStore,
    plan: &str,
    case: &str,
    image_sha256: &str,
) -> Result<Option<PreprocessedCase>, StageError> {
    let key = Key::new(format!("{}/{CASE_JSON}", prefix(plan, case, image_sha256)))?;
    match store.get(&key)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(StageError::json(&key)),
    }
}

/// The preprocessed case of the model's plan and the case's current image (its digest as
/// `cases/<case>/inputs.json` records it), computed and written first if it is not there
/// (whoever needs it first writes it; a concurrent writer writes the same bytes).
pub fn ensure(
    store: &dyn ObjectStore,
    case: &str,
    plan: &ModelPlan,
) -> Result<PreprocessedCase, StageError> {
    let current =
        crate::digests::CaseDigests::current(store, case)?.ok_or_else(|| StageError::Missing {
            key: format!("cases/{case}/{}", crate::digests::CASE_INPUTS),
        })?;
    if let Some(done) = load(store, &plan.digest, case, &current.image)? {
        return Ok(done);
    }
    let config = plan.configuration()?;
    let image_key = format!("cases/{case}/image.nii.gz");
    let bytes = get(store, &image_key)?;
    // the bytes read name the result (an image replaced since the record is its own version)
    let image_sha256 = hex(&bytes);
    let image = read_nifti_bytes(Path::new(&image_key), &bytes, &ReadOptions::default())?;
    drop(bytes);
    let (data, geometry) = image.into_f32().into_parts();
    let forward = plan.plans.transpose_forward;
    let spacing = geometry.spacing_zyx();
    let spacing = forward.map(|a| spacing[a]);
    let data = if forward == [0, 1, 2] {
        data
    } else {
        transpose(&data, forward)
    };
    let pre = preprocess_owned(data, spacing, config.spacing, &plan.plans.intensity);
    let (z, y, x) = pre.data.dim();
    let dir = prefix(&plan.digest, case, &image_sha256);
    for (k, z0) in (0..z).step_by(ROWS_PER_CHUNK).enumerate() {
        let rows = pre.data.slice(s![z0..(z0 + ROWS_PER_CHUNK).min(z), .., ..]);
        let mut out = Vec::with_capacity(rows.len() * 4);
        for v in rows.iter() {
            out.extend_from_slice(&v.to_le_bytes());
        }
        store.put(&Key::new(format!("{dir}/rows_{k:05}.f32"))?, &out)?;
    }
    let done = PreprocessedCase {
        plan: plan.digest.clone(),
        case: case.to_string(),
        shape: [z, y, x],
        rows_per_chunk: ROWS_PER_CHUNK,
        properties: pre.properties,
        image_sha256,
    };
    let json =
        serde_json::to_vec_pretty(&done).map_err(StageError::json(format!("{dir}/{CASE_JSON}")))?;
    store.put(&Key::new(format!("{dir}/{CASE_JSON}"))?, &json)?;
    tracing::info!(case, plan = %plan.digest, shape = ?done.shape, "preprocessed");
    Ok(done)
}

/// Rows `z0..z1` (axis 0, clipped to the shape) of a preprocessed case, from the chunks under
/// them only.
pub fn read_rows(
    store: &dyn ObjectStore,
    pre: &PreprocessedCase,
    z0: usize,
    z1: usize,
) -> Result<Array3<f32>, StageError> {
    let [nz, ny, nx] = pre.shape;
    let (z0, z1) = (z0.min(nz), z1.min(nz));
    let r = pre.rows_per_chunk.max(1);
    let mut values = Vec::with_capacity((z1 - z0) * ny * nx);
    let dir = prefix(&pre.plan, &pre.case, &pre.image_sha256);
    let plane = ny * nx;
    for k in z0 / r..z1.div_ceil(r) {
        let key = format!("{dir}/rows_{k:05}.f32");
        let bytes = get(store, &key)?;
        let rows = (r.min(nz - k * r)) * plane;
        if bytes.len() != rows * 4 {
            return Err(StageError::Malformed {
                detail: format!("{} bytes, not {rows} float32 values", bytes.len()),
                key,
            });
        }
        // the part of this chunk inside z0..z1
        let first = z0.max(k * r) - k * r;
        let last = z1.min((k + 1) * r) - k * r;
        let chunk = &bytes[first * plane * 4..last * plane * 4];
        values.extend(
            chunk
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
    }
    Array3::from_shape_vec((z1 - z0, ny, nx), values).map_err(|e| StageError::Malformed {
        key: dir,
        detail: e.to_string(),
    })
}
