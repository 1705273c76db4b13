//! Digests of what derived objects were computed from (DESIGN.md §3: a job whose output exists
//! with the same input digest does nothing). A case's are in `cases/<case>/inputs.json` (written
//! with its canonical files) and its ingest marker; a model's in `models/<id>/version.json`
//! (written by its registration); a prediction's in its `inputs.json` (case image, model
//! version, code version); a metric row's in `metrics/inputs/<case>/<name>.json`. So a re-uploaded
//! annotation re-scores its case, a new image re-predicts its case, a retrained model re-predicts
//! its cases, and each recomputes what depends on it and nothing else.

use crate::StageError;
use crate::ingest::INGESTED;
use sha2::Digest;
use statapp_pipeline::{Key, ObjectStore};

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&sha2::Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex sha256 over several parts, each preceded by its length (so parts cannot run together).
pub fn sha256_parts(parts: &[&[u8]]) -> String {
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex(&h.finalize())
}

/// [`CaseDigests::annotations`] of the three annotation files' bytes, in order.
pub fn annotations_digest(annotations: [&[u8]; 3]) -> String {
    sha256_parts(&annotations)
}

/// The digests of a case's canonical files, as `cases/<case>/ingested.json` records them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CaseDigests {
    /// Of everything below: names the case's version (its ingest claim).
    pub inputs: String,
    /// sha256 of `image.nii.gz`, as the preprocessed case records it.
    pub image: String,
    /// Of `annotation_1..3.nii.gz`, in that order: what a metric row depends on.
    pub annotations: String,
}

impl CaseDigests {
    /// Of the canonical `image` and `annotations` bytes.
    pub fn of(image: &[u8], annotations: [&[u8]; 3]) -> Self {
        let image = sha256_hex(image);
        let annotations = annotations_digest(annotations);
        Self {
            inputs: sha256_parts(&[image.as_bytes(), annotations.as_bytes()]),
            image,
            annotations,
        }
    }

    fn marker(case: &str) -> Result<Key, StageError> {
        Ok(Key::new(format!("cases/{case}/{INGESTED}"))?)
    }

    fn current_key(case: &str) -> Result<Key, StageError> {
        Ok(Key::new(format!("cases/{case}/{CASE_INPUTS}"))?)
    }

    /// The digests of the case's canonical files as they are now (written right after them, so
    /// never older); `None` before the case is ingested.
    pub fn current(store: &dyn ObjectStore, case: &str) -> Result<Option<Self>, StageError> {
        read_json(store, &Self::current_key(case)?)
    }

    /// Records the digests of canonical files just written.
    pub fn write_current(&self, store: &dyn ObjectStore, case: &str) -> Result<(), StageError> {
        store.put(&Self::current_key(case)?, &self.encode(case)?)?;
        Ok(())
    }

    /// The marker's bytes (deterministic).
    pub fn encode(&self, case: &str) -> Result<Vec<u8>, StageError> {
        let mut out =
            serde_json::to_vec_pretty(self).map_err(StageError::json(Self::marker(case)?))?;
        out.push(b'\n');
        Ok(out)
    }
}

/// `cases/<case>/inputs.json`.
pub const CASE_INPUTS: &str = "inputs.json";
/// A prediction's (or ensemble's) record of its inputs, written after its other files.
pub const PREDICTION_INPUTS: &str = "inputs.json";
/// The code's version, part of every prediction's inputs.
pub const CODE_VERSION: &str = env!("CARGO_PKG_VERSION");

fn read_json<T: serde::de::DeserializeOwned>(
    store: &dyn ObjectStore,
    key: &Key,
) -> Result<Option<T>, StageError> {
    match store.get(key)? {
        None => Ok(None),
        Some(body) => serde_json::from_slice(&body)
            .map(Some)
            .map_err(StageError::json(key)),
    }
}

fn put_json<T: serde::Serialize>(
    store: &dyn ObjectStore,
    key: &Key,
    value: &T,
) -> Result<(), StageError> {
    let mut out = serde_json::to_vec_pretty(value).map_err(StageError::json(key))?;
    out.push(b'\n');
    store.put(key, &out)?;
    Ok(())
}

/// `models/<id>/version.json`: the digest of a registered model's files.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModelVersion {
    /// sha256 over every file under `models/<id>/` but this one, by key.
    pub digest: String,
}

impl ModelVersion {
    fn key(model: &str) -> Result<Key, StageError> {
        Ok(Key::new(format!("models/{model}/version.json"))?)
    }

    /// The digest of the model's files as they are now.
    pub fn compute(store: &dyn ObjectStore, model: &str) -> Result<Self, StageError> {
        let own = Self::key(model)?;
        let mut parts: Vec<Vec<u8>> = Vec::new();
        for k in store.list(&format!("models/{model}/"))? {
            if k == own {
                continue;
            }
            let body = store
                .get(&k)?
                .ok_or_else(|| StageError::Missing { key: k.to_string() })?;
            parts.push(k.as_str().as_bytes().to_vec());
            parts.push(body);
        }
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        Ok(Self {
            digest: sha256_parts(&refs),
        })
    }

    /// Computes and records the version (registration: `model.json` is uploaded last).
    pub fn register(store: &dyn ObjectStore, model: &str) -> Result<Self, StageError> {
        let v = Self::compute(store, model)?;
        put_json(store, &Self::key(model)?, &v)?;
        Ok(v)
    }

    /// The recorded version, or the files' digest where none is recorded (a memo of the same
    /// pure function: registration records it so that a job need not read the weights).
    pub fn current(store: &dyn ObjectStore, model: &str) -> Result<Self, StageError> {
        match read_json(store, &Self::key(model)?)? {
            Some(v) => Ok(v),
            None => Self::compute(store, model),
        }
    }
}

/// What one model's prediction of one case was computed from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PredictionInputs {
    /// [`CaseDigests::image`].
    pub image: String,
    /// [`ModelVersion::digest`].
    pub model: String,
    /// [`CODE_VERSION`].
    pub code: String,
}

impl PredictionInputs {
    /// 16 hex digits naming these inputs (the prediction's `partials/` directory).
    pub fn short(&self) -> String {
        sha256_parts(&[
            self.image.as_bytes(),
            self.model.as_bytes(),
            self.code.as_bytes(),
        ])[..16]
            .to_string()
    }

    /// The `inputs.json` bytes (deterministic).
    pub fn encode(&self) -> Result<Vec<u8>, StageError> {
        let mut out =
            serde_json::to_vec_pretty(self).map_err(StageError::json(PREDICTION_INPUTS))?;
        out.push(b'\n');
        Ok(out)
    }
}

/// The recorded inputs of the prediction (or ensemble) under `prefix` for `case`, as bytes.
pub fn recorded_inputs(
    store: &dyn ObjectStore,
    prefix: &str,
    case: &str,
) -> Result<Option<Vec<u8>>, StageError> {
    Ok(store.get(&crate::predictions::key(prefix, case, PREDICTION_INPUTS)?)?)
}

/// What a metric row was scored against.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RowInputs {
    /// [`CaseDigests::annotations`] of the annotations the row was scored against.
    pub annotations: String,
    /// sha256 of the scored prediction's (or ensemble's) `inputs.json`.
    pub prediction: String,
}

impl RowInputs {
    pub fn key(case: &str, name: &str) -> Result<Key, StageError> {
        Ok(Key::new(format!("metrics/inputs/{case}/{name}.json"))?)
    }

    pub fn write(&self, store: &dyn ObjectStore, case: &str, name: &str) -> Result<(), StageError> {
        put_json(store, &Self::key(case, name)?, self)
    }

    /// Whether the row of `name` exists and was scored against the case's current annotations
    /// and the current prediction under `source`.
    pub fn current(
        store: &dyn ObjectStore,
        case: &str,
        name: &str,
        source: &str,
    ) -> Result<bool, StageError> {
        let Some(row) = read_json::<RowInputs>(store, &Self::key(case, name)?)? else {
            return Ok(false);
        };
        let Some(case_digests) = CaseDigests::current(store, case)? else {
            return Ok(false);
        };
        let Some(prediction) = recorded_inputs(store, source, case)? else {
            return Ok(false);
        };
        let csv = Key::new(format!("metrics/rows/{case}/{name}.csv"))?;
        Ok(row.annotations == case_digests.annotations
            && row.prediction == sha256_hex(&prediction)
            && store.exists(&csv)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_separate_their_parts() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(sha256_parts(&[b"ab", b"c"]), sha256_parts(&[b"a", b"bc"]));
        let a = CaseDigests::of(b"img", [b"1", b"2", b"3"]);
        let b = CaseDigests::of(b"img", [b"1", b"2", b"4"]);
        assert_eq!(a.image, b.image);
        assert_ne!(a.annotations, b.annotations);
        assert_ne!(a.inputs, b.inputs);
    }
}
