//! Training steps timed on a synthetic batch (`statapp-gpu-trainer --bench-steps`): the network,
//! loss, gradient clipping and optimizer of [`super::train`], without data loading, for the
//! benchmark beside PyTorch on the same device (`tools/bench_gpu_train.sh`).

use super::{
    Batcher, GRAD_CLIP_NORM, HostBatch, NUM_CLASSES, clip, deep_supervision_strides, loss,
};
use crate::rng::Rng;
use crate::unet::{PlainConvUNet, UNetConfig};
use burn::optim::GradientsParams;
use burn::tensor::{Device, TensorData};
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
    let [pz, py, px] = patch;
    let mut times = Vec::with_capacity(steps);
    for _ in 0..steps {
        let started = Instant::now();
        let batch = HostBatch {
            image: TensorData::new(image.clone(), [batch_size, 1, pz, py, px]),
            targets: batcher
                .scales
                .iter()
                .map(|s| batcher.one_hot(&labels, *s))
                .collect(),
            labels: Vec::new(),
        }
        .into_device(&train_device);
        let loss = loss::deep_supervision_loss(
            net.forward(batch.image),
            batch.targets,
            batcher.batch_dice,
        );
        // reading the loss waits for the device, as training's loss sum does
        let _ = loss.clone().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        let (grads, _) = clip::clip_global_norm(&net, grads, GRAD_CLIP_NORM);
        net = optim.step(0.01, net, grads);
        times.push(started.elapsed().as_secs_f64());
    }
    times
}
