//! Training steps timed on a synthetic batch (`statapp-gpu-trainer --bench-steps`): the network,
//! loss, gradient clipping and optimizer of [`super::train`], without data loading, for the
//! benchmark beside PyTorch on the same device (`tools/bench_gpu_train.sh`).

use super::{Batcher, NUM_CLASSES, deep_supervision_strides};
use crate::rng::Rng;
use crate::unet::{PlainConvUNet, UNetConfig};
use burn::tensor::Device;
use std::time::Instant;

/// Seconds of each of `steps` training steps (host-to-device copy of the batch, forward, Dice +
/// CE deep-supervision loss read back, backward, clipping, SGD step) on `device`.
pub fn time_steps(
    network: &UNetConfig,
    patch: [usize; 3],
    batch_size: usize,
    batch_dice: bool,
    steps: usize,
    device: &Device,
) -> Vec<f64> {
    let train_device = device.clone().autodiff();
    let mut net = PlainConvUNet::new(network, 1, &train_device);
    let mut optim = super::sgd();
    let batcher = Batcher {
        patch,
        batch_size,
        scales: deep_supervision_strides(network),
        batch_dice,
    };
    let mut rng = Rng::new(1);
    let n = batch_size * patch.iter().product::<usize>();
    let image: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
    let labels: Vec<u8> = (0..n).map(|_| rng.below(NUM_CLASSES) as u8).collect();
    let mut times = Vec::with_capacity(steps);
    for _ in 0..steps {
        let started = Instant::now();
        let batch = batcher
            .host_batch(image.clone(), labels.clone())
            .into_device(&train_device);
        (net, _) = super::step(net, &mut optim, batch, &batcher, 0.01);
        times.push(started.elapsed().as_secs_f64());
    }
    times
}
