//! Exact, order-free accumulation of tile predictions, so that a sliding-window prediction split
//! over many workers adds up to the very bits one process computes.
//!
//! Float sums depend on the order of the additions; integer sums do not. Each tile's logits are
//! rounded to fixed point (2^-20, finer than float32's step for logits above 8 in magnitude) and
//! weighted by nnU-Net's Gaussian rounded to integers (1..=2^24, never 0, so every voxel of a tile
//! keeps a weight). A `Partial` holds those integer sums over a box of the padded image; partials
//! of disjoint tile sets add in any order to the same totals, and the quotient is the prediction.

use crate::sliding::gaussian;
use ndarray::{Array3, Array4, ArrayView4, s};

/// Fractional bits of the fixed-point logits.
pub const LOGIT_BITS: i32 = 20;
/// The Gaussian's peak as an integer weight.
pub const WEIGHT_BITS: i32 = 24;
/// Largest logit magnitude the sums hold without overflow (64 overlapping tiles at peak weight).
pub const MAX_LOGIT: f32 = 4096.0;

#[derive(Debug, thiserror::Error)]
pub enum PartialError {
    #[error(
        "a tile logit is {0}: not finite or beyond +-{MAX_LOGIT}, outside the exact sums' range"
    )]
    Logit(f32),
    #[error("partial sums: {0}")]
    Format(String),
}

/// nnU-Net's Gaussian importance map (sigma 1/8 of the patch, peak 1) as integer weights.
pub fn integer_gaussian(patch: [usize; 3]) -> Array3<i64> {
    let scale = f64::from(1u32 << WEIGHT_BITS);
    gaussian(patch, 1.0 / 8.0).mapv(|g| ((f64::from(g) * scale).round() as i64).max(1))
}

/// Integer sums of weighted tile logits (`sum`, `(classes, z, y, x)`) and of weights over the box
/// at `origin` of the padded image.
#[derive(Debug, Clone, PartialEq)]
pub struct Partial {
    pub origin: [usize; 3],
    pub sum: Array4<i64>,
    pub weight: Array3<i64>,
}

/// The box `(origin, shape)` covered by tiles of size `patch` starting at `starts`.
pub fn bounding_box(starts: &[[usize; 3]], patch: [usize; 3]) -> ([usize; 3], [usize; 3]) {
    if starts.is_empty() {
        return ([0; 3], [0; 3]);
    }
    let lo: [usize; 3] = std::array::from_fn(|a| starts.iter().map(|t| t[a]).min().unwrap_or(0));
    let hi: [usize; 3] =
        std::array::from_fn(|a| starts.iter().map(|t| t[a] + patch[a]).max().unwrap_or(0));
    (lo, std::array::from_fn(|a| hi[a] - lo[a]))
}

impl Partial {
    pub fn new(channels: usize, origin: [usize; 3], shape: [usize; 3]) -> Self {
        Self {
            origin,
            sum: Array4::zeros((channels, shape[0], shape[1], shape[2])),
            weight: Array3::zeros((shape[0], shape[1], shape[2])),
        }
    }

    pub fn shape(&self) -> [usize; 3] {
        let (z, y, x) = self.weight.dim();
        [z, y, x]
    }

    /// Adds one tile's logits `(classes, patch)` starting at `start` (padded-image coordinates,
    /// inside this box).
    pub fn add(
        &mut self,
        start: [usize; 3],
        logits: ArrayView4<f32>,
        weights: &Array3<i64>,
    ) -> Result<(), PartialError> {
        let (_, tz, ty, tx) = logits.dim();
        let [z, y, x] = std::array::from_fn(|a| start[a] - self.origin[a]);
        let scale = f64::from(1u32 << LOGIT_BITS);
        if let Some(bad) = logits
            .iter()
            .find(|v| !v.is_finite() || v.abs() > MAX_LOGIT)
        {
            return Err(PartialError::Logit(*bad));
        }
        let mut w = self.weight.slice_mut(s![z..z + tz, y..y + ty, x..x + tx]);
        w += weights;
        for (c, p) in logits.outer_iter().enumerate() {
            let mut dst = self.sum.slice_mut(s![c, z..z + tz, y..y + ty, x..x + tx]);
            ndarray::Zip::from(&mut dst)
                .and(&p)
                .and(weights)
                .for_each(|d, v, g| *d += (f64::from(*v) * scale).round() as i64 * g);
        }
        Ok(())
    }

    /// Adds the overlap of `self` into `dest` (any box of the same image); integer additions, so
    /// the order in which partials are added does not matter.
    pub fn add_into(&self, dest: &mut Partial) {
        let (a, b) = (self.origin, self.shape());
        let (c, d) = (dest.origin, dest.shape());
        let lo: [usize; 3] = std::array::from_fn(|i| a[i].max(c[i]));
        let hi: [usize; 3] = std::array::from_fn(|i| (a[i] + b[i]).min(c[i] + d[i]));
        if (0..3).any(|i| lo[i] >= hi[i]) {
            return;
        }
        let src = |o: [usize; 3]| {
            s![
                lo[0] - o[0]..hi[0] - o[0],
                lo[1] - o[1]..hi[1] - o[1],
                lo[2] - o[2]..hi[2] - o[2]
            ]
        };
        let mut w = dest.weight.slice_mut(src(c));
        w += &self.weight.slice(src(a));
        for (mut to, from) in dest.sum.outer_iter_mut().zip(self.sum.outer_iter()) {
            let mut t = to.slice_mut(src(c));
            t += &from.slice(src(a));
        }
    }

    /// The weighted mean logits over this box (float32); voxels no tile covered are 0.
    pub fn finish(&self) -> Array4<f32> {
        let scale = f64::from(1u32 << LOGIT_BITS);
        let mut out = Array4::zeros(self.sum.dim());
        for (mut o, s) in out.outer_iter_mut().zip(self.sum.outer_iter()) {
            ndarray::Zip::from(&mut o)
                .and(&s)
                .and(&self.weight)
                .for_each(|o, s, w| {
                    if *w > 0 {
                        *o = (*s as f64 / (*w as f64 * scale)) as f32;
                    }
                });
        }
        out
    }

    /// `STATAPP-PARTIAL 1`, a JSON header line (`channels`, `origin`, `shape`), then the sums and
    /// weights as little-endian i64 in C order.
    pub fn encode(&self) -> Vec<u8> {
        let header = serde_json::json!({
            "channels": self.sum.dim().0, "origin": self.origin, "shape": self.shape(),
        });
        let mut out = format!("{MAGIC}\n{header}\n").into_bytes();
        out.reserve((self.sum.len() + self.weight.len()) * 8);
        for v in self.sum.iter().chain(self.weight.iter()) {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, PartialError> {
        let bad = |m: &str| PartialError::Format(m.to_string());
        let mut lines = bytes.splitn(3, |b| *b == b'\n');
        if lines.next() != Some(MAGIC.as_bytes()) {
            return Err(bad("not a statapp partial (no STATAPP-PARTIAL 1 line)"));
        }
        let header = lines.next().ok_or_else(|| bad("no header line"))?;
        let header: Header = serde_json::from_slice(header)
            .map_err(|e| PartialError::Format(format!("header: {e}")))?;
        let data = lines
            .next()
            .ok_or_else(|| bad("no data after the header"))?;
        let [z, y, x] = header.shape;
        let n = z * y * x;
        if data.len() != (header.channels + 1) * n * 8 {
            return Err(bad("data length does not match the header (truncated?)"));
        }
        let values: Vec<i64> = data
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        let (sum, weight) = values.split_at(header.channels * n);
        let shape_err = |e: ndarray::ShapeError| PartialError::Format(e.to_string());
        Ok(Self {
            origin: header.origin,
            sum: Array4::from_shape_vec((header.channels, z, y, x), sum.to_vec())
                .map_err(shape_err)?,
            weight: Array3::from_shape_vec((z, y, x), weight.to_vec()).map_err(shape_err)?,
        })
    }
}

const MAGIC: &str = "STATAPP-PARTIAL 1";

#[derive(serde::Deserialize)]
struct Header {
    channels: usize,
    origin: [usize; 3],
    shape: [usize; 3],
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tile(seed: f32, patch: [usize; 3]) -> Array4<f32> {
        Array4::from_shape_fn((2, patch[0], patch[1], patch[2]), |(c, z, y, x)| {
            ((seed + c as f32 * 1.7 + (z * 31 + y * 7 + x) as f32 * 0.37).sin()) * 9.3
        })
    }

    #[test]
    fn sums_are_order_free_and_survive_encoding() {
        let patch = [4, 6, 6];
        let g = integer_gaussian(patch);
        assert!(g.iter().all(|w| *w >= 1) && g.iter().any(|w| *w > 1 << 23));
        let starts = [[0, 0, 0], [0, 3, 0], [2, 3, 4], [2, 0, 4]];
        let tiles: Vec<Array4<f32>> = (0..4).map(|i| tile(i as f32, patch)).collect();
        let (o, sh) = bounding_box(&starts, patch);
        let mut whole = Partial::new(2, o, sh);
        for (t, p) in starts.iter().zip(&tiles) {
            whole.add(*t, p.view(), &g).unwrap();
        }
        // two parts, added in the other order, through their encoded bytes
        let part = |r: std::ops::Range<usize>| {
            let (o, sh) = bounding_box(&starts[r.clone()], patch);
            let mut p = Partial::new(2, o, sh);
            for i in r {
                p.add(starts[i], tiles[i].view(), &g).unwrap();
            }
            Partial::decode(&p.encode()).unwrap()
        };
        let mut merged = Partial::new(2, o, sh);
        part(2..4).add_into(&mut merged);
        part(0..2).add_into(&mut merged);
        assert_eq!(merged, whole);
        // a slab of the box sees exactly the slab of the sums
        let mut slab = Partial::new(2, [1, 0, 0], [2, sh[1], sh[2]]);
        whole.add_into(&mut slab);
        assert_eq!(slab.sum, whole.sum.slice(s![.., 1..3, .., ..]));
        let logits = whole.finish();
        assert!((logits[[0, 0, 0, 0]] - tiles[0][[0, 0, 0, 0]]).abs() < 1e-5);
        assert!(Partial::decode(&whole.encode()[..40]).is_err());
        let mut nan = tiles[0].clone();
        nan[[1, 1, 1, 1]] = f32::NAN;
        assert!(whole.add([0, 0, 0], nan.view(), &g).is_err());
    }
}
