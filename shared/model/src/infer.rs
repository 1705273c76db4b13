//! Whole-case inference: preprocess a CT with the plan, sliding-window logits, logits resampled
//! back to the original grid (linear, as nnU-Net's export), softmax, and the argmax labels.

use crate::predict::{PredictOptions, predict_logits};
use crate::unet::PlainConvUNet;
use burn::tensor::Device;
use ndarray::{Array3, Array4};
use statapp_nnunet::plans_file::{Configuration, Plans};
use statapp_nnunet::preprocess::{preprocess, uncrop};
use statapp_nnunet::resample::{resample_image, separate_axis};

/// Per-class probabilities on the original grid (`classes` maps) and the labels.
#[derive(Debug, Clone)]
pub struct CasePrediction {
    pub probabilities: Vec<Array3<f32>>,
    pub labels: Array3<u8>,
}

/// Predicts one CT image (HU, `[z, y, x]`, spacing in mm).
pub fn predict_case(
    net: &PlainConvUNet,
    plans: &Plans,
    config: &Configuration,
    image: &Array3<f32>,
    spacing: [f64; 3],
    opts: PredictOptions,
    device: &Device,
) -> CasePrediction {
    let num_classes = 4;
    let pre = preprocess(image, None, spacing, config.spacing, &plans.intensity);
    let logits = predict_logits(net, &pre.data, config.patch_size, opts, num_classes, device);
    let props = &pre.properties;
    let cropped = props.shape_after_cropping_and_before_resampling;
    let separate = separate_axis(props.spacing, config.spacing);
    // nnU-Net resamples the logits, not the probabilities, then applies the softmax
    let resampled: Vec<Array3<f32>> = logits
        .outer_iter()
        .map(|c| resample_image(&c.to_owned(), cropped, 1, separate))
        .collect();
    let views: Vec<_> = resampled.iter().map(|a| a.view()).collect();
    let stacked =
        ndarray::stack(ndarray::Axis(0), &views).unwrap_or_else(|_| Array4::zeros((0, 0, 0, 0)));
    let probs = crate::predict::softmax(&stacked);
    let probabilities: Vec<Array3<f32>> = probs
        .outer_iter()
        .enumerate()
        .map(|(c, p)| uncrop(&p.to_owned(), props, if c == 0 { 1.0 } else { 0.0 }))
        .collect();
    let full = props.shape_before_cropping;
    let mut labels = Array3::zeros((full[0], full[1], full[2]));
    ndarray::Zip::indexed(&mut labels).for_each(|(z, y, x), l| {
        let mut best = 0;
        for c in 1..probabilities.len() {
            if probabilities[c][[z, y, x]] > probabilities[best][[z, y, x]] {
                best = c;
            }
        }
        *l = best as u8;
    });
    CasePrediction {
        probabilities,
        labels,
    }
}
