//! nnU-Net's sliding-window inference: tile positions, the Gaussian importance map, and an
//! accumulator that can take any range of tiles, so one volume can be split across workers and
//! the partial accumulators merged.

use ndarray::{Array3, Array4, ArrayView4, s};

/// Tile start positions per axis (nnU-Net `compute_steps_for_sliding_window`): per axis
/// `ceil((size - tile) / (tile * step)) + 1` starts spread evenly over `[0, size - tile]`,
/// rounded half to even (numpy's `round`). Axes must already be at least as large as the tile.
pub fn steps(image: [usize; 3], tile: [usize; 3], step_size: f64) -> [Vec<usize>; 3] {
    std::array::from_fn(|d| {
        let (size, t) = (image[d] as f64, tile[d] as f64);
        let n = ((size - t) / (t * step_size)).ceil().max(0.0) as usize + 1;
        let max_step = image[d].saturating_sub(tile[d]) as f64;
        let actual = if n > 1 {
            max_step / (n - 1) as f64
        } else {
            0.0
        };
        (0..n)
            .map(|i| (actual * i as f64).round_ties_even() as usize)
            .collect()
    })
}

/// The Gaussian importance map (sigma = tile / 8, scipy's `gaussian_filter` of a centred delta,
/// truncated at 4 sigma, scaled to a maximum of 1), rounded to float16 as nnU-Net holds it, with
/// zeros (float16 underflow) replaced by the smallest non-zero value.
pub fn gaussian(tile: [usize; 3], sigma_scale: f64) -> Array3<f32> {
    gaussian_scaled(tile, sigma_scale, 1.0)
}

/// [`gaussian`] with its maximum at `value_scale` before the float16 rounding: nnU-Net's
/// predictor asks for 10, which keeps float16 accumulators away from subnormals.
pub fn gaussian_scaled(tile: [usize; 3], sigma_scale: f64, value_scale: f64) -> Array3<f32> {
    // scipy builds each 1-D kernel as exp(-x^2 / 2 sigma^2) normalised by its (pairwise) sum and
    // filters axis by axis, so a voxel is ((w0 * w1) * w2), then the map is divided by its maximum;
    // the same operations in the same order land on the same float16 values
    let kernels: [Vec<f64>; 3] = std::array::from_fn(|d| {
        let sigma = tile[d] as f64 * sigma_scale;
        let radius = (4.0 * sigma + 0.5) as i64;
        let phi: Vec<f64> = (-radius..=radius)
            .map(|x| (-0.5 / (sigma * sigma) * (x * x) as f64).exp())
            .collect();
        let total = pairwise_sum(&phi);
        let center = (tile[d] / 2) as i64;
        (0..tile[d] as i64)
            .map(|i| {
                let x = i - center;
                if x.abs() > radius {
                    0.0
                } else {
                    phi[(x + radius) as usize] / total
                }
            })
            .collect()
    });
    let c = tile.map(|t| t / 2);
    let max = kernels[0][c[0]] * kernels[1][c[1]] * kernels[2][c[2]];
    let mut g = Array3::from_shape_fn((tile[0], tile[1], tile[2]), |(z, y, x)| {
        let v = kernels[0][z] * kernels[1][y] * kernels[2][x] / (max / value_scale);
        // torch converts float64 to float16 through float32 (double rounding): do the same
        half::f16::from_f32(v as f32).to_f32()
    });
    let min_nonzero = g
        .iter()
        .copied()
        .filter(|v| *v > 0.0)
        .fold(f32::INFINITY, f32::min);
    g.mapv_inplace(|v| if v == 0.0 { min_nonzero } else { v });
    g
}

/// numpy's pairwise summation (`np.sum` of a contiguous float64 array).
fn pairwise_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        a.iter().fold(0.0, |s, v| s + v)
    } else if n <= 128 {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - n % 8 {
            for j in 0..8 {
                r[j] += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for v in &a[i..] {
            res += v;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise_sum(&a[..n2]) + pairwise_sum(&a[n2..])
    }
}

/// Padding that brings each axis up to the tile size, split as nnU-Net does (half before).
pub fn padding(image: [usize; 3], tile: [usize; 3]) -> [(usize, usize); 3] {
    std::array::from_fn(|d| {
        let extra = tile[d].saturating_sub(image[d]);
        (extra / 2, extra - extra / 2)
    })
}

/// The list of tiles of a (padded) image in C order: `(z, y, x)` start positions.
pub fn tiles(image: [usize; 3], tile: [usize; 3], step_size: f64) -> Vec<[usize; 3]> {
    let [sz, sy, sx] = steps(image, tile, step_size);
    let mut out = Vec::with_capacity(sz.len() * sy.len() * sx.len());
    for z in &sz {
        for y in &sy {
            for x in &sx {
                out.push([*z, *y, *x]);
            }
        }
    }
    out
}

/// Weighted sums of tile predictions over a (padded) image: `sum_c += w * logits_c`, `weight += w`.
/// Accumulation is in f32 (nnU-Net uses float16 on the GPU).
#[derive(Debug, Clone, PartialEq)]
pub struct Accumulator {
    pub sum: Array4<f32>,
    pub weight: Array3<f32>,
}

impl Accumulator {
    pub fn new(channels: usize, image: [usize; 3]) -> Self {
        Self {
            sum: Array4::zeros((channels, image[0], image[1], image[2])),
            weight: Array3::zeros((image[0], image[1], image[2])),
        }
    }

    /// Adds one tile's prediction `(channels, tile)` at `start`, weighted by `gaussian`.
    pub fn add(&mut self, start: [usize; 3], prediction: ArrayView4<f32>, gaussian: &Array3<f32>) {
        let (_, tz, ty, tx) = prediction.dim();
        let [z, y, x] = start;
        let mut w = self.weight.slice_mut(s![z..z + tz, y..y + ty, x..x + tx]);
        w += gaussian;
        for (c, p) in prediction.outer_iter().enumerate() {
            let mut dst = self.sum.slice_mut(s![c, z..z + tz, y..y + ty, x..x + tx]);
            ndarray::Zip::from(&mut dst)
                .and(&p)
                .and(gaussian)
                .for_each(|d, v, g| *d += v * g);
        }
    }

    /// Adds another partial accumulator of the same image (tiles computed elsewhere).
    pub fn merge(&mut self, other: &Accumulator) {
        self.sum += &other.sum;
        self.weight += &other.weight;
    }

    /// The weighted mean prediction.
    pub fn finish(&self) -> Array4<f32> {
        let mut out = self.sum.clone();
        for mut c in out.outer_iter_mut() {
            ndarray::Zip::from(&mut c)
                .and(&self.weight)
                .for_each(|v, w| *v /= w);
        }
        out
    }
}

/// nnU-Net's own accumulation: logit sums and weights held in float16 (`predicted_logits` and
/// `n_predictions` are `torch.half`), every addition rounded to float16, the quotient too.
#[derive(Debug, Clone, PartialEq)]
pub struct Accumulator16 {
    pub sum: Array4<half::f16>,
    pub weight: Array3<half::f16>,
}

impl Accumulator16 {
    pub fn new(channels: usize, image: [usize; 3]) -> Self {
        Self {
            sum: Array4::from_elem((channels, image[0], image[1], image[2]), half::f16::ZERO),
            weight: Array3::from_elem((image[0], image[1], image[2]), half::f16::ZERO),
        }
    }

    /// `predicted_logits[sl] += prediction * gaussian` (the product in float32, as torch
    /// multiplies a float32 tensor by a half one), `n_predictions[sl] += gaussian`.
    pub fn add(&mut self, start: [usize; 3], prediction: ArrayView4<f32>, gaussian: &Array3<f32>) {
        let f16 = half::f16::from_f32;
        let (_, tz, ty, tx) = prediction.dim();
        let [z, y, x] = start;
        let mut w = self.weight.slice_mut(s![z..z + tz, y..y + ty, x..x + tx]);
        ndarray::Zip::from(&mut w)
            .and(gaussian)
            .for_each(|d, g| *d = f16(d.to_f32() + g));
        for (c, p) in prediction.outer_iter().enumerate() {
            let mut dst = self.sum.slice_mut(s![c, z..z + tz, y..y + ty, x..x + tx]);
            ndarray::Zip::from(&mut dst)
                .and(&p)
                .and(gaussian)
                .for_each(|d, v, g| *d = f16(d.to_f32() + v * g));
        }
    }

    /// The weighted mean, rounded to float16 (`torch.div(..., out=predicted_logits)`).
    pub fn finish(&self) -> Array4<f32> {
        let mut out = Array4::zeros(self.sum.dim());
        for (mut o, s) in out.outer_iter_mut().zip(self.sum.outer_iter()) {
            ndarray::Zip::from(&mut o)
                .and(&s)
                .and(&self.weight)
                .for_each(|o, s, w| *o = half::f16::from_f32(s.to_f32() / w.to_f32()).to_f32());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_match_nnunet_examples() {
        // nnU-Net's own comment: size 110, patch 64, step 0.5 -> starts 0, 23, 46
        assert_eq!(steps([110, 64, 64], [64, 64, 64], 0.5)[0], vec![0, 23, 46]);
        // single tile when the image equals the patch
        assert_eq!(steps([64, 64, 64], [64, 64, 64], 0.5)[1], vec![0]);
        // ties round to even: 16.5 -> 16 (size 97, tile 64: 3 steps of 16.5)
        assert_eq!(steps([97, 64, 64], [64, 64, 64], 0.5)[0], vec![0, 16, 33]);
    }

    #[test]
    fn gaussian_peaks_at_the_centre_and_has_no_zeros() {
        let g = gaussian([16, 32, 32], 1.0 / 8.0);
        assert_eq!(g[[8, 16, 16]], 1.0);
        assert!(g.iter().all(|v| *v > 0.0));
        assert!(g[[0, 0, 0]] < g[[8, 16, 0]]);
    }
}
