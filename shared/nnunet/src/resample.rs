//! Resampling as nnU-Net does it (`resample_data_or_seg`): skimage `resize` with `mode='edge'`,
//! i.e. scipy `ndimage.zoom(grid_mode=True, mode='nearest')`, per axis; images with cubic
//! B-splines (order 3, prefiltered on 12 edge-padded samples), label maps by interpolating each
//! label's indicator linearly and taking the argmax; anisotropic data in-plane per slice, then
//! nearest neighbour along the coarse axis.

use ndarray::{Array3, ArrayView1, ArrayViewMut1, Axis};
use rayon::prelude::*;

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

/// Taps of one output sample: up to 4 input (or padded coefficient) indices and weights.
#[derive(Debug, Clone, Copy)]
struct Taps {
    index: [usize; 4],
    weight: [f64; 4],
}

const PAD: usize = 12;

/// The interpolation taps for resizing `n` samples to `m` with pixel-centre alignment (the same
/// for every line along an axis, so computed once).
fn taps(n: usize, m: usize, order: usize) -> Vec<Taps> {
    let scale = n as f64 / m as f64;
    let clamp = |i: isize, len: usize| i.clamp(0, len as isize - 1) as usize;
    (0..m)
        .map(|o| match order {
            0 => {
                let x = (o as f64 + 0.5) * scale - 0.5;
                let i = clamp((x + 0.5).floor() as isize, n);
                Taps {
                    index: [i; 4],
                    weight: [1.0, 0.0, 0.0, 0.0],
                }
            }
            1 => {
                let x = (o as f64 + 0.5) * scale - 0.5;
                let f = x.floor();
                let t = x - f;
                let (i0, i1) = (clamp(f as isize, n), clamp(f as isize + 1, n));
                Taps {
                    index: [i0, i1, i1, i1],
                    weight: [1.0 - t, t, 0.0, 0.0],
                }
            }
            _ => {
                let x = (o as f64 + 0.5) * scale - 0.5 + PAD as f64;
                let f = x.floor();
                let t = x - f;
                let start = f as isize - 1;
                let len = n + 2 * PAD;
                Taps {
                    index: std::array::from_fn(|k| clamp(start + k as isize, len)),
                    weight: [
                        (1.0 - t).powi(3) / 6.0,
                        (3.0 * t * t * t - 6.0 * t * t + 4.0) / 6.0,
                        (-3.0 * t * t * t + 3.0 * t * t + 3.0 * t + 1.0) / 6.0,
                        t * t * t / 6.0,
                    ],
                }
            }
        })
        .collect()
}

/// One line resized with precomputed taps.
fn resize_line(input: ArrayView1<f64>, mut out: ArrayViewMut1<f64>, order: usize, taps: &[Taps]) {
    match order {
        0 => {
            for (v, t) in out.iter_mut().zip(taps) {
                *v = input[t.index[0]];
            }
        }
        1 => {
            for (v, t) in out.iter_mut().zip(taps) {
                *v = input[t.index[0]] * t.weight[0] + input[t.index[1]] * t.weight[1];
            }
        }
        _ => {
            let n = input.len();
            let mut c = Vec::with_capacity(n + 2 * PAD);
            c.extend(std::iter::repeat_n(input[0], PAD));
            c.extend(input.iter().copied());
            c.extend(std::iter::repeat_n(input[n - 1], PAD));
            prefilter(&mut c);
            for (v, t) in out.iter_mut().zip(taps) {
                *v = (0..4).map(|k| t.weight[k] * c[t.index[k]]).sum();
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
    let table = taps(data.shape()[axis], new_len, order);
    // lines are independent: resize them in parallel
    ndarray::Zip::from(out.lanes_mut(Axis(axis)))
        .and(data.lanes(Axis(axis)))
        .par_for_each(|lane_out, lane_in| resize_line(lane_in, lane_out, order, &table));
    out
}

/// skimage `resize(image, new_shape, order, mode='edge', anti_aliasing=False)` of a volume whose
/// axes listed in `axes` change size (the others must not), clipped to the input range.
fn resize(data: &Array3<f64>, new_shape: [usize; 3], order: usize, axes: &[usize]) -> Array3<f64> {
    resize_within(
        data,
        new_shape,
        order,
        axes,
        value_range(data.iter().copied()),
    )
}

/// The smallest and largest value (the range `resize` clips its output to).
fn value_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    })
}

/// `resize` clipped to a given range (the whole volume's, when `data` is a block of it).
fn resize_within(
    data: &Array3<f64>,
    new_shape: [usize; 3],
    order: usize,
    axes: &[usize],
    (lo, hi): (f64, f64),
) -> Array3<f64> {
    // unchanged axes are skipped (no copy): zooming by exactly 1 reproduces the samples
    let mut out: Option<Array3<f64>> = None;
    for &a in axes {
        let src = out.as_ref().unwrap_or(data);
        if src.shape()[a] != new_shape[a] {
            out = Some(resize_axis(src, a, new_shape[a], order));
        }
    }
    let mut out = out.unwrap_or_else(|| data.clone());
    if order > 0 {
        out.par_mapv_inplace(|v| v.clamp(lo, hi));
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
    if let Some(axis) = separate {
        // slice by slice, so that only one slice at a time is held in f64
        let inplane: Vec<usize> = (0..3).filter(|a| *a != axis).collect();
        let slices = per_slice(shape[axis], |i| {
            let slice3 = data
                .index_axis(Axis(axis), i)
                .mapv(f64::from)
                .insert_axis(Axis(axis));
            resize(&slice3, slice_shape(new_shape, axis), order, &inplane).mapv(|v| v as f32)
        });
        let mid = stack_slices(&slices, axis);
        return resize_axis(&mid.mapv(f64::from), axis, new_shape[axis], 0).mapv(|v| v as f32);
    }
    if new_shape[0] == shape[0] {
        return resize_rows(data, new_shape, order);
    }
    resize(&data.mapv(f64::from), new_shape, order, &[0, 1, 2]).mapv(|v| v as f32)
}

/// Rows (axis 0) kept: each block of rows resized in-plane on its own, in f64 one block at a
/// time (a full-size CT in f64 is 2 GB), clipped to the whole volume's range: the same lanes,
/// so the same values as resizing the volume at once.
fn resize_rows(data: &Array3<f32>, new_shape: [usize; 3], order: usize) -> Array3<f32> {
    const ROWS: usize = 16;
    let (lo, hi) = value_range(data.iter().map(|v| f64::from(*v)));
    let mut out = Array3::zeros((new_shape[0], new_shape[1], new_shape[2]));
    for (mut o, block) in out
        .axis_chunks_iter_mut(Axis(0), ROWS)
        .zip(data.axis_chunks_iter(Axis(0), ROWS))
    {
        let n = block.dim().0;
        let r = resize_within(
            &block.mapv(f64::from),
            [n, new_shape[1], new_shape[2]],
            order,
            &[1, 2],
            (lo, hi),
        );
        o.assign(&r.mapv(|v| v as f32));
    }
    out
}

/// [`resample_image`] for rows (axis 0) that arrive in order, for exports that cannot hold the
/// volume: output rows are returned as soon as the input rows they read have arrived. Order 0
/// or 1 along rows (every output row reads at most two consecutive input rows), with no
/// separate axis or with rows as the separate axis; the values are those of the whole-volume
/// call (the clip range is that of the rows received so far, which for these orders can differ
/// from the whole volume's only where a value is rounded past its own inputs).
#[derive(Debug)]
pub struct RowResampler {
    plane: [usize; 2],
    order: usize,
    separate: bool,
    taps: Vec<Taps>,
    /// Input rows kept for outputs still to come, as `(index, row)`: raw in f64, or resampled
    /// in-plane when rows are the separate axis.
    window: Vec<(usize, Array3<f64>)>,
    received: usize,
    emitted: usize,
    range: (f64, f64),
}

impl RowResampler {
    /// `None` when the resampling cannot stream by rows (an in-plane separate axis, an order
    /// above 1 along rows).
    pub fn new(
        in_rows: usize,
        new_shape: [usize; 3],
        order: usize,
        separate: Option<usize>,
    ) -> Option<Self> {
        let separate = match separate {
            None => false,
            Some(0) => true,
            Some(_) => return None,
        };
        let along_rows = if separate { 0 } else { order };
        if along_rows > 1 {
            return None;
        }
        Some(Self {
            plane: [new_shape[1], new_shape[2]],
            order,
            separate,
            taps: taps(in_rows, new_shape[0], along_rows),
            window: Vec::new(),
            received: 0,
            emitted: 0,
            range: (f64::INFINITY, f64::NEG_INFINITY),
        })
    }

    /// Takes the next input rows; returns the output rows they complete (possibly none).
    pub fn push(&mut self, rows: ndarray::ArrayView3<f32>) -> Array3<f32> {
        let new_plane = [1, self.plane[0], self.plane[1]];
        for row in rows.outer_iter() {
            let row = row.mapv(f64::from).insert_axis(Axis(0));
            let kept = if self.separate {
                // in-plane first, clipped per slice, through f32 (as the whole-volume path)
                resize(&row, new_plane, self.order, &[1, 2]).mapv(|v| f64::from(v as f32))
            } else {
                let (lo, hi) = value_range(row.iter().copied());
                self.range = (self.range.0.min(lo), self.range.1.max(hi));
                row
            };
            self.window.push((self.received, kept));
            self.received += 1;
        }
        let mut out = Vec::new();
        while let Some(t) = self.taps.get(self.emitted) {
            let (i0, i1) = (t.index[0], t.index[1]);
            if i1 >= self.received {
                break;
            }
            let row = |i: usize| self.window.iter().find(|(j, _)| *j == i).map(|(_, r)| r);
            let (Some(a), Some(b)) = (row(i0), row(i1)) else {
                break; // unreachable: rows at or after the oldest tap are kept
            };
            out.push(if self.separate {
                a.mapv(|v| v as f32)
            } else {
                let along = a * t.weight[0] + b * t.weight[1];
                resize_within(&along, new_plane, self.order, &[1, 2], self.range).mapv(|v| v as f32)
            });
            self.emitted += 1;
        }
        if let Some(t) = self.taps.get(self.emitted) {
            let oldest = t.index[0];
            self.window.retain(|(j, _)| *j >= oldest);
        }
        stack_slices(&out, 0)
    }

    /// Output rows returned so far.
    pub fn emitted(&self) -> usize {
        self.emitted
    }
}

/// `f` for every slice index, in parallel; results in slice order.
fn per_slice<T: Send>(n: usize, f: impl Fn(usize) -> Array3<T> + Sync + Send) -> Vec<Array3<T>> {
    (0..n).into_par_iter().map(f).collect()
}

/// Concatenates single-slice volumes along `axis`.
fn stack_slices<T: Clone + Default>(slices: &[Array3<T>], axis: usize) -> Array3<T> {
    let views: Vec<_> = slices.iter().map(|s| s.view()).collect();
    // the slices share their in-plane shape by construction; empty input gives an empty volume
    ndarray::concatenate(Axis(axis), &views).unwrap_or_default()
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
    if let Some(axis) = separate {
        // nnU-Net resizes each slice's label map in-plane (argmax of the interpolated
        // indicators), then takes the nearest slice along the separate axis
        let slices = per_slice(shape[axis], |i| {
            let slice3 = seg
                .index_axis(Axis(axis), i)
                .to_owned()
                .insert_axis(Axis(axis));
            resample_labels(&slice3, slice_shape(new_shape, axis), order, None)
        });
        let mid = stack_slices(&slices, axis).mapv(f64::from);
        return resize_axis(&mid, axis, new_shape[axis], 0).mapv(|v| v as i16);
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
        let mut indicator = Array3::zeros(seg.dim());
        ndarray::Zip::from(&mut indicator)
            .and(seg)
            .par_for_each(|i, v| *i = if *v == l { 1.0f64 } else { 0.0 });
        let score = resize(&indicator, new_shape, order, &[0, 1, 2]);
        ndarray::Zip::from(&mut best)
            .and(&mut winner)
            .and(&mut tied)
            .and(&mut nearest_tied)
            .and(&score)
            .and(&nearest)
            .par_for_each(|b, w, t, nt, s, n| {
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
        .par_for_each(|w, t, nt, n| {
            if *t && *nt {
                *w = *n;
            }
        });
    winner
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
