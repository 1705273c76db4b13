//! Checks of a NIfTI-1 header made before anything is sized, scaled or placed by it: every field
//! that decides how much is allocated (dimensions, datatype), how values are scaled
//! (`scl_slope`/`scl_inter`) or where voxels lie (pixdim, units, qform/sform). The rules follow
//! the NIfTI-1 standard (nifti1.h) and what nibabel accepts; what nibabel would read but would size
//! or place work absurdly (a voxel of 0 or 1e6 mm, metres read as mm) is rejected with the field.

use crate::error::{Result, VolumeError};
use std::path::Path;

/// The longest axis accepted: a CT has at most a few thousand slices of at most 1024 x 1024.
pub(crate) const MAX_AXIS: usize = 8192;

const DIM_FIELDS: [&str; 8] = [
    "dim[0]", "dim[1]", "dim[2]", "dim[3]", "dim[4]", "dim[5]", "dim[6]", "dim[7]",
];
const PIXDIM_FIELDS: [&str; 3] = ["pixdim[1]", "pixdim[2]", "pixdim[3]"];

/// Voxel sizes statapp accepts, in mm: from micro-CT-like 0.01 mm to 100 mm slabs. Anything
/// outside is a unit or export error that would size resampling absurdly.
const PLAUSIBLE_MM: std::ops::RangeInclusive<f32> = 0.01..=100.0;

fn invalid(path: &Path, field: &'static str, detail: String) -> VolumeError {
    VolumeError::InvalidHeader {
        path: path.to_path_buf(),
        field,
        detail,
    }
}

/// Bytes per stored voxel of a supported datatype code.
pub(crate) fn bytes_per_voxel(path: &Path, code: i16) -> Result<u64> {
    match code {
        2 | 256 => Ok(1),
        4 | 512 => Ok(2),
        8 | 16 | 768 => Ok(4),
        64 => Ok(8),
        code => Err(VolumeError::UnsupportedDatatype {
            path: path.to_path_buf(),
            code,
        }),
    }
}

/// The three spatial dimensions; more dimensions are accepted only when they are all 1 (as
/// nibabel's squeeze of a trailing singleton axis).
pub(crate) fn validate_dims(path: &Path, h: &nifti::NiftiHeader) -> Result<[usize; 3]> {
    let ndim = usize::from(h.dim[0]);
    if !(1..=7).contains(&ndim) {
        return Err(invalid(path, "dim[0]", format!("{ndim} dimensions")));
    }
    // dim is a signed short on disk: values past i16::MAX are negative lengths
    if let Some(k) = (1..=ndim).find(|k| h.dim[*k] > i16::MAX as u16) {
        let detail = format!("negative length {}", h.dim[k] as i16);
        return Err(invalid(path, DIM_FIELDS[k], detail));
    }
    let dims: Vec<usize> = h.dim[1..=ndim].iter().map(|d| usize::from(*d)).collect();
    if dims.contains(&0) {
        let detail = format!("zero-length dimension in {dims:?}");
        return Err(invalid(path, "dim", detail));
    }
    if dims.iter().skip(3).any(|d| *d > 1) {
        return Err(VolumeError::NotThreeDimensional {
            path: path.to_path_buf(),
            dims,
        });
    }
    if let Some(k) = (0..dims.len().min(3)).find(|k| dims[*k] > MAX_AXIS) {
        let detail = format!("{} voxels along one axis (at most {MAX_AXIS})", dims[k]);
        return Err(invalid(path, DIM_FIELDS[k + 1], detail));
    }
    let get = |i: usize| dims.get(i).copied().unwrap_or(1);
    Ok([get(0), get(1), get(2)])
}

/// The voxel size must be finite, positive and plausible in millimetres before anything is
/// resampled with it; spatial units other than mm (or unknown, which readers take as mm) are
/// rejected rather than silently read as mm; scale factors must not be infinite.
pub(crate) fn validate_spacing(path: &Path, h: &nifti::NiftiHeader) -> Result<()> {
    validate_units(path, h.xyzt_units)?;
    // NaN is how nibabel writes "no scaling"; an infinite factor is a broken export
    for (field, v) in [("scl_slope", h.scl_slope), ("scl_inter", h.scl_inter)] {
        if v.is_infinite() {
            return Err(invalid(
                path,
                field,
                format!("{v} is not a finite scale factor"),
            ));
        }
    }
    for (k, field) in PIXDIM_FIELDS.iter().enumerate() {
        let v = h.pixdim[k + 1];
        if !v.is_finite() || v <= 0.0 {
            let detail = format!("voxel size {v} is not a positive number");
            return Err(invalid(path, field, detail));
        }
        if !PLAUSIBLE_MM.contains(&v) {
            let (lo, hi) = (PLAUSIBLE_MM.start(), PLAUSIBLE_MM.end());
            let detail = format!("voxel size {v} mm is outside {lo}..={hi} mm");
            return Err(invalid(path, field, detail));
        }
    }
    Ok(())
}

fn validate_units(path: &Path, xyzt_units: u8) -> Result<()> {
    let reason = match xyzt_units & 0x07 {
        0 | 2 => return Ok(()),
        1 => "spatial units are metres; statapp reads millimetres: convert the file (pixdim and affine x 1000)".to_string(),
        3 => "spatial units are micrometres; statapp reads millimetres: convert the file (pixdim and affine / 1000)".to_string(),
        code => format!("unknown spatial unit code {code}"),
    };
    Err(invalid(path, "xyzt_units", reason))
}

/// The affine that places the voxels must exist: a set sform needs finite, non-degenerate rows;
/// a qform in use a finite unit-or-less quaternion and offset. Without either, pixdim alone is
/// used.
pub(crate) fn validate_affine(path: &Path, h: &nifti::NiftiHeader) -> Result<()> {
    if h.sform_code > 0 {
        let rows = [h.srow_x, h.srow_y, h.srow_z];
        if let Some(r) = (0..3).find(|r| rows[*r].iter().any(|v| !v.is_finite())) {
            let field = ["srow_x", "srow_y", "srow_z"][r];
            return Err(invalid(path, field, "not finite".into()));
        }
        let m = rows.map(|row| [row[0], row[1], row[2]].map(f64::from));
        let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
        // volume of a voxel in mm^3: below (0.001 mm)^3 the rows are degenerate
        if det.abs() < 1e-9 {
            let detail = format!("the sform matrix is singular (determinant {det:e})");
            return Err(invalid(path, "srow_x", detail));
        }
    }
    // nibabel places the voxels by the sform when it is set: the qform is then unused
    if h.qform_code > 0 && h.sform_code <= 0 {
        let q = [h.quatern_b, h.quatern_c, h.quatern_d].map(f64::from);
        let off = [h.quatern_x, h.quatern_y, h.quatern_z];
        if q.iter().any(|v| !v.is_finite()) || q.iter().map(|v| v * v).sum::<f64>() > 1.0 + 1e-4 {
            let detail = format!("quaternion {q:?} is not a rotation");
            return Err(invalid(path, "quatern_b", detail));
        }
        if off.iter().any(|v| !v.is_finite()) {
            return Err(invalid(
                path,
                "qoffset_x",
                format!("offset {off:?} is not finite"),
            ));
        }
    }
    Ok(())
}
