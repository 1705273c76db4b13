//! Loading a case from NIfTI files: validation, ROI cropping as early as possible (so a large
//! case holds at most one full-size probability map at a time), then scoring.

use crate::compute::{CaseArrays, CaseMeta, compute};
use crate::report::CaseMetrics;
use crate::roi::{Roi, RoiMode};
use statapp_volume::{Geometry, ReadOptions, Volume, VolumeError, read_nifti};
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

/// Reads, validates and crops a case to its ROI.
pub fn load_case(
    paths: &CasePaths,
    roi_mode: RoiMode,
) -> Result<(CaseArrays, CaseMeta), MetricsError> {
    let opts = ReadOptions::default();
    let read_labels =
        |p: &Path| -> Result<Volume<u8>, MetricsError> { Ok(read_nifti(p, &opts)?.to_labels(3)?) };
    let a1 = read_labels(&paths.annotations[0])?;
    let shape = a1.shape_zyx();
    let geometry = a1.geometry().clone();
    let a2 = read_labels(&paths.annotations[1])?;
    check_shape(&paths.annotations[1], a2.geometry(), shape)?;
    let a3 = read_labels(&paths.annotations[2])?;
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
        // an unused CT is still validated, so a bad upload is reported
        if let Some(path) = &paths.ct {
            let ct = read_nifti(path, &opts)?;
            check_shape(path, &ct.geometry, shape)?;
        }
    }
    let annotations = [&a1, &a2, &a3].map(|a| roi.crop(a.data()));
    drop((a1, a2, a3));
    // decompression dominates loading: read the three maps in parallel
    let read_prob = |path: &PathBuf| -> Result<Vec<f32>, MetricsError> {
        let img = read_nifti(path, &opts)?;
        check_shape(path, &img.geometry, shape)?;
        Ok(roi.crop(img.into_f32().data()))
    };
    let [p1, p2, p3] = &paths.probabilities;
    let (r1, (r2, r3)) = rayon::join(
        || read_prob(p1),
        || rayon::join(|| read_prob(p2), || read_prob(p3)),
    );
    let probabilities = [r1?, r2?, r3?];
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
    Ok(crate::compute::timed("compute", || compute(&arrays, meta)))
}
