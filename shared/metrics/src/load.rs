//! Loading a case from NIfTI files: the six volumes decoded in parallel, validation, cropping to
//! the ROI, then scoring. A large case briefly holds its three full-size probability maps.

use crate::compute::{CaseArrays, CaseMeta, compute};
use crate::report::CaseMetrics;
use crate::roi::{Roi, RoiMode};
use statapp_volume::{
    Geometry, NiftiRowReader, ReadOptions, Volume, VolumeError, read_nifti, read_nifti_geometry,
};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(transparent)]
    Volume(#[from] VolumeError),
    #[error("{path}: shape (z, y, x) {found:?} differs from the first annotation's {expected:?}")]
    ShapeMismatch {
        path: PathBuf,
        expected: [usize; 3],
        found: [usize; 3],
    },
    #[error("--roi ct needs a CT image (--ct)")]
    MissingCt,
}

/// The files of one scoring job.
#[derive(Debug, Clone)]
pub struct CasePaths {
    pub annotations: [PathBuf; 3],
    /// Pancreas, kidney, liver probability maps.
    pub probabilities: [PathBuf; 3],
    pub prediction: Option<PathBuf>,
    pub ct: Option<PathBuf>,
}

fn check_shape(path: &Path, g: &Geometry, expected: [usize; 3]) -> Result<(), MetricsError> {
    if g.shape_zyx() != expected {
        return Err(MetricsError::ShapeMismatch {
            path: path.to_path_buf(),
            expected,
            found: g.shape_zyx(),
        });
    }
    Ok(())
}

/// `[f(0), f(1), f(2)]`, run in parallel.
fn par3<T: Send>(f: impl Fn(usize) -> T + Sync) -> [T; 3] {
    let (a, (b, c)) = rayon::join(|| f(0), || rayon::join(|| f(1), || f(2)));
    [a, b, c]
}

/// Reads, validates and crops a case to its ROI.
/// Rows decoded at a time when a probability map streams.
const ROWS: usize = 16;

/// A probability map cropped to the ROI; unscaled float32 maps (statapp's) are read a block of
/// rows at a time, other types whole.
fn read_prob_roi(path: &Path, shape: [usize; 3], roi: &Roi) -> Result<Vec<f32>, MetricsError> {
    let opts = ReadOptions::default();
    let Some(mut rows) = NiftiRowReader::open(path, &opts)? else {
        let prob = read_nifti(path, &opts)?.into_f32();
        check_shape(path, prob.geometry(), shape)?;
        return Ok(roi.crop(prob.data()));
    };
    check_shape(path, &rows.geometry, shape)?;
    let mut out = Vec::with_capacity(shape[0] * (roi.y[1] - roi.y[0]) * (roi.x[1] - roi.x[0]));
    for _ in (0..shape[0]).step_by(ROWS) {
        out.extend(roi.crop(&rows.read_rows(ROWS)?));
    }
    Ok(out)
}

pub fn load_case(
    paths: &CasePaths,
    roi_mode: RoiMode,
) -> Result<(CaseArrays, CaseMeta), MetricsError> {
    let opts = ReadOptions::default();
    let read_labels =
        |p: &Path| -> Result<Volume<u8>, MetricsError> { Ok(read_nifti(p, &opts)?.to_labels(3)?) };
    // decompression dominates loading: three files at once keeps both cores busy; errors are
    // still reported in argument order
    let [a1, a2, a3] = par3(|i| read_labels(&paths.annotations[i]));
    let (a1, a2, a3) = (a1?, a2?, a3?);
    let shape = a1.shape_zyx();
    let geometry = a1.geometry().clone();
    check_shape(&paths.annotations[1], a2.geometry(), shape)?;
    check_shape(&paths.annotations[2], a3.geometry(), shape)?;

    let roi = match roi_mode {
        RoiMode::Annotations => Roi::from_annotations([a1.data(), a2.data(), a3.data()]),
        RoiMode::None => Roi::whole("none", shape),
        RoiMode::Ct => {
            let path = paths.ct.as_ref().ok_or(MetricsError::MissingCt)?;
            let ct = read_nifti(path, &opts)?.to_f32();
            check_shape(path, ct.geometry(), shape)?;
            Roi::from_mask(RoiMode::Ct, ct.data(), |v| *v > 0.0)
        }
    };
    if roi_mode != RoiMode::Ct {
        // an unused CT's grid is still checked (its header: the voxels would be a gigabyte)
        if let Some(path) = &paths.ct {
            check_shape(path, &read_nifti_geometry(path)?, shape)?;
        }
    }
    let annotations = [&a1, &a2, &a3].map(|a| roi.crop(a.data()));
    drop((a1, a2, a3));
    // probabilities (a full-size CT's are 1 GB each) are cropped as they stream in
    let [p1, p2, p3] = par3(|i| read_prob_roi(&paths.probabilities[i], shape, &roi));
    let probabilities = [p1?, p2?, p3?];
    let prediction = match &paths.prediction {
        Some(path) => {
            let l = read_labels(path)?;
            check_shape(path, l.geometry(), shape)?;
            Some(roi.crop(l.data()))
        }
        None => None,
    };
    let case = paths.annotations[0]
        .parent()
        .and_then(|d| d.file_name())
        .map(|n| n.to_string_lossy().into_owned());
    let meta = CaseMeta {
        case,
        shape_zyx: shape,
        spacing_zyx_mm: geometry.spacing_zyx(),
        prediction_name: paths
            .prediction
            .as_ref()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned()),
        roi: roi.clone(),
    };
    Ok((
        CaseArrays {
            dims: roi.shape_zyx,
            annotations,
            probabilities,
            prediction,
        },
        meta,
    ))
}

/// Loads and scores a case.
pub fn score_files(paths: &CasePaths, roi_mode: RoiMode) -> Result<CaseMetrics, MetricsError> {
    let (arrays, meta) = crate::compute::timed("load", || load_case(paths, roi_mode))?;
    Ok(crate::compute::timed("compute", || compute(arrays, meta)))
}
