//! Resampling as nnU-Net does it (`resample_data_or_seg`): skimage `resize` with `mode='edge'`,
//! i.e. scipy `ndimage.zoom(grid_mode=True, mode='nearest')`, per axis; images with cubic
//! B-splines (order 3, prefiltered on 12 edge-padded samples), label maps by interpolating each
//! label's indicator linearly and taking the argmax; anisotropic data in-plane per slice, then
//! nearest neighbour along the coarse axis.

use ndarray::{Array3, ArrayView1, ArrayViewMut1, Axis};

/// The cubic B-spline pole.
const POLE: f64 = -0.267_949_192_431_122_7; // sqrt(3) - 2

/// scipy's `spline_filter1d(order=3)` with the reflect initialisation it uses for mode 'nearest'.
fn prefilter(c: &mut [f64]) {
    let n = c.len();
    if n < 2 {
        return;
    }
    let z = POLE;
    let gain = (1.0 - z) * (1.0 - 1.0 / z);
    c.iter_mut().for_each(|v| *v *= gain);
    // causal initialisation (reflect)
    let z_n = z.powi(n as i32);
    let c0 = c[0];
    let mut acc = c[0] + z_n * c[n - 1];
    let mut z_i = z;
    for i in 1..n {
        acc += z_i * (c[i] + z_n * c[n - 1 - i]);
        z_i *= z;
    }
    c[0] = acc * z / (1.0 - z_n * z_n) + c0;
    for i in 1..n {
        c[i] += z * c[i - 1];
    }
    // anticausal initialisation (reflect)
    c[n - 1] *= z / (z - 1.0);
    for i in (0..n - 1).rev() {
        c[i] = z * (c[i + 1] - c[i]);
    }
}

/// One line resized from `input.len()` to `out.len()` samples with pixel-centre alignment.
fn resize_line(
    input: ArrayView1<f64>,
    mut out: ArrayViewMut1<f64>,
    order: usize,
    scratch: &mut Vec<f64>,
) {
    let n = input.len();
    let m = out.len();
    let scale = n as f64 / m as f64;
    match order {
        0 => {
            for (o, v) in out.iter_mut().enumerate() {
                let x = (o as f64 + 0.5) * scale - 0.5;
                let i = ((x + 0.5).floor() as isize).clamp(0, n as isize - 1) as usize;
                *v = input[i];
            }
        }
        1 => {
            for (o, v) in out.iter_mut().enumerate() {
                let x = (o as f64 + 0.5) * scale - 0.5;
                let f = x.floor();
                let t = x - f;
                let i0 = (f as isize).clamp(0, n as isize - 1) as usize;
                let i1 = (f as isize + 1).clamp(0, n as isize - 1) as usize;
                *v = input[i0] * (1.0 - t) + input[i1] * t;
            }
        }
        _ => {
            const PAD: usize = 12;
            scratch.clear();
            let (first, last) = (input[0], input[n - 1]);
            scratch.extend(std::iter::repeat_n(first, PAD));
            scratch.extend(input.iter().copied());
            scratch.extend(std::iter::repeat_n(last, PAD));
            prefilter(scratch);
            let len = scratch.len() as isize;
            for (o, v) in out.iter_mut().enumerate() {
                let x = (o as f64 + 0.5) * scale - 0.5 + PAD as f64;
                let f = x.floor();
                let t = x - f;
                let w = [
                    (1.0 - t).powi(3) / 6.0,
                    (3.0 * t * t * t - 6.0 * t * t + 4.0) / 6.0,
                    (-3.0 * t * t * t + 3.0 * t * t + 3.0 * t + 1.0) / 6.0,
                    t * t * t / 6.0,
                ];
                let start = f as isize - 1;
                *v = (0..4)
                    .map(|k| w[k] * scratch[(start + k as isize).clamp(0, len - 1) as usize])
                    .sum();
            }
        }
    }
}

/// Resizes `data` along `axis` to `new_len` samples.
fn resize_axis(data: &Array3<f64>, axis: usize, new_len: usize, order: usize) -> Array3<f64> {
    let mut shape = [data.dim().0, data.dim().1, data.dim().2];
    if shape[axis] == new_len {
        return data.clone();
    }
    shape[axis] = new_len;
    let mut out = Array3::zeros((shape[0], shape[1], shape[2]));
    let mut scratch = Vec::new();
    for (lane_in, lane_out) in data
        .lanes(Axis(axis))
        .into_iter()
        .zip(out.lanes_mut(Axis(axis)))
    {
        resize_line(lane_in, lane_out, order, &mut scratch);
    }
    out
}

/// skimage `resize(image, new_shape, order, mode='edge', anti_aliasing=False)` of a volume whose
/// axes listed in `axes` change size (the others must not), clipped to the input range.
fn resize(data: &Array3<f64>, new_shape: [usize; 3], order: usize, axes: &[usize]) -> Array3<f64> {
    let (lo, hi) = data
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(*v), b.max(*v))
        });
    let mut out = data.clone();
    for &a in axes {
        out = resize_axis(&out, a, new_shape[a], order);
    }
    if order > 0 {
        out.mapv_inplace(|v| v.clamp(lo, hi));
    }
    out
}

/// nnU-Net's per-case separate-z decision: the coarsest axis of the current spacing when it is
/// more than 3x the finest, else of the target spacing, else none.
pub fn separate_axis(current: [f64; 3], target: [f64; 3]) -> Option<usize> {
    let pick = |s: [f64; 3]| {
        let max = s.iter().copied().fold(f64::MIN, f64::max);
        let min = s.iter().copied().fold(f64::MAX, f64::min);
        if max / min > 3.0 {
            let axes: Vec<usize> = (0..3).filter(|a| max / s[*a] == 1.0).collect();
            // two or three equally coarse axes: nnU-Net does not separate
            if axes.len() == 1 {
                Some(Some(axes[0]))
            } else {
                Some(None)
            }
        } else {
            None
        }
    };
    pick(current).or_else(|| pick(target)).flatten()
}

/// Resamples an image (`order` 3 in nnU-Net) to `new_shape`; with a separate axis, slices are
/// resized in-plane and the separate axis by nearest neighbour (`order_z = 0`).
pub fn resample_image(
    data: &Array3<f32>,
    new_shape: [usize; 3],
    order: usize,
    separate: Option<usize>,
) -> Array3<f32> {
    let shape = [data.dim().0, data.dim().1, data.dim().2];
    if shape == new_shape {
        return data.clone();
    }
    resize_volume(&data.mapv(f64::from), new_shape, order, separate).mapv(|v| v as f32)
}

/// nnU-Net's `resample_data_or_seg` for one channel in f64: per slice in-plane, then nearest
/// neighbour along the separate axis; or all three axes at once.
fn resize_volume(
    d: &Array3<f64>,
    new_shape: [usize; 3],
    order: usize,
    separate: Option<usize>,
) -> Array3<f64> {
    match separate {
        Some(axis) => {
            let inplane: Vec<usize> = (0..3).filter(|a| *a != axis).collect();
            let mut mid_shape = new_shape;
            mid_shape[axis] = d.shape()[axis];
            let mut mid = Array3::zeros((mid_shape[0], mid_shape[1], mid_shape[2]));
            for (s, mut dst) in d.axis_iter(Axis(axis)).zip(mid.axis_iter_mut(Axis(axis))) {
                let slice3 = s.to_owned().insert_axis(Axis(axis));
                let r = resize(&slice3, slice_shape(new_shape, axis), order, &inplane);
                dst.assign(&r.index_axis(Axis(axis), 0));
            }
            resize_axis(&mid, axis, new_shape[axis], 0)
        }
        None => resize(d, new_shape, order, &[0, 1, 2]),
    }
}

fn slice_shape(new_shape: [usize; 3], axis: usize) -> [usize; 3] {
    let mut s = new_shape;
    s[axis] = 1;
    s
}

/// Resamples a label map: each label's indicator interpolated (`order` 1 in nnU-Net), the voxel
/// takes the label with the largest value; exact ties go to the nearest-neighbour label when it
/// is one of the tied labels, else to the smallest tied label.
pub fn resample_labels(
    seg: &Array3<i16>,
    new_shape: [usize; 3],
    order: usize,
    separate: Option<usize>,
) -> Array3<i16> {
    let shape = [seg.dim().0, seg.dim().1, seg.dim().2];
    if shape == new_shape {
        return seg.clone();
    }
    let mut labels: Vec<i16> = seg.iter().copied().collect();
    labels.sort_unstable();
    labels.dedup();
    let nearest = resample_image(&seg.mapv(f32::from), new_shape, 0, separate).mapv(|v| v as i16);
    if labels.len() == 1 {
        return Array3::from_elem((new_shape[0], new_shape[1], new_shape[2]), labels[0]);
    }
    let dim = (new_shape[0], new_shape[1], new_shape[2]);
    let mut best = Array3::from_elem(dim, f64::NEG_INFINITY);
    let mut winner = Array3::from_elem(dim, labels[0]);
    let mut tied = Array3::from_elem(dim, false);
    let mut nearest_tied = Array3::from_elem(dim, false);
    for &l in &labels {
        let indicator = seg.mapv(|v| if v == l { 1.0f32 } else { 0.0 });
        let score = resample_indicator(&indicator, new_shape, order, separate);
        ndarray::Zip::from(&mut best)
            .and(&mut winner)
            .and(&mut tied)
            .and(&mut nearest_tied)
            .and(&score)
            .and(&nearest)
            .for_each(|b, w, t, nt, s, n| {
                if *s > *b {
                    *b = *s;
                    *w = l;
                    *t = false;
                    *nt = *n == l;
                } else if *s == *b {
                    *t = true;
                    *nt |= *n == l;
                }
            });
    }
    ndarray::Zip::from(&mut winner)
        .and(&tied)
        .and(&nearest_tied)
        .and(&nearest)
        .for_each(|w, t, nt, n| {
            if *t && *nt {
                *w = *n;
            }
        });
    winner
}

/// An indicator resampled in f64 (scores are compared exactly, as batchgenerators does).
fn resample_indicator(
    indicator: &Array3<f32>,
    new_shape: [usize; 3],
    order: usize,
    separate: Option<usize>,
) -> Array3<f64> {
    resize_volume(&indicator.mapv(f64::from), new_shape, order, separate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_stays_constant_and_identity_is_exact() {
        let d = Array3::from_elem((3, 5, 7), 4.5f32);
        let r = resample_image(&d, [3, 9, 4], 3, Some(0));
        assert!(r.iter().all(|v| (*v - 4.5).abs() < 1e-6));
        let ramp = Array3::from_shape_fn((2, 6, 6), |(z, y, x)| (z + y * 2 + x) as f32);
        assert_eq!(resample_image(&ramp, [2, 6, 6], 3, None), ramp);
    }

    #[test]
    fn cubic_spline_interpolates_its_samples() {
        // upsampling by an odd factor hits every input sample exactly
        let line = Array3::from_shape_fn((1, 1, 9), |(_, _, x)| ((x * x) % 7) as f32);
        let up = resample_image(&line, [1, 1, 27], 3, None);
        for x in 0..9 {
            assert!((up[[0, 0, 3 * x + 1]] - line[[0, 0, x]]).abs() < 1e-5);
        }
    }

    #[test]
    fn labels_keep_their_values() {
        let seg = Array3::from_shape_fn((4, 8, 8), |(_, y, x)| {
            if x < 4 {
                1
            } else if y < 4 {
                2
            } else {
                0
            }
        });
        let r = resample_labels(&seg, [4, 12, 12], 1, Some(0));
        assert!(r.iter().all(|v| [0, 1, 2].contains(v)));
        assert_eq!(r[[0, 0, 0]], 1);
        assert_eq!(r[[0, 0, 11]], 2);
    }

    #[test]
    fn separate_axis_rule() {
        assert_eq!(separate_axis([3.0, 0.7, 0.7], [3.0, 0.77, 0.77]), Some(0));
        assert_eq!(separate_axis([1.0, 1.0, 1.0], [1.0, 1.0, 1.0]), None);
        assert_eq!(separate_axis([1.0, 4.0, 4.0], [1.0, 1.0, 1.0]), None);
    }
}
