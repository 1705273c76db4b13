//! Sliding-window prediction with the network: nnU-Net's tiling and Gaussian weighting
//! (`statapp_nnunet::sliding`), tile batching, optional mirroring over all axis flips, and any
//! range of tiles, so that one volume can be split across workers and merged exactly.

use crate::unet::PlainConvUNet;
use burn::tensor::{Device, Tensor, TensorData};
use ndarray::{Array3, Array4, s};
use statapp_nnunet::sliding::{Accumulator, gaussian, padding, tiles};

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

    /// Crops accumulated logits back to the unpadded image.
    pub fn crop(&self, logits: &Array4<f32>) -> Array4<f32> {
        let [a, b, c] = self.pad.map(|x| x.0);
        let [z, y, x] = self.image_shape;
        logits
            .slice(s![.., a..a + z, b..b + y, c..c + x])
            .to_owned()
    }
}

/// Options of a prediction run.
#[derive(Debug, Clone, Copy)]
pub struct PredictOptions {
    /// Average over the 8 mirrorings of the tile (nnU-Net's test-time augmentation).
    pub mirror: bool,
    /// Tiles per forward pass.
    pub tile_batch: usize,
    /// Tile step as a fraction of the patch (nnU-Net: 0.5).
    pub step: f64,
}

impl Default for PredictOptions {
    fn default() -> Self {
        Self {
            mirror: false,
            tile_batch: 1,
            step: 0.5,
        }
    }
}

const FLIPS: [&[usize]; 8] = [&[], &[2], &[3], &[4], &[2, 3], &[2, 4], &[3, 4], &[2, 3, 4]];

fn flip(x: Tensor<5>, axes: &[usize]) -> Tensor<5> {
    match axes {
        [] => x,
        [a] => x.flip([*a]),
        [a, b] => x.flip([*a, *b]),
        [a, b, c] => x.flip([*a, *b, *c]),
        _ => x,
    }
}

/// Logits of a batch of tiles `(n, 1, z, y, x)`, averaged over mirrorings when asked.
fn predict_batch(net: &PlainConvUNet, x: Tensor<5>, mirror: bool) -> Tensor<5> {
    if !mirror {
        return net.predict(x);
    }
    let mut sum: Option<Tensor<5>> = None;
    for axes in FLIPS {
        let y = flip(net.predict(flip(x.clone(), axes)), axes);
        sum = Some(match sum {
            Some(s) => s + y,
            None => y,
        });
    }
    sum.map_or_else(|| net.predict(x), |s| s / FLIPS.len() as f64)
}

/// Predicts the tiles `range` of a padded image into a fresh accumulator.
pub fn predict_tiles(
    net: &PlainConvUNet,
    padded: &Array3<f32>,
    sw: &SlidingWindow,
    range: std::ops::Range<usize>,
    opts: PredictOptions,
    num_classes: usize,
    device: &Device,
) -> Accumulator {
    let mut acc = Accumulator::new(num_classes, sw.padded_shape);
    let [pz, py, px] = sw.patch;
    let tiles = &sw.tiles[range];
    for chunk in tiles.chunks(opts.tile_batch.max(1)) {
        let mut values = Vec::with_capacity(chunk.len() * pz * py * px);
        for t in chunk {
            let tile = padded.slice(s![t[0]..t[0] + pz, t[1]..t[1] + py, t[2]..t[2] + px]);
            values.extend(tile.iter().copied());
        }
        let x = Tensor::<5>::from_data(
            TensorData::new(values, [chunk.len(), 1, pz, py, px]),
            device,
        );
        let logits = predict_batch(net, x, opts.mirror).into_data();
        let flat: Vec<f32> = logits
            .as_slice::<f32>()
            .map(<[f32]>::to_vec)
            .unwrap_or_default();
        let per_tile = num_classes * pz * py * px;
        for (i, t) in chunk.iter().enumerate() {
            let part = &flat[i * per_tile..(i + 1) * per_tile];
            if let Ok(view) = ndarray::ArrayView4::from_shape((num_classes, pz, py, px), part) {
                acc.add(*t, view, &sw.gaussian);
            }
        }
    }
    acc
}

/// Whole-image logits `(classes, z, y, x)` on the preprocessed grid.
pub fn predict_logits(
    net: &PlainConvUNet,
    data: &Array3<f32>,
    patch: [usize; 3],
    opts: PredictOptions,
    num_classes: usize,
    device: &Device,
) -> Array4<f32> {
    let shape = [data.dim().0, data.dim().1, data.dim().2];
    let sw = SlidingWindow::new(shape, patch, opts.step);
    let padded = sw.pad_image(data);
    let acc = predict_tiles(
        net,
        &padded,
        &sw,
        0..sw.tiles.len(),
        opts,
        num_classes,
        device,
    );
    sw.crop(&acc.finish())
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
