//! nnU-Net's dataset fingerprint and DefaultPreprocessor for CT: crop to the non-zero region,
//! CT normalisation (clip to the foreground 0.5/99.5 percentiles, z-score with the foreground
//! mean and std), resampling to the plan's spacing.

use crate::plans::{compute_new_shape, percentile};
use crate::resample::{resample_image, resample_labels, separate_axis};
use ndarray::{Array3, s};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Foreground intensity statistics (`foreground_intensity_properties_per_channel`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntensityProperties {
    pub max: f64,
    pub mean: f64,
    pub median: f64,
    pub min: f64,
    pub percentile_00_5: f64,
    pub percentile_99_5: f64,
    pub std: f64,
}

/// `dataset_fingerprint.json`, with nnU-Net v2's field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub foreground_intensity_properties_per_channel: BTreeMap<String, IntensityProperties>,
    pub median_relative_size_after_cropping: f64,
    pub shapes_after_crop: Vec<[usize; 3]>,
    pub spacings: Vec<[f64; 3]>,
}

/// What one case contributes to the fingerprint.
#[derive(Debug, Clone)]
pub struct CaseFingerprint {
    pub spacing: [f64; 3],
    pub shape_after_crop: [usize; 3],
    pub relative_size_after_cropping: f64,
    /// Foreground intensities, sorted.
    pub foreground: Vec<f32>,
}

/// The non-zero mask with interior holes filled (6-connected background reachable from the border
/// stays background), as nnU-Net's `create_nonzero_mask`.
pub fn nonzero_mask(data: &Array3<f32>) -> Array3<bool> {
    let (nz, ny, nx) = data.dim();
    let mut outside = Array3::from_elem((nz, ny, nx), false);
    let mut queue = VecDeque::new();
    for ((z, y, x), v) in data.indexed_iter() {
        let border = z == 0 || y == 0 || x == 0 || z + 1 == nz || y + 1 == ny || x + 1 == nx;
        if border && *v == 0.0 {
            outside[[z, y, x]] = true;
            queue.push_back([z, y, x]);
        }
    }
    while let Some([z, y, x]) = queue.pop_front() {
        let n = [
            (z.wrapping_sub(1), y, x),
            (z + 1, y, x),
            (z, y.wrapping_sub(1), x),
            (z, y + 1, x),
            (z, y, x.wrapping_sub(1)),
            (z, y, x + 1),
        ];
        for (a, b, c) in n {
            if a < nz && b < ny && c < nx && !outside[[a, b, c]] && data[[a, b, c]] == 0.0 {
                outside[[a, b, c]] = true;
                queue.push_back([a, b, c]);
            }
        }
    }
    outside.mapv(|o| !o)
}

/// Bounding box `[start, end)` of the mask; the whole volume if it is empty.
fn bbox(mask: &Array3<bool>) -> [[usize; 2]; 3] {
    let d = mask.dim();
    match statapp_volume::bounding_box(mask, |v| *v) {
        Some((lo, hi)) => [[lo[0], hi[0]], [lo[1], hi[1]], [lo[2], hi[2]]],
        None => [[0, d.0], [0, d.1], [0, d.2]],
    }
}

/// Crops image and labels to the non-zero box; label 0 outside the filled mask becomes -1.
pub fn crop_to_nonzero(
    data: &Array3<f32>,
    seg: Option<&Array3<u8>>,
) -> (Array3<f32>, Array3<i16>, [[usize; 2]; 3]) {
    let mask = nonzero_mask(data);
    let b = bbox(&mask);
    let sl = s![b[0][0]..b[0][1], b[1][0]..b[1][1], b[2][0]..b[2][1]];
    let cropped = data.slice(sl).to_owned();
    let m = mask.slice(sl);
    let seg = match seg {
        Some(s) => {
            let mut out = s.slice(sl).mapv(i16::from);
            ndarray::Zip::from(&mut out).and(&m).for_each(|v, inside| {
                if *v == 0 && !inside {
                    *v = -1;
                }
            });
            out
        }
        None => m.mapv(|inside| if inside { 0 } else { -1 }),
    };
    (cropped, seg, b)
}

/// A case's fingerprint contribution (image in HU, labels, spacing `[z, y, x]`).
pub fn case_fingerprint(
    data: &Array3<f32>,
    seg: &Array3<u8>,
    spacing: [f64; 3],
) -> CaseFingerprint {
    let (cropped, seg_c, _) = crop_to_nonzero(data, Some(seg));
    let mut fg: Vec<f32> = cropped
        .iter()
        .zip(seg_c.iter())
        .filter(|(_, l)| **l > 0)
        .map(|(v, _)| *v)
        .collect();
    fg.sort_by(f32::total_cmp);
    let shape = [cropped.dim().0, cropped.dim().1, cropped.dim().2];
    CaseFingerprint {
        spacing,
        shape_after_crop: shape,
        relative_size_after_cropping: cropped.len() as f64 / data.len() as f64,
        foreground: fg,
    }
}

/// Pools case contributions. nnU-Net samples the same number of foreground voxels from every
/// case (with replacement, random); here every case carries the same total weight over all its
/// voxels, the expectation of that sampling, so the result is deterministic.
pub fn dataset_fingerprint(cases: &[CaseFingerprint]) -> Fingerprint {
    let with_fg: Vec<&CaseFingerprint> =
        cases.iter().filter(|c| !c.foreground.is_empty()).collect();
    let k = with_fg.len() as f64;
    let mean = with_fg
        .iter()
        .map(|c| {
            c.foreground.iter().map(|v| f64::from(*v)).sum::<f64>() / c.foreground.len() as f64
        })
        .sum::<f64>()
        / k;
    let var = with_fg
        .iter()
        .map(|c| {
            c.foreground
                .iter()
                .map(|v| (f64::from(*v) - mean).powi(2))
                .sum::<f64>()
                / c.foreground.len() as f64
        })
        .sum::<f64>()
        / k;
    // weighted quantiles: merge all values with weight 1 / (k * n_case)
    let mut weighted: Vec<(f32, f64)> = with_fg
        .iter()
        .flat_map(|c| {
            let w = 1.0 / (k * c.foreground.len() as f64);
            c.foreground.iter().map(move |v| (*v, w))
        })
        .collect();
    weighted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let quantile = |q: f64| -> f64 {
        let mut cum = 0.0;
        for (v, w) in &weighted {
            cum += w;
            if cum >= q - 1e-12 {
                return f64::from(*v);
            }
        }
        weighted.last().map_or(f64::NAN, |x| f64::from(x.0))
    };
    let props = IntensityProperties {
        max: weighted.last().map_or(f64::NAN, |x| f64::from(x.0)),
        mean,
        median: quantile(0.5),
        min: weighted.first().map_or(f64::NAN, |x| f64::from(x.0)),
        percentile_00_5: quantile(0.005),
        percentile_99_5: quantile(0.995),
        std: var.sqrt(),
    };
    let rel: Vec<f64> = cases
        .iter()
        .map(|c| c.relative_size_after_cropping)
        .collect();
    Fingerprint {
        foreground_intensity_properties_per_channel: [("0".to_string(), props)]
            .into_iter()
            .collect(),
        median_relative_size_after_cropping: percentile(&rel, 50.0),
        shapes_after_crop: cases.iter().map(|c| c.shape_after_crop).collect(),
        spacings: cases.iter().map(|c| c.spacing).collect(),
    }
}

/// nnU-Net's CTNormalization, in f32 like nnU-Net.
pub fn ct_normalize(data: &mut Array3<f32>, p: &IntensityProperties) {
    let (lo, hi) = (p.percentile_00_5 as f32, p.percentile_99_5 as f32);
    let (mean, std) = (p.mean as f32, p.std.max(1e-8) as f32);
    data.mapv_inplace(|v| (v.clamp(lo, hi) - mean) / std);
}

/// What is needed to map a preprocessed case back onto its original grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseProperties {
    pub spacing: [f64; 3],
    pub shape_before_cropping: [usize; 3],
    pub bbox_used_for_cropping: [[usize; 2]; 3],
    pub shape_after_cropping_and_before_resampling: [usize; 3],
}

/// A case ready for the network.
#[derive(Debug, Clone)]
pub struct Preprocessed {
    pub data: Array3<f32>,
    pub seg: Option<Array3<i16>>,
    pub properties: CaseProperties,
}

/// DefaultPreprocessor for one CT case (no transpose: CT's coarse axis is already z).
pub fn preprocess(
    image: &Array3<f32>,
    seg: Option<&Array3<u8>>,
    spacing: [f64; 3],
    target_spacing: [f64; 3],
    intensity: &IntensityProperties,
) -> Preprocessed {
    let shape = [image.dim().0, image.dim().1, image.dim().2];
    let (data, seg_c, b) = crop_to_nonzero(image, seg);
    let seg_c = seg.map(|_| seg_c);
    normalise_and_resample(shape, data, seg_c, b, spacing, target_spacing, intensity)
}

/// `preprocess` of an image without labels that is not needed afterwards: it is dropped once
/// cropped, so a full-size CT is not held twice.
pub fn preprocess_owned(
    image: Array3<f32>,
    spacing: [f64; 3],
    target_spacing: [f64; 3],
    intensity: &IntensityProperties,
) -> Preprocessed {
    let shape = [image.dim().0, image.dim().1, image.dim().2];
    let (data, _, b) = crop_to_nonzero(&image, None);
    drop(image);
    normalise_and_resample(shape, data, None, b, spacing, target_spacing, intensity)
}

fn normalise_and_resample(
    shape: [usize; 3],
    mut data: Array3<f32>,
    seg_c: Option<Array3<i16>>,
    b: [[usize; 2]; 3],
    spacing: [f64; 3],
    target_spacing: [f64; 3],
    intensity: &IntensityProperties,
) -> Preprocessed {
    let cropped = [data.dim().0, data.dim().1, data.dim().2];
    ct_normalize(&mut data, intensity);
    let new_shape = compute_new_shape(cropped, spacing, target_spacing);
    let separate = separate_axis(spacing, target_spacing);
    let data = resample_image(&data, new_shape, 3, separate);
    let seg = seg_c.map(|s| resample_labels(&s, new_shape, 1, separate));
    Preprocessed {
        data,
        seg,
        properties: CaseProperties {
            spacing,
            shape_before_cropping: shape,
            bbox_used_for_cropping: b,
            shape_after_cropping_and_before_resampling: cropped,
        },
    }
}

/// Maps per-class network output (probabilities, `(classes, z, y, x)` on the preprocessed grid)
/// back onto the original grid: linear resampling (nnU-Net's `resampling_fn_probabilities`,
/// order 1), then pasted into the crop box; outside it background has probability 1.
pub fn probabilities_to_original(
    probs: &[Array3<f32>],
    props: &CaseProperties,
    target_spacing: [f64; 3],
) -> Vec<Array3<f32>> {
    let cropped = props.shape_after_cropping_and_before_resampling;
    let separate = separate_axis(props.spacing, target_spacing);
    probs
        .iter()
        .enumerate()
        .map(|(c, p)| {
            let fill = if c == 0 { 1.0 } else { 0.0 };
            uncrop(&resample_image(p, cropped, 1, separate), props, fill)
        })
        .collect()
}

/// `a` with its axes permuted as numpy's `a.transpose(axes)`: axis `i` of the result is axis
/// `axes[i]` of `a`.
pub fn transpose<T: Clone>(a: &Array3<T>, axes: [usize; 3]) -> Array3<T> {
    if axes == [0, 1, 2] {
        return a.clone();
    }
    a.view()
        .permuted_axes(axes)
        .as_standard_layout()
        .into_owned()
}

/// Pastes a map of the crop box back into the original grid, `fill` outside the box.
pub fn uncrop(cropped: &Array3<f32>, props: &CaseProperties, fill: f32) -> Array3<f32> {
    let b = props.bbox_used_for_cropping;
    let full = props.shape_before_cropping;
    let mut out = Array3::from_elem((full[0], full[1], full[2]), fill);
    out.slice_mut(s![b[0][0]..b[0][1], b[1][0]..b[1][1], b[2][0]..b[2][1]])
        .assign(cropped);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holes_are_filled_and_border_zeros_cropped() {
        let mut d = Array3::from_elem((5, 6, 7), 0.0f32);
        d.slice_mut(s![1..4, 1..5, 1..6]).fill(5.0);
        d[[2, 2, 3]] = 0.0; // an interior hole
        let m = nonzero_mask(&d);
        assert!(m[[2, 2, 3]]);
        assert!(!m[[0, 0, 0]]);
        let (c, seg, b) = crop_to_nonzero(&d, None);
        assert_eq!(b, [[1, 4], [1, 5], [1, 6]]);
        assert_eq!(c.dim(), (3, 4, 5));
        assert!(seg.iter().all(|v| *v == 0));
    }
}
