use std::path::{Path, PathBuf};

/// Everything that can go wrong with a volume. Every variant names the file involved so that a
/// user (or an `errors/<case>.json` report) can say exactly which upload is bad.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("{path}: I/O error: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a NIfTI-1 file ({reason})")]
    NotNifti { path: PathBuf, reason: String },
    #[error("{path}: truncated or corrupt data ({detail})")]
    Truncated { path: PathBuf, detail: String },
    #[error("{path}: unsupported NIfTI datatype code {code}")]
    UnsupportedDatatype { path: PathBuf, code: i16 },
    #[error("{path}: expected a 3-D volume, found dimensions {dims:?}")]
    NotThreeDimensional { path: PathBuf, dims: Vec<usize> },
    #[error("{path}: {count} voxels are NaN or infinite")]
    NonFinite { path: PathBuf, count: usize },
    #[error("{path}: {voxels} voxels exceed the limit of {limit}")]
    TooLarge {
        path: PathBuf,
        voxels: u64,
        limit: u64,
    },
    #[error(
        "{path}: the voxels would take {bytes} bytes decoded, over this reader's budget of {budget} bytes"
    )]
    OverBudget {
        path: PathBuf,
        bytes: u64,
        budget: u64,
    },
    #[error(
        "{path}: more than {limit} bytes follow the voxels the header describes (another file's data, or a decompression bomb)"
    )]
    TrailingData { path: PathBuf, limit: u64 },
    #[error("{path}: invalid header field {field}: {detail}")]
    InvalidHeader {
        path: PathBuf,
        field: &'static str,
        detail: String,
    },
    #[error("{path}: value {value} is not a valid label (expected an integer in {min}..={max})")]
    InvalidLabel {
        path: PathBuf,
        value: f64,
        min: u8,
        max: u8,
    },
    #[error("geometry of {b} does not match {a}: {detail}")]
    GeometryMismatch {
        a: PathBuf,
        b: PathBuf,
        detail: String,
    },
    #[error("data shape {data:?} does not match geometry shape {geometry:?}")]
    ShapeMismatch {
        data: [usize; 3],
        geometry: [usize; 3],
    },
    #[error("region {start:?}..{end:?} does not fit in a volume of shape {shape:?}")]
    InvalidRegion {
        start: [usize; 3],
        end: [usize; 3],
        shape: [usize; 3],
    },
}

impl VolumeError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// The variant's name, a stable machine-readable kind for error reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Io { .. } => "Io",
            Self::NotNifti { .. } => "NotNifti",
            Self::Truncated { .. } => "Truncated",
            Self::UnsupportedDatatype { .. } => "UnsupportedDatatype",
            Self::NotThreeDimensional { .. } => "NotThreeDimensional",
            Self::NonFinite { .. } => "NonFinite",
            Self::TooLarge { .. } => "TooLarge",
            Self::OverBudget { .. } => "OverBudget",
            Self::TrailingData { .. } => "TrailingData",
            Self::InvalidHeader { .. } => "InvalidHeader",
            Self::InvalidLabel { .. } => "InvalidLabel",
            Self::GeometryMismatch { .. } => "GeometryMismatch",
            Self::ShapeMismatch { .. } => "ShapeMismatch",
            Self::InvalidRegion { .. } => "InvalidRegion",
        }
    }

    /// The file at fault, where the error names one (the second file of a grid mismatch).
    pub fn file(&self) -> Option<&Path> {
        match self {
            Self::Io { path, .. }
            | Self::NotNifti { path, .. }
            | Self::Truncated { path, .. }
            | Self::UnsupportedDatatype { path, .. }
            | Self::NotThreeDimensional { path, .. }
            | Self::NonFinite { path, .. }
            | Self::TooLarge { path, .. }
            | Self::OverBudget { path, .. }
            | Self::TrailingData { path, .. }
            | Self::InvalidHeader { path, .. }
            | Self::InvalidLabel { path, .. } => Some(path),
            Self::GeometryMismatch { b, .. } => Some(b),
            Self::ShapeMismatch { .. } | Self::InvalidRegion { .. } => None,
        }
    }

    /// The header field at fault, where there is one.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::InvalidHeader { field, .. } => Some(field),
            Self::UnsupportedDatatype { .. } => Some("datatype"),
            Self::NotThreeDimensional { .. } | Self::TooLarge { .. } | Self::OverBudget { .. } => {
                Some("dim")
            }
            _ => None,
        }
    }
}

pub type Result<T, E = VolumeError> = std::result::Result<T, E>;
