//! Digests of what derived objects were computed from (DESIGN.md §3: a job whose output exists
//! with the same input digest does nothing). A case's are recorded in its ingest marker; a
//! metric row's in `metrics/inputs/<case>/<name>.json`, beside the row, so that a re-uploaded
//! annotation re-scores its case and nothing else.

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

    /// The recorded digests; `None` before the case is ingested.
    pub fn read(store: &dyn ObjectStore, case: &str) -> Result<Option<Self>, StageError> {
        let key = Self::marker(case)?;
        match store.get(&key)? {
            None => Ok(None),
            Some(body) => serde_json::from_slice(&body)
                .map(Some)
                .map_err(StageError::json(&key)),
        }
    }

    /// The marker's bytes (deterministic).
    pub fn encode(&self, case: &str) -> Result<Vec<u8>, StageError> {
        let mut out =
            serde_json::to_vec_pretty(self).map_err(StageError::json(Self::marker(case)?))?;
        out.push(b'\n');
        Ok(out)
    }
}

/// What a metric row was scored against.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RowInputs {
    /// [`CaseDigests::annotations`] of the annotations the row was scored against.
    pub annotations: String,
}

impl RowInputs {
    pub fn key(case: &str, name: &str) -> Result<Key, StageError> {
        Ok(Key::new(format!("metrics/inputs/{case}/{name}.json"))?)
    }

    pub fn write(&self, store: &dyn ObjectStore, case: &str, name: &str) -> Result<(), StageError> {
        let key = Self::key(case, name)?;
        let mut out = serde_json::to_vec_pretty(self).map_err(StageError::json(&key))?;
        out.push(b'\n');
        store.put(&key, &out)?;
        Ok(())
    }

    /// Whether the row of `name` exists and was scored against the case's current annotations.
    pub fn current(store: &dyn ObjectStore, case: &str, name: &str) -> Result<bool, StageError> {
        let key = Self::key(case, name)?;
        let Some(body) = store.get(&key)? else {
            return Ok(false);
        };
        let row: RowInputs = serde_json::from_slice(&body).map_err(StageError::json(&key))?;
        let Some(case_digests) = CaseDigests::read(store, case)? else {
            return Ok(false);
        };
        let csv = Key::new(format!("metrics/rows/{case}/{name}.csv"))?;
        Ok(row.annotations == case_digests.annotations && store.exists(&csv)?)
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
