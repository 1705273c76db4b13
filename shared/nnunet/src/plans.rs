//! nnU-Net v2's default experiment planner for the 3d_fullres configuration (PlainConvUNet):
//! target spacing, patch size and topology from a GPU memory budget, batch size. Written from
//! nnunetv2 2.8.1's behaviour and checked against it (`tests/plans_parity.rs`).

use serde::{Deserialize, Serialize};

/// numpy's `np.percentile(values, q)` (linear interpolation).
pub fn percentile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let pos = q / 100.0 * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let frac = pos - lo as f64;
    if lo + 1 >= v.len() {
        return v[lo];
    }
    let (a, b) = (v[lo], v[lo + 1]);
    // numpy's _lerp
    if frac >= 0.5 {
        b - (b - a) * (1.0 - frac)
    } else {
        a + (b - a) * frac
    }
}

/// Per-axis percentile of rows.
fn column_percentile(rows: &[[f64; 3]], q: f64) -> [f64; 3] {
    std::array::from_fn(|a| percentile(&rows.iter().map(|r| r[a]).collect::<Vec<_>>(), q))
}

/// Target spacing: the median, except that a very anisotropic axis (spacing and voxel count both
/// off by the anisotropy threshold 3) takes its 10th percentile, but no finer than the other axes.
pub fn target_spacing(spacings: &[[f64; 3]], shapes: &[[usize; 3]]) -> [f64; 3] {
    let mut target = column_percentile(spacings, 50.0);
    let sizes: Vec<[f64; 3]> = shapes.iter().map(|s| s.map(|v| v as f64)).collect();
    let target_size = column_percentile(&sizes, 50.0);
    let worst = argmax(&target);
    let others: Vec<usize> = (0..3).filter(|a| *a != worst).collect();
    let other_spacing_max = others.iter().map(|a| target[*a]).fold(f64::MIN, f64::max);
    let other_size_min = others
        .iter()
        .map(|a| target_size[*a])
        .fold(f64::MAX, f64::min);
    let aniso_spacing = target[worst] > 3.0 * other_spacing_max;
    let aniso_voxels = target_size[worst] * 3.0 < other_size_min;
    if aniso_spacing && aniso_voxels {
        let axis: Vec<f64> = spacings.iter().map(|s| s[worst]).collect();
        let mut t = percentile(&axis, 10.0);
        if t < other_spacing_max {
            t = other_spacing_max.max(t) + 1e-5;
        }
        target[worst] = t;
    }
    target
}

/// First index of the maximum (np.argmax).
fn argmax(v: &[f64; 3]) -> usize {
    let mut best = 0;
    for a in 1..3 {
        if v[a] > v[best] {
            best = a;
        }
    }
    best
}

/// Axis order that puts the coarsest axis first, and its inverse.
pub fn transpose(target: &[f64; 3]) -> ([usize; 3], [usize; 3]) {
    let m = argmax(target);
    let rest: Vec<usize> = (0..3).filter(|a| *a != m).collect();
    let forward = [m, rest[0], rest[1]];
    let mut backward = [0; 3];
    for (i, f) in forward.iter().enumerate() {
        backward[*f] = i;
    }
    (forward, backward)
}

/// Shape after resampling: `round(old_spacing / new_spacing * shape)`, half to even like Python.
pub fn compute_new_shape(shape: [usize; 3], old: [f64; 3], new: [f64; 3]) -> [usize; 3] {
    std::array::from_fn(|a| (old[a] / new[a] * shape[a] as f64).round_ties_even() as usize)
}

/// Network topology for a patch: pooling per stage and conv kernels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Topology {
    pub num_pool_per_axis: [usize; 3],
    /// Stride of each stage (the first is `[1, 1, 1]`).
    pub strides: Vec<[usize; 3]>,
    pub kernel_sizes: Vec<[usize; 3]>,
    pub patch_size: [usize; 3],
    pub must_be_divisible_by: [usize; 3],
}

/// nnU-Net's `get_pool_and_conv_props`: pool an axis while its feature map stays at least
/// `2 * min_edge` and its spacing is within a factor 2 of the finest valid axis.
pub fn pool_and_conv_props(spacing: [f64; 3], patch: [f64; 3], min_edge: f64) -> Topology {
    let mut spacing_now = spacing;
    let mut size = patch;
    let mut strides = vec![[1usize; 3]];
    let mut kernels: Vec<[usize; 3]> = Vec::new();
    let mut num_pool = [0usize; 3];
    let mut kernel = [1usize; 3];
    loop {
        let mut valid: Vec<usize> = (0..3).filter(|a| size[*a] >= 2.0 * min_edge).collect();
        if valid.is_empty() {
            break;
        }
        let min_valid = valid
            .iter()
            .map(|a| spacing_now[*a])
            .fold(f64::MAX, f64::min);
        valid.retain(|a| spacing_now[*a] / min_valid < 2.0);
        if valid.len() == 1 && size[valid[0]] < 3.0 * min_edge {
            break;
        }
        if valid.is_empty() {
            break;
        }
        let min_all = spacing_now.iter().copied().fold(f64::MAX, f64::min);
        for d in 0..3 {
            if kernel[d] != 3 && spacing_now[d] / min_all < 2.0 {
                kernel[d] = 3;
            }
        }
        let mut stride = [1usize; 3];
        for &v in &valid {
            stride[v] = 2;
            num_pool[v] += 1;
            spacing_now[v] *= 2.0;
            size[v] = (size[v] / 2.0).ceil();
        }
        strides.push(stride);
        kernels.push(kernel);
    }
    let must = num_pool.map(|p| 1usize << p);
    let patch_size = std::array::from_fn(|a| {
        let s = patch[a] as usize;
        let m = must[a];
        if s.is_multiple_of(m) {
            s
        } else {
            s + m - s % m
        }
    });
    kernels.push([3, 3, 3]);
    Topology {
        num_pool_per_axis: num_pool,
        strides,
        kernel_sizes: kernels,
        patch_size,
        must_be_divisible_by: must,
    }
}

/// Features per stage: 32 doubling per stage, capped at 320.
pub fn features_per_stage(n_stages: usize) -> Vec<usize> {
    (0..n_stages).map(|i| (32usize << i).min(320)).collect()
}

/// nnU-Net's VRAM proxy: the summed sizes of every conv, transposed-conv and segmentation
/// output of a PlainConvUNet with deep supervision (two convs per stage).
pub fn feature_map_size(patch: [usize; 3], topology: &Topology, num_classes: usize) -> u64 {
    let features = features_per_stage(topology.strides.len());
    let prod = |s: [usize; 3]| s.iter().map(|v| *v as u64).product::<u64>();
    let mut size = patch;
    let mut out = 0u64;
    for (stride, c) in topology.strides.iter().zip(&features) {
        size = std::array::from_fn(|a| size[a] / stride[a]);
        out += 2 * *c as u64 * prod(size);
    }
    let mut skips = Vec::new();
    let mut size = patch;
    for stride in &topology.strides[..topology.strides.len() - 1] {
        size = std::array::from_fn(|a| size[a] / stride[a]);
        skips.push(size);
    }
    let n = features.len();
    for s in 0..n - 1 {
        let skip = prod(skips[skips.len() - 1 - s]);
        let c = features[n - 2 - s] as u64;
        out += 2 * c * skip + c * skip + num_classes as u64 * skip;
    }
    out
}

/// The 3d_fullres configuration of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FullresPlan {
    pub spacing: [f64; 3],
    pub median_image_size_in_voxels: [f64; 3],
    pub patch_size: [usize; 3],
    pub batch_size: usize,
    pub topology: Topology,
    pub features_per_stage: Vec<usize>,
}

const REFERENCE_VRAM: f64 = 560_000_000.0;
const REFERENCE_BATCH: f64 = 2.0;

/// Plans 3d_fullres for a dataset: `spacing` and `median_shape` already transposed.
pub fn plan_fullres(
    spacing: [f64; 3],
    median_shape: [f64; 3],
    approximate_n_voxels_dataset: f64,
    num_classes: usize,
) -> FullresPlan {
    let inv = spacing.map(|s| 1.0 / s);
    let scale = (256f64.powi(3) / inv.iter().product::<f64>()).powf(1.0 / 3.0);
    let initial: [f64; 3] =
        std::array::from_fn(|a| (inv[a] * scale).round_ties_even().min(median_shape[a]));
    let mut topo = pool_and_conv_props(spacing, initial, 4.0);
    let mut estimate = feature_map_size(topo.patch_size, &topo, num_classes) as f64;
    while estimate / REFERENCE_BATCH * 2.0 > REFERENCE_VRAM {
        let ratios: [f64; 3] = std::array::from_fn(|a| topo.patch_size[a] as f64 / median_shape[a]);
        // argsort(...)[-1]: the largest ratio, ties to the highest index (stable sort)
        let mut axis = 0;
        for a in 1..3 {
            if ratios[a] >= ratios[axis] {
                axis = a;
            }
        }
        let mut patch = topo.patch_size;
        let mut tmp = patch;
        tmp[axis] -= topo.must_be_divisible_by[axis];
        let probe = pool_and_conv_props(spacing, tmp.map(|v| v as f64), 4.0);
        patch[axis] -= probe.must_be_divisible_by[axis];
        topo = pool_and_conv_props(spacing, patch.map(|v| v as f64), 4.0);
        estimate = feature_map_size(topo.patch_size, &topo, num_classes) as f64;
    }
    let batch = (REFERENCE_VRAM / estimate * REFERENCE_BATCH).round_ties_even();
    let prod: f64 = topo.patch_size.iter().map(|v| *v as f64).product();
    let five_percent = (approximate_n_voxels_dataset * 0.05 / prod).round_ties_even();
    let batch_size = batch.min(five_percent).max(2.0) as usize;
    FullresPlan {
        spacing,
        median_image_size_in_voxels: median_shape,
        patch_size: topo.patch_size,
        batch_size,
        features_per_stage: features_per_stage(topo.strides.len()),
        topology: topo,
    }
}

/// Plans from a fingerprint (spacings and shapes after crop, in `[z, y, x]`).
pub fn plan_from_fingerprint(
    spacings: &[[f64; 3]],
    shapes: &[[usize; 3]],
    num_training: usize,
    num_classes: usize,
) -> (FullresPlan, [usize; 3], [usize; 3]) {
    let target = target_spacing(spacings, shapes);
    let (forward, backward) = transpose(&target);
    let new_shapes: Vec<[f64; 3]> = spacings
        .iter()
        .zip(shapes)
        .map(|(sp, sh)| compute_new_shape(*sh, *sp, target).map(|v| v as f64))
        .collect();
    let median = column_percentile(&new_shapes, 50.0);
    let t = |v: [f64; 3]| forward.map(|a| v[a]);
    let median_t = t(median);
    let approx = median_t.iter().product::<f64>() * num_training as f64;
    (
        plan_fullres(t(target), median_t, approx, num_classes),
        forward,
        backward,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_like_numpy() {
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0), 2.5);
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 50.0), 2.0);
    }

    #[test]
    fn pooling_of_a_typical_ct_patch() {
        let t = pool_and_conv_props([2.5, 0.75, 0.75], [80.0, 160.0, 160.0], 4.0);
        assert_eq!(t.strides.len(), 6);
        assert_eq!(t.strides[1], [1, 2, 2]);
        assert_eq!(t.kernel_sizes[0], [1, 3, 3]);
        assert_eq!(t.kernel_sizes[1], [3, 3, 3]);
    }
}
