//! Preprocessed training cases (`statapp prepare` / nnU-Net's `nnUNetPlans_<configuration>`), held
//! in memory with a sample of each class's voxel positions for foreground oversampling.

use ndarray::Array3;
use statapp_volume::{ReadOptions, read_nifti};
use std::path::{Path, PathBuf};

/// At most this many positions are kept per class (nnU-Net keeps 10,000).
const MAX_LOCATIONS: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {detail}")]
    Read { path: PathBuf, detail: String },
    #[error("{path}: image {image:?} and labels {labels:?} differ in shape")]
    Shape {
        path: PathBuf,
        image: [usize; 3],
        labels: [usize; 3],
    },
    #[error("{dir}: no preprocessed cases (*_data.nii.gz): run `statapp prepare` first")]
    Empty { dir: PathBuf },
}

/// One case: normalised image, labels (nnU-Net's -1 outside the crop mask becomes background, as
/// its `RemoveLabelTransform`), and voxel positions per foreground class.
#[derive(Debug, Clone)]
pub struct TrainCase {
    pub id: String,
    pub image: Array3<f32>,
    pub labels: Array3<u8>,
    /// `locations[c - 1]`: positions of class `c`, evenly thinned to at most 10,000.
    pub locations: Vec<Vec<[usize; 3]>>,
}

impl TrainCase {
    pub fn new(id: String, image: Array3<f32>, labels: Array3<u8>, classes: usize) -> Self {
        let mut all: Vec<Vec<[usize; 3]>> = vec![Vec::new(); classes];
        for ((z, y, x), &l) in labels.indexed_iter() {
            if l > 0 && usize::from(l) <= classes {
                all[usize::from(l) - 1].push([z, y, x]);
            }
        }
        let locations = all
            .into_iter()
            .map(|v| {
                let step = v.len().div_ceil(MAX_LOCATIONS).max(1);
                v.into_iter().step_by(step).collect()
            })
            .collect();
        Self {
            id,
            image,
            labels,
            locations,
        }
    }

    pub fn shape(&self) -> [usize; 3] {
        let (z, y, x) = self.image.dim();
        [z, y, x]
    }
}

/// Ids of the preprocessed cases in `dir/<data_identifier>`, sorted.
pub fn list_ids(dir: &Path, data_identifier: &str) -> Result<Vec<String>, DataError> {
    let folder = dir.join(data_identifier);
    let entries = std::fs::read_dir(&folder).map_err(|e| DataError::Read {
        path: folder.clone(),
        detail: e.to_string(),
    })?;
    let mut ids: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix("_data.nii.gz"))
                .map(str::to_string)
        })
        .collect();
    ids.sort();
    if ids.is_empty() {
        return Err(DataError::Empty { dir: folder });
    }
    Ok(ids)
}

/// Loads one preprocessed case with its segmentation.
pub fn load_case(
    dir: &Path,
    data_identifier: &str,
    id: &str,
    classes: usize,
) -> Result<TrainCase, DataError> {
    let folder = dir.join(data_identifier);
    let read = |file: String| {
        let path = folder.join(file);
        read_nifti(&path, &ReadOptions::default())
            .map(|img| img.into_f32().data().clone())
            .map_err(|e| DataError::Read {
                path: path.clone(),
                detail: e.to_string(),
            })
    };
    let image = read(format!("{id}_data.nii.gz"))?;
    let seg = read(format!("{id}_seg.nii.gz"))?;
    if image.dim() != seg.dim() {
        let d = |a: &Array3<f32>| {
            let (z, y, x) = a.dim();
            [z, y, x]
        };
        return Err(DataError::Shape {
            path: folder.join(format!("{id}_seg.nii.gz")),
            image: d(&image),
            labels: d(&seg),
        });
    }
    let labels = seg.mapv(|v| {
        if v > 0.0 {
            v.round().min(255.0) as u8
        } else {
            0
        }
    });
    Ok(TrainCase::new(id.to_string(), image, labels, classes))
}
