//! Sliding-window prediction with the network: nnU-Net's tiling and Gaussian weighting
//! (`statapp_nnunet::sliding`), tile batching, nnU-Net's mirroring over the allowed axes, and any
//! range of tiles, so that one volume can be split across workers and merged exactly.

use crate::unet::PlainConvUNet;
use burn::tensor::{Device, Tensor, TensorData};
use ndarray::{Array3, Array4, ArrayView4, s};
use statapp_nnunet::partial::{Partial, bounding_box, integer_gaussian};
use statapp_nnunet::sliding::{
    Accumulator, Accumulator16, gaussian, gaussian_scaled, padding, tiles,
};

/// A sliding-window job over one preprocessed image.
#[derive(Debug, Clone)]
pub struct SlidingWindow {
    pub image_shape: [usize; 3],
    pub patch: [usize; 3],
    pub pad: [(usize, usize); 3],
    pub padded_shape: [usize; 3],
    pub tiles: Vec<[usize; 3]>,
    pub gaussian: Array3<f32>,
}

impl SlidingWindow {
    pub fn new(image_shape: [usize; 3], patch: [usize; 3], step: f64) -> Self {
        let pad = padding(image_shape, patch);
        let padded_shape = std::array::from_fn(|a| image_shape[a] + pad[a].0 + pad[a].1);
        Self {
            image_shape,
            patch,
            pad,
            padded_shape,
            tiles: tiles(padded_shape, patch, step),
            gaussian: gaussian(patch, 1.0 / 8.0),
        }
    }

    /// The image padded with zeros to at least the patch size (nnU-Net's `pad_nd_image`).
    pub fn pad_image(&self, data: &Array3<f32>) -> Array3<f32> {
        let p = self.padded_shape;
        let mut out = Array3::zeros((p[0], p[1], p[2]));
        let [a, b, c] = self.pad.map(|x| x.0);
        let [z, y, x] = self.image_shape;
        out.slice_mut(s![a..a + z, b..b + y, c..c + x]).assign(data);
        out
    }

    /// The box `(origin, shape)` of the padded image covered by the tiles `range`.
    pub fn tile_box(&self, range: std::ops::Range<usize>) -> ([usize; 3], [usize; 3]) {
        bounding_box(&self.tiles[range], self.patch)
    }

    /// The box `origin..origin + shape` of the padded image, from rows `z0..` of the unpadded
    /// image (`rows` holds at least the rows the box needs; zeros elsewhere, as `pad_image`).
    pub fn pad_box(
        &self,
        rows: ndarray::ArrayView3<f32>,
        z0: usize,
        origin: [usize; 3],
        shape: [usize; 3],
    ) -> Array3<f32> {
        let mut out = Array3::zeros((shape[0], shape[1], shape[2]));
        let pad = self.pad.map(|p| p.0);
        // the box in unpadded coordinates, clipped to the image (and to the rows given)
        let lo: [usize; 3] = std::array::from_fn(|a| origin[a].max(pad[a]) - pad[a]);
        let mut hi: [usize; 3] = std::array::from_fn(|a| {
            (origin[a] + shape[a])
                .min(pad[a] + self.image_shape[a])
                .saturating_sub(pad[a])
        });
        hi[0] = hi[0].min(z0 + rows.dim().0);
        if (0..3).any(|a| lo[a] >= hi[a]) || lo[0] < z0 {
            return out;
        }
        let dst: [usize; 3] = std::array::from_fn(|a| lo[a] + pad[a] - origin[a]);
        out.slice_mut(s![
            dst[0]..dst[0] + hi[0] - lo[0],
            dst[1]..dst[1] + hi[1] - lo[1],
            dst[2]..dst[2] + hi[2] - lo[2]
        ])
        .assign(&rows.slice(s![lo[0] - z0..hi[0] - z0, lo[1]..hi[1], lo[2]..hi[2]]));
        out
    }

    /// Crops accumulated logits back to the unpadded image.
    pub fn crop(&self, logits: &Array4<f32>) -> Array4<f32> {
        let [a, b, c] = self.pad.map(|x| x.0);
        let [z, y, x] = self.image_shape;
        logits
            .slice(s![.., a..a + z, b..b + y, c..c + x])
            .to_owned()
    }
}

/// How tile predictions are summed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accumulation {
    /// Exact integer sums (`statapp_nnunet::partial`): order-free, so a prediction split into
    /// parts adds up to the same bits (statapp's default).
    #[default]
    Fixed,
    /// float32 sums and weights in tile order (one process only).
    F32,
    /// nnU-Net's float16 sums and weights with its Gaussian scaled to 10, for bit-level parity.
    F16,
}

impl std::str::FromStr for Accumulation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fixed" => Ok(Self::Fixed),
            "f32" => Ok(Self::F32),
            "f16" => Ok(Self::F16),
            other => Err(format!("accumulation {other:?}: fixed, f32 or f16")),
        }
    }
}

/// Options of a prediction run.
#[derive(Debug, Clone, Copy)]
pub struct PredictOptions {
    /// Axes (0..3, of the network's input) test-time mirroring flips; none: no mirroring.
    pub mirror_axes: [bool; 3],
    /// Tiles per forward pass.
    pub tile_batch: usize,
    /// Tile step as a fraction of the patch (nnU-Net: 0.5).
    pub step: f64,
    pub accumulation: Accumulation,
}

impl Default for PredictOptions {
    fn default() -> Self {
        Self {
            mirror_axes: [false; 3],
            tile_batch: 1,
            step: 0.5,
            accumulation: Accumulation::Fixed,
        }
    }
}

impl PredictOptions {
    /// Mirroring over `axes` (a model's allowed axes, or none).
    pub fn mirror(mut self, axes: &[usize]) -> Self {
        self.mirror_axes = [0, 1, 2].map(|a| axes.contains(&a));
        self
    }

    /// The mirrored axes, ascending.
    pub fn mirrored(&self) -> Vec<usize> {
        (0..3).filter(|a| self.mirror_axes[*a]).collect()
    }
}

/// nnU-Net's mirror combinations (`itertools.combinations` of the allowed axes, by size), as
/// tensor axes (2..5).
fn mirror_combinations(axes: &[usize]) -> Vec<Vec<usize>> {
    let t: Vec<usize> = axes.iter().map(|a| a + 2).collect();
    let mut out = Vec::new();
    for size in 1..=t.len() {
        for mask in 0u32..(1 << t.len()) {
            if mask.count_ones() as usize == size {
                out.push(
                    (0..t.len())
                        .filter(|i| mask >> i & 1 == 1)
                        .map(|i| t[i])
                        .collect(),
                );
            }
        }
    }
    // lexicographic within a size, as itertools yields them
    out.sort_by(|a: &Vec<usize>, b: &Vec<usize>| a.len().cmp(&b.len()).then(a.cmp(b)));
    out
}

fn flip(x: Tensor<5>, axes: &[usize]) -> Tensor<5> {
    match axes {
        [a] => x.flip([*a]),
        [a, b] => x.flip([*a, *b]),
        [a, b, c] => x.flip([*a, *b, *c]),
        _ => x,
    }
}

/// Logits of a batch of tiles `(n, 1, z, y, x)`, averaged over mirrorings as nnU-Net's
/// `_internal_maybe_mirror_and_predict`: the plain prediction plus each flipped one, in order,
/// divided by their number.
fn predict_batch(net: &PlainConvUNet, x: Tensor<5>, axes: &[usize]) -> Tensor<5> {
    let combos = mirror_combinations(axes);
    let mut sum = net.predict(x.clone());
    for c in &combos {
        sum = sum + flip(net.predict(flip(x.clone(), c)), c);
    }
    if combos.is_empty() {
        sum
    } else {
        sum / (combos.len() + 1) as f64
    }
}

/// Runs the network on the tiles `range` of a padded image (`padded` is its box at `origin`) and
/// hands each tile's logits `(classes, patch)` with its start to `add`.
#[allow(clippy::too_many_arguments)]
fn for_each_tile(
    net: &PlainConvUNet,
    (padded, origin): (&Array3<f32>, [usize; 3]),
    sw: &SlidingWindow,
    range: std::ops::Range<usize>,
    opts: PredictOptions,
    num_classes: usize,
    device: &Device,
    mut add: impl FnMut([usize; 3], ArrayView4<f32>) -> Result<(), PredictError>,
) -> Result<(), PredictError> {
    let [pz, py, px] = sw.patch;
    let axes = opts.mirrored();
    for chunk in sw.tiles[range].chunks(opts.tile_batch.max(1)) {
        let mut values = Vec::with_capacity(chunk.len() * pz * py * px);
        for t in chunk {
            let [z, y, x] = std::array::from_fn(|a| t[a] - origin[a]);
            let tile = padded.slice(s![z..z + pz, y..y + py, x..x + px]);
            values.extend(tile.iter().copied());
        }
        let x = Tensor::<5>::from_data(
            TensorData::new(values, [chunk.len(), 1, pz, py, px]),
            device,
        );
        let flat = predict_batch(net, x, &axes)
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| PredictError::NetworkOutput(format!("{e:?}")))?;
        let per_tile = num_classes * pz * py * px;
        for (i, t) in chunk.iter().enumerate() {
            let part =
                flat.get(i * per_tile..(i + 1) * per_tile)
                    .ok_or(PredictError::OutputSize {
                        values: flat.len(),
                        classes: num_classes,
                    })?;
            let view = ArrayView4::from_shape((num_classes, pz, py, px), part)?;
            add(*t, view)?;
        }
    }
    Ok(())
}

/// A prediction that could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    /// The network's output tensor could not be read back as f32.
    #[error("prediction: network output is not f32 data: {0}")]
    NetworkOutput(String),
    /// The network's output does not hold `classes` maps of one patch per tile.
    #[error("prediction: network output holds {values} values, not {classes} classes per tile")]
    OutputSize { values: usize, classes: usize },
    #[error("prediction: array shape: {0}")]
    Shape(#[from] ndarray::ShapeError),
    #[error("prediction: {0}")]
    Partial(#[from] statapp_nnunet::partial::PartialError),
    /// This plan and case need the whole-volume export (their rows do not resample one by one).
    #[error("prediction: rows of this plan and case do not resample row by row")]
    NotRowWise,
    /// The row-by-row export was finished before every row of the crop box arrived.
    #[error("prediction: export received {received} rows, not the crop box's {expected}")]
    RowsMissing { received: usize, expected: usize },
    #[error("prediction output: {0}")]
    Volume(#[from] statapp_volume::VolumeError),
    #[error("prediction record: {0}")]
    Record(#[from] serde_json::Error),
}

/// Predicts the tiles `range` into exact sums over their box; `padded` is the padded image's box
/// at `origin` (the whole padded image, or at least `sw.tile_box(range)`). Parts of one image
/// add up (`Partial::add_into`) to the bits of predicting every tile at once, provided each part
/// starts at a multiple of `opts.tile_batch` (batches of tiles are computed alike).
pub fn predict_partial(
    net: &PlainConvUNet,
    padded: (&Array3<f32>, [usize; 3]),
    sw: &SlidingWindow,
    range: std::ops::Range<usize>,
    opts: PredictOptions,
    device: &Device,
) -> Result<Partial, PredictError> {
    let num_classes = net.num_classes();
    let (origin, shape) = sw.tile_box(range.clone());
    let mut acc = Partial::new(num_classes, origin, shape);
    let g = integer_gaussian(sw.patch);
    for_each_tile(net, padded, sw, range, opts, num_classes, device, |t, v| {
        Ok(acc.add(t, v, &g)?)
    })?;
    Ok(acc)
}

/// Whole-image logits `(classes, z, y, x)` on the preprocessed grid.
pub fn predict_logits(
    net: &PlainConvUNet,
    data: &Array3<f32>,
    patch: [usize; 3],
    opts: PredictOptions,
    num_classes: usize,
    device: &Device,
) -> Result<Array4<f32>, PredictError> {
    let shape = [data.dim().0, data.dim().1, data.dim().2];
    let sw = SlidingWindow::new(shape, patch, opts.step);
    let padded = sw.pad_image(data);
    let all = 0..sw.tiles.len();
    let boxed = (&padded, [0; 3]);
    let logits = match opts.accumulation {
        Accumulation::Fixed => predict_partial(net, boxed, &sw, all, opts, device)?.finish(),
        Accumulation::F32 => {
            let mut acc = Accumulator::new(num_classes, sw.padded_shape);
            for_each_tile(net, boxed, &sw, all, opts, num_classes, device, |t, v| {
                acc.add(t, v, &sw.gaussian);
                Ok(())
            })?;
            acc.finish()
        }
        Accumulation::F16 => {
            let g = gaussian_scaled(patch, 1.0 / 8.0, 10.0);
            let mut acc = Accumulator16::new(num_classes, sw.padded_shape);
            for_each_tile(net, boxed, &sw, all, opts, num_classes, device, |t, v| {
                acc.add(t, v, &g);
                Ok(())
            })?;
            acc.finish()
        }
    };
    Ok(sw.crop(&logits))
}

/// Softmax over the class axis.
pub fn softmax(logits: &Array4<f32>) -> Array4<f32> {
    let mut out = logits.clone();
    let (c, z, y, x) = logits.dim();
    for k in 0..z {
        for j in 0..y {
            for i in 0..x {
                let m = (0..c)
                    .map(|ch| logits[[ch, k, j, i]])
                    .fold(f32::NEG_INFINITY, f32::max);
                let e: Vec<f64> = (0..c)
                    .map(|ch| f64::from(logits[[ch, k, j, i]] - m).exp())
                    .collect();
                let s: f64 = e.iter().sum();
                for ch in 0..c {
                    out[[ch, k, j, i]] = (e[ch] / s) as f32;
                }
            }
        }
    }
    out
}
