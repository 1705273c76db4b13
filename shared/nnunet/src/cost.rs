//! What a sliding-window prediction costs before it runs: tiles, network FLOPs per tile, how the
//! tiles split into parts under a time budget, and wall time, GB-seconds and dollars for three ways
//! of running it (fan-out over N functions, one function, one GPU instance).

use crate::model_dir::UNetConfig;
use crate::partial::bounding_box;
use crate::sliding::{padding, tiles};
use serde::Serialize;

/// Forward-pass FLOPs (2 per multiply-add) of the PlainConvUNet on one `patch`: every
/// convolution, the transposed convolutions and the 1x1x1 head; norms and activations are
/// memory-bound and left out.
pub fn tile_flops(net: &UNetConfig, patch: [usize; 3]) -> f64 {
    let mut size = patch.map(|v| v as f64);
    let mut sizes = Vec::new();
    let mut macs = 0.0;
    let mut cin = net.in_channels as f64;
    for (s, &feat) in net.features.iter().enumerate() {
        for a in 0..3 {
            size[a] /= net.strides[s][a] as f64;
        }
        let voxels: f64 = size.iter().product();
        let k: f64 = net.kernel_sizes[s].iter().map(|v| *v as f64).product();
        let f = feat as f64;
        macs += voxels * k * cin * f;
        macs += voxels * k * f * f * (net.n_conv[s].saturating_sub(1)) as f64;
        sizes.push(voxels);
        cin = f;
    }
    // decoder: stage s (from the deepest but one up) upsamples stage s+1 and convolves the concat
    let stages = net.features.len().saturating_sub(1);
    for (s, &n) in net.n_conv_decoder.iter().enumerate().take(stages).rev() {
        let (f, below) = (net.features[s] as f64, net.features[s + 1] as f64);
        let k: f64 = net.kernel_sizes[s].iter().map(|v| *v as f64).product();
        let up: f64 = net.strides[s + 1].iter().map(|v| *v as f64).product();
        let n = n as f64;
        macs += sizes[s + 1] * up * below * f;
        macs += sizes[s] * k * (2.0 * f * f + f * f * (n - 1.0));
    }
    macs += sizes[0] * net.features[0] as f64 * net.num_classes as f64;
    2.0 * macs
}

/// Lambda's price, arm64, us-east-1 (aws.amazon.com/lambda/pricing, first 7.5 billion GB-s a
/// month; x86-64 costs 0.0000166667 per GB-s).
pub const LAMBDA_USD_PER_GB_S: f64 = 0.000_013_333_4;
pub const LAMBDA_USD_PER_REQUEST: f64 = 0.000_000_2;
/// One g5.xlarge on demand (NVIDIA A10G), us-east-1.
pub const GPU_USD_PER_HOUR: f64 = 1.006;

/// The prediction to price.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// Preprocessed image shape (the network's grid).
    pub shape: [usize; 3],
    pub patch: [usize; 3],
    pub step: f64,
    /// Forward passes per tile (1 + mirrored copies).
    pub views: usize,
    pub flops_per_view: f64,
}

impl Workload {
    pub fn tiles(&self) -> usize {
        self.tile_starts().len()
    }

    /// The sliding window's tiles on the padded grid, in the infer stage's order.
    pub fn tile_starts(&self) -> Vec<[usize; 3]> {
        let pad = padding(self.shape, self.patch);
        let padded = std::array::from_fn(|a| self.shape[a] + pad[a].0 + pad[a].1);
        tiles(padded, self.patch, self.step)
    }

    /// Seconds of one tile (every view) at `gflops` sustained.
    pub fn seconds_per_tile(&self, gflops: f64) -> f64 {
        self.flops_per_view * self.views as f64 / (gflops * 1e9)
    }
}

/// Splits `tiles` into the fewest contiguous parts of at most `budget_s` estimated seconds each,
/// every part starting at a multiple of `batch` (tile batches are computed alike, so parts add
/// up to the bits of one process); `(start, end)` per part.
pub fn split(
    tiles: usize,
    seconds_per_tile: f64,
    budget_s: f64,
    batch: usize,
) -> Vec<(usize, usize)> {
    let batch = batch.max(1);
    let fit = (budget_s / seconds_per_tile.max(f64::MIN_POSITIVE)).floor() as usize;
    // whole batches within the budget, at least one
    let per_part = (fit / batch * batch).max(batch);
    split_into(tiles, tiles.div_ceil(per_part), batch)
}

/// [`split`], then more parts until the exact sums of every part (i64 per channel over the box of
/// its tiles, `starts` of size `patch`) take at most `max_sums_bytes`: a job must fit its
/// function's memory whatever the time estimate says.
pub fn split_bounded(
    starts: &[[usize; 3]],
    patch: [usize; 3],
    channels: usize,
    (seconds_per_tile, budget_s): (f64, f64),
    batch: usize,
    max_sums_bytes: f64,
) -> Vec<(usize, usize)> {
    let tiles = starts.len();
    let bytes = |(a, b): (usize, usize)| {
        let voxels: usize = bounding_box(&starts[a..b], patch).1.iter().product();
        (voxels * channels * std::mem::size_of::<i64>()) as f64
    };
    let mut ranges = split(tiles, seconds_per_tile, budget_s, batch);
    let batches = tiles.div_ceil(batch.max(1));
    while ranges.len() < batches && ranges.iter().any(|r| bytes(*r) > max_sums_bytes) {
        ranges = split_into(tiles, (ranges.len() + 1).max(ranges.len() * 5 / 4), batch);
    }
    ranges
}

/// Splits `tiles` into `count` contiguous parts (fewer if there are fewer batches), spread evenly
/// in whole batches of `batch` tiles.
pub fn split_into(tiles: usize, count: usize, batch: usize) -> Vec<(usize, usize)> {
    let batch = batch.max(1);
    let batches = tiles.div_ceil(batch);
    let count = count.clamp(1, batches.max(1));
    (0..count)
        .map(|i| {
            let (a, b) = (
                i * batches / count * batch,
                (i + 1) * batches / count * batch,
            );
            (a.min(tiles), b.min(tiles))
        })
        .filter(|(a, b)| a < b)
        .collect()
}

/// Where the cost figures come from; every field is printed with the estimate.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Assumptions {
    /// Sustained GFLOP/s of one function (measured with `statapp bench tile`).
    pub function_gflops: f64,
    pub function_memory_mb: f64,
    /// Per-part overhead: start, download of the image box and weights, upload of the sums.
    pub part_overhead_s: f64,
    /// The gather's read throughput (MB/s) and export time per million voxels.
    pub gather_mb_per_s: f64,
    pub export_s_per_mvoxel: f64,
    pub gpu_seconds_per_tile: f64,
    pub max_function_s: f64,
}

/// One way of running the prediction.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunOption {
    pub name: String,
    pub tiles: usize,
    pub parts: usize,
    pub wall_seconds: f64,
    pub gb_seconds: f64,
    pub usd: f64,
    /// Whether every job stays within the function time limit.
    pub fits: bool,
}

/// Fan-out over `workers` functions, one function, and one GPU instance.
pub fn estimate(w: &Workload, a: &Assumptions, workers: usize) -> Vec<RunOption> {
    let n = w.tiles();
    let per_tile = w.seconds_per_tile(a.function_gflops);
    let gb = a.function_memory_mb / 1024.0;
    let voxels: f64 = w.shape.iter().map(|v| *v as f64).product();
    let classes_bytes = 5.0 * 8.0; // 4 classes + weight, i64
    let export = voxels / 1e6 * a.export_s_per_mvoxel;
    // fan-out: every worker takes ceil(parts / workers) parts of ~equal tiles
    let workers = workers.max(1);
    let per_part_tiles = n.div_ceil(workers).max(1);
    let parts = n.div_ceil(per_part_tiles);
    let part_s = per_part_tiles as f64 * per_tile + a.part_overhead_s;
    // the gather reads the parts' sums: each part covers its tiles' box (about patch * tiles)
    let patch_voxels: f64 = w.patch.iter().map(|v| *v as f64).product();
    let part_bytes = (n as f64 * patch_voxels).max(voxels) * classes_bytes;
    let gather_s = part_bytes / 1e6 / a.gather_mb_per_s + export;
    let fan_gb_s = (parts as f64 * part_s + gather_s) * gb;
    let one_s = n as f64 * per_tile + export + a.part_overhead_s;
    let gpu_s = n as f64 * a.gpu_seconds_per_tile + export;
    let option = |name: &str, parts, wall: f64, gb_s: f64, requests: f64, fits| RunOption {
        name: name.to_string(),
        tiles: n,
        parts,
        wall_seconds: wall,
        gb_seconds: gb_s,
        usd: gb_s * LAMBDA_USD_PER_GB_S + requests * LAMBDA_USD_PER_REQUEST,
        fits,
    };
    let mut gpu = option("gpu", 1, gpu_s, 0.0, 0.0, true);
    gpu.usd = gpu_s / 3600.0 * GPU_USD_PER_HOUR;
    vec![
        option(
            &format!("fan-out over {workers} functions"),
            parts,
            part_s + gather_s,
            fan_gb_s,
            parts as f64 + 2.0,
            part_s <= a.max_function_s && gather_s <= a.max_function_s,
        ),
        option(
            "one function",
            1,
            one_s,
            one_s * gb,
            1.0,
            one_s <= a.max_function_s,
        ),
        gpu,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flops_count_every_convolution() {
        let net = UNetConfig {
            in_channels: 1,
            num_classes: 2,
            features: vec![4, 8],
            kernel_sizes: vec![[3, 3, 3], [1, 3, 3]],
            strides: vec![[1, 1, 1], [2, 2, 2]],
            n_conv: vec![2, 2],
            n_conv_decoder: vec![2],
            layers: Default::default(),
        };
        let (v0, v1) = (4.0 * 8.0 * 8.0, 2.0 * 4.0 * 4.0);
        let encoder = v0 * 27.0 * 4.0 + v0 * 27.0 * 16.0 + v1 * 9.0 * 4.0 * 8.0 + v1 * 9.0 * 64.0;
        // transposed conv 8 -> 4 with a 2x2x2 kernel, then convs 8 -> 4 and 4 -> 4, head 4 -> 2
        let decoder = v1 * 8.0 * 8.0 * 4.0 + v0 * 27.0 * (8.0 * 4.0 + 16.0) + v0 * 4.0 * 2.0;
        assert_eq!(tile_flops(&net, [4, 8, 8]), 2.0 * (encoder + decoder));
    }

    #[test]
    fn parts_cover_the_tiles_in_whole_batches() {
        for (tiles, spt, budget, batch) in
            [(729, 20.0, 600.0, 1), (10, 1.0, 3.0, 2), (5, 1.0, 100.0, 1)]
        {
            let parts = split(tiles, spt, budget, batch);
            assert_eq!(parts.first().map(|p| p.0), Some(0));
            assert_eq!(parts.last().map(|p| p.1), Some(tiles));
            for w in parts.windows(2) {
                assert_eq!(w[0].1, w[1].0);
            }
            for (a, b) in &parts {
                assert_eq!(a % batch, 0);
                assert!((b - a) as f64 * spt <= budget.max(spt * batch as f64));
            }
        }
        assert_eq!(split(729, 20.0, 600.0, 1).len(), 25);
        assert_eq!(split(5, 1.0, 100.0, 1), vec![(0, 5)]);
    }

    #[test]
    fn bounded_parts_fit_their_memory() {
        let w = Workload {
            shape: [400, 300, 300],
            patch: [96, 96, 96],
            step: 0.5,
            views: 1,
            flops_per_view: 1e9,
        };
        let starts = w.tile_starts();
        let patch_bytes = 96.0 * 96.0 * 96.0 * 5.0 * 8.0;
        // time alone allows one part; the sums of the whole grid take ~1.4 GB
        assert_eq!(split(starts.len(), 0.01, 600.0, 1).len(), 1);
        for limit in [4.0 * patch_bytes, 20.0 * patch_bytes] {
            let parts = split_bounded(&starts, w.patch, 5, (0.01, 600.0), 1, limit);
            assert!(parts.len() > 1);
            assert_eq!((parts[0].0, parts[parts.len() - 1].1), (0, starts.len()));
            for (a, b) in &parts {
                let voxels: usize = bounding_box(&starts[*a..*b], w.patch).1.iter().product();
                assert!(voxels as f64 * 40.0 <= limit, "{a}..{b}");
            }
        }
    }
}
