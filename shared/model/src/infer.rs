//! Whole-case inference as nnU-Net's predictor does it: the image transposed by the plan's
//! `transpose_forward`, preprocessed, sliding-window logits, logits resampled back to the
//! cropped grid (linear, nnU-Net's export), softmax, pasted into the original grid, transposed
//! back by `transpose_backward`, and the argmax labels.

use crate::predict::{Accumulation, PredictError, PredictOptions, predict_logits, softmax};
use crate::unet::PlainConvUNet;
use burn::tensor::Device;
use ndarray::{Array3, Array4, ArrayView3};
use statapp_nnunet::plans_file::{Configuration, Plans};
use statapp_nnunet::preprocess::{CaseProperties, preprocess, transpose, uncrop};
use statapp_nnunet::resample::{resample_image, separate_axis};
use statapp_volume::Volume;

/// Per-class probabilities on the original grid (one map per class) and the labels.
#[derive(Debug, Clone)]
pub struct CasePrediction {
    pub probabilities: Vec<Array3<f32>>,
    pub labels: Array3<u8>,
}

/// Predicts one CT image (HU, `[z, y, x]` as stored, with its spacing).
pub fn predict_case(
    net: &PlainConvUNet,
    plans: &Plans,
    config: &Configuration,
    image: &Volume<f32>,
    opts: PredictOptions,
    device: &Device,
) -> Result<CasePrediction, PredictError> {
    let num_classes = net.num_classes();
    let forward = plans.transpose_forward;
    let spacing = image.geometry().spacing_zyx();
    let image = transpose(image.data(), forward);
    let spacing = forward.map(|a| spacing[a]);
    let pre = preprocess(&image, None, spacing, config.spacing, &plans.intensity);
    let logits = predict_logits(net, &pre.data, config.patch_size, opts, num_classes, device)?;
    export_logits(&logits, plans, config, &pre.properties, opts.accumulation)
}

/// nnU-Net's export of logits `(classes, z, y, x)` on the network's grid (unpadded): logits
/// resampled linearly to the cropped grid, softmax, pasted into the original grid, transposed
/// back by `transpose_backward`, and the argmax labels.
pub fn export_logits(
    logits: &Array4<f32>,
    plans: &Plans,
    config: &Configuration,
    props: &CaseProperties,
    accumulation: Accumulation,
) -> Result<CasePrediction, PredictError> {
    let cropped = props.shape_after_cropping_and_before_resampling;
    // export: current spacing is the plan's, the new one the image's
    let separate = separate_axis(config.spacing, props.spacing);
    // nnU-Net resamples the logits, not the probabilities, then applies the softmax; its
    // resampling writes into an array of the logits' type (float16 in its own accumulation)
    let f16 = accumulation == Accumulation::F16;
    let resampled: Vec<Array3<f32>> = logits
        .outer_iter()
        .map(|c| {
            let mut r = resample_image(&c.to_owned(), cropped, 1, separate);
            if f16 {
                r.mapv_inplace(|v| half::f16::from_f32(v).to_f32());
            }
            r
        })
        .collect();
    let views: Vec<_> = resampled.iter().map(|a| a.view()).collect();
    let stacked: Array4<f32> = ndarray::stack(ndarray::Axis(0), &views)?;
    drop(resampled);
    let probs = softmax(&stacked);
    drop(stacked);
    let backward = plans.transpose_backward;
    let probabilities: Vec<Array3<f32>> = probs
        .outer_iter()
        .enumerate()
        .map(|(c, p)| {
            let full = uncrop(&p.to_owned(), props, if c == 0 { 1.0 } else { 0.0 });
            transpose(&full, backward)
        })
        .collect();
    let labels = argmax(probabilities.iter().map(|p| p.view()));
    Ok(CasePrediction {
        probabilities,
        labels,
    })
}

/// The most probable class per voxel; ties go to the lower class (numpy's argmax).
pub fn argmax<'a>(maps: impl IntoIterator<Item = ArrayView3<'a, f32>>) -> Array3<u8> {
    let maps: Vec<ArrayView3<f32>> = maps.into_iter().collect();
    let Some(first) = maps.first() else {
        return Array3::zeros((0, 0, 0));
    };
    let mut labels = Array3::zeros(first.dim());
    ndarray::Zip::indexed(&mut labels).for_each(|idx, l| {
        let mut best = 0;
        for c in 1..maps.len() {
            if maps[c][idx] > maps[best][idx] {
                best = c;
            }
        }
        *l = best as u8;
    });
    labels
}
