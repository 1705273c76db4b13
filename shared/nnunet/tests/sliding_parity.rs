//! Tile positions and the Gaussian importance map against nnunetv2 2.8.1
//! (`tools/nnunet_reference.py sliding`). Both must match exactly: the Gaussian is compared after
//! float16 rounding, which is what nnU-Net uses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ndarray::{Array3, Array4};
use serde_json::Value;
use statapp_nnunet::sliding::{Accumulator, gaussian, steps, tiles};

fn fixture() -> Value {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sliding.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn triple(v: &Value) -> [usize; 3] {
    let a = v.as_array().unwrap();
    [0, 1, 2].map(|i| a[i].as_u64().unwrap() as usize)
}

#[test]
fn tile_starts_match_nnunet() {
    let f = fixture();
    let cases = f["steps"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for c in cases {
        let got = steps(
            triple(&c["image"]),
            triple(&c["tile"]),
            c["step"].as_f64().unwrap(),
        );
        let want: Vec<Vec<usize>> = c["starts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                a.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap() as usize)
                    .collect()
            })
            .collect();
        assert_eq!(got.to_vec(), want, "{c}");
    }
}

#[test]
fn gaussian_matches_nnunet_float16() {
    let f = fixture();
    for g in f["gaussians"].as_array().unwrap() {
        let tile = triple(&g["tile"]);
        let ours = gaussian(tile, 1.0 / 8.0);
        let want: Vec<f32> = g["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(ours.len(), want.len());
        for (i, (a, b)) in ours.iter().zip(&want).enumerate() {
            assert_eq!(a, b, "tile {tile:?}, voxel {i}");
        }
    }
    let big = &f["gaussian_128"];
    let ours = gaussian([128, 128, 128], 1.0 / 8.0);
    assert_eq!(f64::from(ours[[0, 0, 0]]), big["corner"].as_f64().unwrap());
    assert_eq!(
        f64::from(ours.iter().copied().fold(f32::INFINITY, f32::min)),
        big["min"].as_f64().unwrap()
    );
    for s in big["samples"].as_array().unwrap() {
        let idx = [0, 1, 2].map(|i| s[i].as_u64().unwrap() as usize);
        assert_eq!(f64::from(ours[idx]), s[3].as_f64().unwrap(), "{idx:?}");
    }
    let sum: f64 = ours.iter().map(|v| f64::from(*v)).sum();
    assert!((sum - big["sum"].as_f64().unwrap()).abs() < 1e-6 * sum);
}

/// A deterministic stand-in for a network: each output channel a different smooth function of
/// the tile's input values and positions (the real U-Net comes with the model crate).
fn fake_model(input: &Array3<f32>, start: [usize; 3], tile: [usize; 3]) -> Array4<f32> {
    Array4::from_shape_fn((2, tile[0], tile[1], tile[2]), |(c, z, y, x)| {
        let v = input[[start[0] + z, start[1] + y, start[2] + x]];
        (v * (c as f32 + 1.0)).sin() + 0.01 * (z + y + x) as f32
    })
}

#[test]
fn merged_tile_ranges_equal_whole_volume_inference() {
    let image = [37, 50, 61];
    let tile = [16, 24, 24];
    let input = Array3::from_shape_fn((image[0], image[1], image[2]), |(z, y, x)| {
        ((z * 7 + y * 3 + x) as f32 * 0.37).cos()
    });
    let g = gaussian(tile, 1.0 / 8.0);
    let all = tiles(image, tile, 0.5);
    assert!(all.len() > 10);
    let run = |range: std::ops::Range<usize>| {
        let mut acc = Accumulator::new(2, image);
        for t in &all[range] {
            acc.add(*t, fake_model(&input, *t, tile).view(), &g);
        }
        acc
    };
    let whole = run(0..all.len()).finish();
    let cuts = [0, 3, 4, all.len() / 2, all.len() - 1, all.len()];
    let mut merged = run(cuts[0]..cuts[1]);
    for w in cuts[1..].windows(2) {
        merged.merge(&run(w[0]..w[1]));
    }
    let merged = merged.finish();
    let max_diff = whole
        .iter()
        .zip(merged.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(max_diff <= 1e-5, "max difference {max_diff}");
    // every voxel is covered by at least one tile
    assert!(whole.iter().all(|v| v.is_finite()));
}
