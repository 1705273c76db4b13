//! The network: seeded initialisation, deep-supervision shapes, checkpoints, and tile-range
//! inference merged from several ranges equal to whole-volume inference.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use burn::tensor::{Device, Tensor, TensorData};
use ndarray::Array3;
use statapp_model::checkpoint::{load_weights, save_weights};
use statapp_model::predict::{PredictOptions, SlidingWindow, predict_logits, predict_partial};
use statapp_model::{PlainConvUNet, UNetConfig};
use statapp_nnunet::partial::Partial;
use statapp_nnunet::plans_file::Layers;

fn tiny() -> UNetConfig {
    UNetConfig {
        in_channels: 1,
        num_classes: 4,
        features: vec![4, 8, 16],
        kernel_sizes: vec![[1, 3, 3], [3, 3, 3], [3, 3, 3]],
        strides: vec![[1, 1, 1], [1, 2, 2], [2, 2, 2]],
        n_conv: vec![2, 2, 2],
        n_conv_decoder: vec![2, 2],
        layers: Layers::default(),
    }
}

fn weights(net: &PlainConvUNet) -> Vec<Vec<f32>> {
    net.conv_weights()
}

fn input(shape: [usize; 3]) -> Array3<f32> {
    Array3::from_shape_fn((shape[0], shape[1], shape[2]), |(z, y, x)| {
        ((z * 13 + y * 7 + x) as f32 * 0.21).sin()
    })
}

#[test]
fn seeded_init_is_reproducible() {
    let d = Device::flex();
    let a = PlainConvUNet::new(&tiny(), 112233, &d);
    let b = PlainConvUNet::new(&tiny(), 112233, &d);
    let c = PlainConvUNet::new(&tiny(), 445566, &d);
    assert!(weights(&a) == weights(&b), "same seed, different weights");
    assert!(weights(&a) != weights(&c), "different seeds, same weights");
    // He init: std sqrt(2 / fan_in) (a = 0.01); the second conv maps 4 channels with 1x3x3 kernels
    let w = &weights(&a)[1];
    let std = (w.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / w.len() as f64).sqrt();
    let expected = (2.0 / (1.0 + 1e-4f64)).sqrt() / (4.0 * 9.0f64).sqrt();
    assert!(
        (std / expected - 1.0).abs() < 0.15,
        "std {std} vs {expected}"
    );
}

#[test]
fn deep_supervision_heads_have_decreasing_resolution() {
    let d = Device::flex();
    let net = PlainConvUNet::new(&tiny(), 1, &d);
    let x = Tensor::<5>::from_data(
        TensorData::new(vec![0.5f32; 2 * 8 * 16 * 16], [2, 1, 8, 16, 16]),
        &d,
    );
    let outs = net.forward(x);
    let dims: Vec<[usize; 5]> = outs.iter().map(|t| t.dims()).collect();
    assert_eq!(dims, vec![[2, 4, 8, 16, 16], [2, 4, 8, 8, 8]]);
}

#[test]
fn checkpoint_round_trip_predicts_the_same() {
    let d = Device::flex();
    let net = PlainConvUNet::new(&tiny(), 7, &d);
    let dir = tempfile::tempdir().unwrap();
    save_weights(&net, dir.path(), "checkpoint_final.bpk").unwrap();
    let back = load_weights(&tiny(), &dir.path().join("checkpoint_final.bpk"), &d).unwrap();
    assert!(weights(&net) == weights(&back), "weights changed on reload");
    let data = input([6, 20, 20]);
    let opts = PredictOptions::default();
    let a = predict_logits(&net, &data, [4, 16, 16], opts, 4, &d).unwrap();
    let b = predict_logits(&back, &data, [4, 16, 16], opts, 4, &d).unwrap();
    assert_eq!(a, b);
    assert!(load_weights(&tiny(), &dir.path().join("missing.bpk"), &d).is_err());
}

#[test]
fn tile_ranges_add_up_to_the_bits_of_whole_volume_inference() {
    let d = Device::flex();
    let net = PlainConvUNet::new(&tiny(), 3, &d);
    let data = input([9, 27, 30]);
    let sw = SlidingWindow::new([9, 27, 30], [4, 16, 16], 0.5);
    let padded = sw.pad_image(&data);
    let n = sw.tiles.len();
    assert!(n >= 8, "{n} tiles");
    let opts = PredictOptions {
        tile_batch: 1,
        ..PredictOptions::default()
    }
    .mirror(&[0, 1, 2]);
    let whole = predict_partial(&net, (&padded, [0; 3]), &sw, 0..n, opts, &d).unwrap();
    let logits = predict_logits(&net, &data, [4, 16, 16], opts, 4, &d).unwrap();
    assert_eq!(sw.crop(&whole.finish()), logits);
    // parts from their own boxes of the padded image, added in reverse order
    let mut merged = Partial::new(4, [0; 3], sw.padded_shape);
    for r in [n - 1..n, 5..n - 1, 2..5, 0..2] {
        let (origin, shape) = sw.tile_box(r.clone());
        let boxed = sw.pad_box(data.view(), 0, origin, shape);
        predict_partial(&net, (&boxed, origin), &sw, r, opts, &d)
            .unwrap()
            .add_into(&mut merged);
    }
    assert_eq!(merged, whole);
    // batching tiles changes float32 rounding only
    let batched = PredictOptions {
        tile_batch: 3,
        ..opts
    };
    let b = predict_partial(&net, (&padded, [0; 3]), &sw, 0..n, batched, &d)
        .unwrap()
        .finish();
    let diff = whole
        .finish()
        .iter()
        .zip(b.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(diff <= 1e-4, "batching changed the logits by {diff}");
}
