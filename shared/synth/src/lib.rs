//! Synthetic CURVAS-like abdominal CT phantoms.
//!
//! Each case is an abdominal CT (air, fat, muscle, bowel, spine, aorta, spleen, stomach, liver, two
//! kidneys, pancreas) at realistic Hounsfield units with noise, and the label maps of three
//! annotators (0 background, 1 pancreas, 2 kidney, 3 liver). Annotator 1 over-segments slightly,
//! annotator 2 under-segments the pancreas, annotator 3 draws smooth outlines, and all three
//! disagree randomly along boundaries, most on the thin pancreas. Everything is a pure function
//! of `(seed, case index, size)`.
//!
//! The anatomy fills the grid whatever its size: a `small` case is the same abdomen in fewer
//! voxels. The header spacing is drawn from clinical CT ranges (z 1.5-5 mm, in-plane 0.6-0.9 mm),
//! so physical sizes in mm scale with the matrix; the voxel grid, which networks and metrics see,
//! is what is realistic.

pub mod anatomy;
pub mod noise;
mod render;
mod stats;

pub use stats::{CaseStats, OrganStats, dice};

use ndarray::Array3;
use serde::Serialize;
use statapp_volume::{Geometry, Volume, VolumeError, write_nifti};
use std::path::{Path, PathBuf};

/// Label values and names, as in CURVAS.
pub const LABELS: [(u8, &str); 4] = [
    (0, "background"),
    (1, "pancreas"),
    (2, "kidney"),
    (3, "liver"),
];

/// Phantom grid sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// 64 x 96 x 96: tests and demos.
    Small,
    /// 128 x 256 x 256.
    Medium,
    /// 300 x 512 x 512: a full-resolution CT, for benchmarks.
    Large,
    /// 950 x 512 x 512 at 1 mm slices: a full-size CURVAS CT (about 956 x 512 x 512), for the
    /// memory and fan-out benchmarks.
    XLarge,
}

impl Size {
    /// Grid shape `[z, y, x]`.
    pub fn shape_zyx(self) -> [usize; 3] {
        match self {
            Size::Small => [64, 96, 96],
            Size::Medium => [128, 256, 256],
            Size::Large => [300, 512, 512],
            Size::XLarge => [950, 512, 512],
        }
    }
}

impl std::str::FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "small" => Ok(Size::Small),
            "medium" => Ok(Size::Medium),
            "large" => Ok(Size::Large),
            "xlarge" => Ok(Size::XLarge),
            other => Err(format!(
                "unknown size {other:?} (small, medium, large or xlarge)"
            )),
        }
    }
}

/// Errors while writing phantoms.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error(transparent)]
    Volume(#[from] VolumeError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One generated case.
#[derive(Debug, Clone)]
pub struct Phantom {
    pub case_id: String,
    /// CT in Hounsfield units.
    pub ct: Volume<i16>,
    /// Annotators 1, 2, 3.
    pub annotations: [Volume<u8>; 3],
}

/// The case id of index `i`: `case_000`, `case_001`, ...
pub fn case_id(index: usize) -> String {
    format!("case_{index:03}")
}

/// Generates case `index` of the dataset drawn from `seed`.
pub fn generate(seed: u64, index: usize, size: Size) -> Phantom {
    let case_seed = noise::hash(seed, &[index as i64, 0x5EED]);
    let anatomy = anatomy::Anatomy::sample(case_seed);
    let mut rng = noise::Rng::new(case_seed ^ 0xA11CE);
    let drawn_sz = rng.pick(&[1.5f32, 2.0, 2.5, 3.0, 5.0]);
    // CURVAS CTs have 1 mm slices (a few 0.6 mm); the draw is kept so other sizes are unchanged
    let sz = if size == Size::XLarge { 1.0 } else { drawn_sz };
    let s_xy = (rng.uniform(0.6, 0.9) * 1024.0).round() as f32 / 1024.0;
    let noise_hu = rng.uniform(8.0, 16.0) as f32;
    let shape = size.shape_zyx();
    let geometry = scanner_geometry(shape, [sz, s_xy, s_xy], rng.uniform(-600.0, -300.0) as f32);
    let out = render::render(&anatomy, shape, rng.next_u64(), noise_hu);
    let dims = (shape[0], shape[1], shape[2]);
    let volume = |data: Vec<u8>| {
        Volume::new(
            Array3::from_shape_vec(dims, data).unwrap_or_default(),
            geometry.clone(),
        )
    };
    let ct = Array3::from_shape_vec(dims, out.ct).unwrap_or_default();
    let [a, b, c] = out.labels;
    // The shapes agree by construction, so these cannot fail; fall back to empty if they did.
    let fallback = || Volume::new(Array3::zeros(dims), geometry.clone());
    let annotations = [volume(a), volume(b), volume(c)].map(|v| v.or_else(|_| fallback()));
    match (Volume::new(ct, geometry.clone()), annotations) {
        (Ok(ct), [Ok(a), Ok(b), Ok(c)]) => Phantom {
            case_id: case_id(index),
            ct,
            annotations: [a, b, c],
        },
        _ => unreachable!("rendered arrays always match the grid"),
    }
}

/// A CT-like header: patient left along +i and posterior along +j (the DICOM LPS layout stored
/// as NIfTI RAS, i.e. a 180 degree rotation about z), superior along +k, centred in-plane.
fn scanner_geometry(shape: [usize; 3], spacing_zyx: [f32; 3], table_z: f32) -> Geometry {
    let [nz, ny, nx] = shape.map(|v| v as f32);
    let [sz, sy, sx] = spacing_zyx;
    let origin = [
        (nx - 1.0) / 2.0 * sx,
        (ny - 1.0) / 2.0 * sy,
        table_z - (nz - 1.0) / 2.0 * sz,
    ];
    let mut g = Geometry::axis_aligned(shape, spacing_zyx, origin);
    g.quatern_bcd = [0.0, 0.0, 1.0];
    g.srow[0][0] = -sx;
    g.srow[1][1] = -sy;
    g
}

/// On-disk layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `incoming/<case>/{image, annotation_1, annotation_2, annotation_3}.nii.gz`
    Bucket,
    /// nnU-Net raw: `Dataset475_CURVAS_ANNO<k>/{dataset.json, imagesTr, labelsTr}`
    NnUnet { annotator: usize },
}

/// Writes one case in the bucket layout under `root`; returns the case directory.
pub fn write_bucket_case(root: &Path, phantom: &Phantom) -> Result<PathBuf, SynthError> {
    let dir = root.join("incoming").join(&phantom.case_id);
    create_dir(&dir)?;
    write_nifti(dir.join("image.nii.gz"), &phantom.ct)?;
    for (k, a) in phantom.annotations.iter().enumerate() {
        write_nifti(dir.join(format!("annotation_{}.nii.gz", k + 1)), a)?;
    }
    Ok(dir)
}

/// nnU-Net dataset folder name for an annotator (the original's dataset id 475).
pub fn nnunet_dataset_name(annotator: usize) -> String {
    format!("Dataset475_CURVAS_ANNO{annotator}")
}

/// Writes one case in nnU-Net's raw layout (image `_0000` and the chosen annotator's labels).
pub fn write_nnunet_case(
    root: &Path,
    phantom: &Phantom,
    annotator: usize,
) -> Result<PathBuf, SynthError> {
    let ds = root.join(nnunet_dataset_name(annotator));
    create_dir(&ds.join("imagesTr"))?;
    create_dir(&ds.join("labelsTr"))?;
    let id = &phantom.case_id;
    write_nifti(
        ds.join("imagesTr").join(format!("{id}_0000.nii.gz")),
        &phantom.ct,
    )?;
    let labels = &phantom.annotations[annotator.clamp(1, 3) - 1];
    write_nifti(ds.join("labelsTr").join(format!("{id}.nii.gz")), labels)?;
    Ok(ds)
}

#[derive(Serialize)]
struct DatasetJson {
    channel_names: std::collections::BTreeMap<String, String>,
    labels: serde_json::Map<String, serde_json::Value>,
    #[serde(rename = "numTraining")]
    num_training: usize,
    file_ending: String,
    name: String,
    description: String,
}

/// Writes nnU-Net v2's `dataset.json` for `num_training` cases.
pub fn write_nnunet_dataset_json(
    root: &Path,
    annotator: usize,
    num_training: usize,
) -> Result<PathBuf, SynthError> {
    let ds = root.join(nnunet_dataset_name(annotator));
    create_dir(&ds)?;
    let mut labels = serde_json::Map::new();
    for (v, name) in LABELS {
        labels.insert(name.to_string(), v.into());
    }
    let json = DatasetJson {
        channel_names: [("0".to_string(), "CT".to_string())].into_iter().collect(),
        labels,
        num_training,
        file_ending: ".nii.gz".into(),
        name: nnunet_dataset_name(annotator),
        description: format!("statapp synthetic CURVAS phantoms, labels of annotator {annotator}"),
    };
    let path = ds.join("dataset.json");
    let text = serde_json::to_string_pretty(&json).unwrap_or_default();
    std::fs::write(&path, text + "\n").map_err(|source| SynthError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

fn create_dir(dir: &Path) -> Result<(), SynthError> {
    std::fs::create_dir_all(dir).map_err(|source| SynthError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_varies_per_case() {
        let a = generate(7, 0, Size::Small);
        let b = generate(7, 0, Size::Small);
        let c = generate(7, 1, Size::Small);
        assert_eq!(a.ct, b.ct);
        assert_eq!(a.annotations, b.annotations);
        assert_ne!(a.annotations[0], c.annotations[0]);
        assert_eq!(a.ct.shape_zyx(), [64, 96, 96]);
        let s = a.ct.geometry().spacing_zyx();
        assert!((1.5..=5.0).contains(&s[0]) && (0.6..=0.9).contains(&s[1]) && s[1] == s[2]);
    }

    #[test]
    fn geometry_is_lps_like() {
        let g = scanner_geometry([10, 20, 30], [2.0, 0.75, 0.75], -400.0);
        let (q, s) = (g.qform_affine(), g.sform_affine());
        for r in 0..3 {
            for c in 0..4 {
                assert!((q[r][c] - s[r][c]).abs() < 1e-4, "{q:?} {s:?}");
            }
        }
        assert!(s[0][0] < 0.0 && s[1][1] < 0.0 && s[2][2] > 0.0);
    }
}
