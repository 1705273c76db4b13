//! PyTorch checkpoint files without PyTorch, for nnU-Net v2 models: `read` opens a
//! `checkpoint_*.pth` as nnU-Net's trainer saves it (zip + pickle, read by `pytorch-reader`,
//! which tolerates the numpy scalars, dtypes and `torch.device`s elsewhere in the pickle), and
//! `write` produces a file `torch.load` reads, so models trained here serve in nnU-Net's tools.

mod pickle;
mod read;
mod write;

pub use read::{NnunetCheckpoint, canonical_key, read_checkpoint, read_metadata};
pub use write::{CheckpointOut, Value, write_checkpoint};

use std::path::PathBuf;

/// One tensor of a state dict, as float32 in C order.
#[derive(Debug, Clone, PartialEq)]
pub struct StateTensor {
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

#[derive(Debug, thiserror::Error)]
pub enum TorchFileError {
    #[error("{path}: not a readable PyTorch checkpoint: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: pytorch_reader::PytorchError,
    },
    #[error("{path}: tensor {name}: {detail}")]
    Tensor {
        path: PathBuf,
        name: String,
        detail: String,
    },
    #[error("{path}: {detail}")]
    Content { path: PathBuf, detail: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Zip {
        path: PathBuf,
        #[source]
        source: zip::result::ZipError,
    },
}
