//! Where predictions live and how they move between the store and scratch directories.

use crate::StageError;
use crate::digests::{CODE_VERSION, CaseDigests, ModelVersion, PredictionInputs, recorded_inputs};
use statapp_nnunet::ensemble::{PROB_FILES, SEGMENTATION_FILE};
use statapp_pipeline::{Key, ObjectStore};
use std::path::Path;

/// The files of one prediction, segmentation last: its presence means the files are all there
/// (its `inputs.json`, written after them, says from what).
pub fn files() -> impl Iterator<Item = &'static str> {
    PROB_FILES.iter().copied().chain([SEGMENTATION_FILE])
}

/// `<prefix>/<case>/<file>`.
pub fn key(prefix: &str, case: &str, file: &str) -> Result<Key, StageError> {
    Ok(Key::new(format!(
        "{}/{case}/{file}",
        prefix.trim_end_matches('/')
    ))?)
}

/// True when `<prefix>/<case>/segmentation.nii.gz` exists.
pub fn complete(store: &dyn ObjectStore, prefix: &str, case: &str) -> Result<bool, StageError> {
    Ok(store.exists(&key(prefix, case, SEGMENTATION_FILE)?)?)
}

/// True when `model`'s prediction of `case` is complete and was computed from the case's current
/// image, the model's current version and this code (its `inputs.json`).
pub fn current(store: &dyn ObjectStore, model: &str, case: &str) -> Result<bool, StageError> {
    let prefix = format!("predictions/{model}");
    if !complete(store, &prefix, case)? {
        return Ok(false);
    }
    let Some(recorded) = recorded_inputs(store, &prefix, case)? else {
        return Ok(false);
    };
    let Some(case_digests) = CaseDigests::current(store, case)? else {
        return Ok(false);
    };
    let want = PredictionInputs {
        image: case_digests.image,
        model: ModelVersion::current(store, model)?.digest,
        code: CODE_VERSION.to_string(),
    };
    Ok(recorded == want.encode()?)
}

/// Uploads a prediction directory, segmentation last.
pub fn upload(
    store: &dyn ObjectStore,
    dir: &Path,
    prefix: &str,
    case: &str,
) -> Result<(), StageError> {
    for f in files() {
        store.put(&key(prefix, case, f)?, &std::fs::read(dir.join(f))?)?;
    }
    Ok(())
}

/// Downloads a prediction into `dir`.
pub fn download(
    store: &dyn ObjectStore,
    prefix: &str,
    case: &str,
    dir: &Path,
) -> Result<(), StageError> {
    std::fs::create_dir_all(dir)?;
    for f in files() {
        let k = key(prefix, case, f)?;
        let body = store
            .get(&k)?
            .ok_or_else(|| StageError::Missing { key: k.to_string() })?;
        std::fs::write(dir.join(f), body)?;
    }
    Ok(())
}
