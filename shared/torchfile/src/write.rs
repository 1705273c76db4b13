//! Writing checkpoints in `torch.save`'s zip format: `archive/data.pkl`, one stored (not
//! deflated), 64-byte aligned record per storage under `archive/data/`, `byteorder`, `version`.

use crate::{StateTensor, TorchFileError, pickle};
use std::io::Write;
use std::path::Path;
use zip::write::SimpleFileOptions;

/// A value of the checkpoint's pickle.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    Dict(Vec<(String, Value)>),
    OrderedDict(Vec<(String, Value)>),
    /// A float32 tensor over storage number `storage` of [`CheckpointOut::storages`].
    Tensor {
        storage: usize,
        shape: Vec<usize>,
    },
}

/// A checkpoint to write: the pickled root and the storages its tensors point into.
#[derive(Debug, Clone, Default)]
pub struct CheckpointOut {
    pub root: Vec<(String, Value)>,
    pub storages: Vec<Vec<f32>>,
}

impl CheckpointOut {
    /// Adds a storage for `t` and returns the tensor value over it; aliases of one tensor
    /// reuse the returned value, so they share one storage as in `torch.save`.
    pub fn tensor(&mut self, t: &StateTensor) -> Value {
        self.storages.push(t.values.clone());
        Value::Tensor {
            storage: self.storages.len() - 1,
            shape: t.shape.clone(),
        }
    }
}

/// Writes `ckpt` to `path` through a temporary name in the same directory.
pub fn write_checkpoint(path: &Path, ckpt: &CheckpointOut) -> Result<(), TorchFileError> {
    let io = |p: &Path, source| TorchFileError::Io {
        path: p.to_path_buf(),
        source,
    };
    let zip_err = |source| TorchFileError::Zip {
        path: path.to_path_buf(),
        source,
    };
    let name = path.file_name().map_or_else(
        || "checkpoint".to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let tmp = path.with_file_name(format!(".partial-{name}"));
    let file = std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let opts = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .with_alignment(64)
        .large_file(true);
    let record = |zip: &mut zip::ZipWriter<_>, name: &str, bytes: &[u8]| {
        zip.start_file(format!("archive/{name}"), opts)
            .map_err(zip_err)?;
        zip.write_all(bytes).map_err(|e| io(&tmp, e))
    };
    record(
        &mut zip,
        "data.pkl",
        &pickle::encode(&Value::Dict(ckpt.root.clone())),
    )?;
    record(&mut zip, "byteorder", b"little")?;
    for (i, s) in ckpt.storages.iter().enumerate() {
        let bytes: Vec<u8> = s.iter().flat_map(|v| v.to_le_bytes()).collect();
        record(&mut zip, &format!("data/{i}"), &bytes)?;
    }
    record(&mut zip, "version", b"3\n")?;
    let mut inner = zip.finish().map_err(zip_err)?;
    inner.flush().map_err(|e| io(&tmp, e))?;
    drop(inner);
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))
}
