//! nnU-Net's final validation after training (`perform_actual_validation`): every validation case
//! predicted with the sliding window (Gaussian weighting, step 0.5, mirroring over all axes) and
//! scored per class, written as `validation/summary.json` with nnU-Net's field names. Unlike
//! nnU-Net, cases are scored on the preprocessed grid (statapp keeps no raw copies beside the
//! training data), so the numbers are those of the network, not of the export.

use super::data::{DataError, TrainCase};
use crate::infer::argmax;
use crate::predict::{PredictError, PredictOptions, predict_logits};
use crate::unet::PlainConvUNet;
use burn::tensor::Device;
use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub enum ValidationError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Predict(#[from] PredictError),
}

/// Per-class confusion counts of a prediction against the reference labels.
fn counts(pred: &ndarray::Array3<u8>, reference: &ndarray::Array3<u8>, class: u8) -> [u64; 4] {
    let (mut tp, mut fp, mut fn_, mut tn) = (0, 0, 0, 0);
    for (p, r) in pred.iter().zip(reference) {
        match (*p == class, *r == class) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fn_ += 1,
            (false, false) => tn += 1,
        }
    }
    [tp, fp, fn_, tn]
}

/// nnU-Net's per-class metrics; Dice and IoU are undefined (null) when neither has the class.
fn metrics([tp, fp, fn_, tn]: [u64; 4]) -> Value {
    let (tp_, fp_, fn__) = (tp as f64, fp as f64, fn_ as f64);
    let ratio = |num: f64, den: f64| {
        if den > 0.0 {
            json!(num / den)
        } else {
            Value::Null
        }
    };
    json!({
        "Dice": ratio(2.0 * tp_, 2.0 * tp_ + fp_ + fn__),
        "IoU": ratio(tp_, tp_ + fp_ + fn__),
        "FN": fn_, "FP": fp, "TN": tn, "TP": tp,
        "n_pred": tp + fp, "n_ref": tp + fn_,
    })
}

/// Mean of the defined values (numpy's nanmean); null when none is.
fn mean(values: &[Option<f64>]) -> Value {
    let v: Vec<f64> = values.iter().flatten().copied().collect();
    if v.is_empty() {
        Value::Null
    } else {
        json!(v.iter().sum::<f64>() / v.len() as f64)
    }
}

/// Predicts and scores `cases`; the document of `validation/summary.json`.
pub fn final_validation(
    net: &PlainConvUNet,
    cases: &[&TrainCase],
    patch: [usize; 3],
    classes: usize,
    device: &Device,
) -> Result<Value, ValidationError> {
    let opts = PredictOptions::default().mirror(&[0, 1, 2]);
    let mut per_case = Vec::new();
    let mut dice: Vec<Vec<Option<f64>>> = vec![Vec::new(); classes - 1];
    for case in cases {
        let whole = case.whole()?;
        let logits = predict_logits(net, &whole.image, patch, opts, classes, device)?;
        let pred = argmax(logits.outer_iter());
        let mut m = serde_json::Map::new();
        for c in 1..classes {
            let value = metrics(counts(&pred, &whole.labels, c as u8));
            dice[c - 1].push(value["Dice"].as_f64());
            m.insert(c.to_string(), value);
        }
        per_case.push(json!({"case": case.id, "metrics": m}));
    }
    let means: serde_json::Map<String, Value> = (1..classes)
        .map(|c| (c.to_string(), json!({"Dice": mean(&dice[c - 1])})))
        .collect();
    let class_means: Vec<Option<f64>> = means.values().map(|v| v["Dice"].as_f64()).collect();
    Ok(json!({
        "foreground_mean": {"Dice": mean(&class_means)},
        "mean": means,
        "metric_per_case": per_case,
        "grid": "preprocessed",
        "mirroring_axes": [0, 1, 2],
    }))
}
