//! nnU-Net's `DC_and_CE_loss` (cross-entropy + soft Dice without background, weights 1 and 1;
//! the Dice over the whole batch or per sample as the plan's `batch_dice` says) summed over the deep-supervision outputs with weights 1/2^i, the lowest resolution at 0.

use burn::tensor::Tensor;
use burn::tensor::activation::log_softmax;

/// Smoothing of nnU-Net's `MemoryEfficientSoftDiceLoss`.
const SMOOTH: f64 = 1e-5;

/// Deep-supervision weights for `n` outputs (highest resolution first): 1/2^i, the last one 0,
/// normalised to sum 1. A single output gets weight 1.
pub fn deep_supervision_weights(n: usize) -> Vec<f64> {
    if n <= 1 {
        return vec![1.0; n];
    }
    let mut w: Vec<f64> = (0..n).map(|i| 0.5f64.powi(i as i32)).collect();
    w[n - 1] = 0.0;
    let total: f64 = w.iter().sum();
    w.iter().map(|v| v / total).collect()
}

/// Cross-entropy (mean over voxels) minus the soft Dice of the foreground classes, pooled over
/// the batch (`batch_dice`) or per sample and then averaged, as `MemoryEfficientSoftDiceLoss`.
/// `onehot` has the logits' shape `[b, c, z, y, x]`.
pub fn dice_ce(logits: Tensor<5>, onehot: Tensor<5>, batch_dice: bool) -> Tensor<1> {
    let [b, c, z, y, x] = logits.dims();
    let logp = log_softmax(logits, 1);
    let ce = (logp.clone() * onehot.clone())
        .sum()
        .neg()
        .div_scalar((b * z * y * x) as f64);
    let probs = logp.exp().narrow(1, 1, c - 1);
    let gt = onehot.narrow(1, 1, c - 1);
    let axes: &[isize] = if batch_dice {
        &[0, 2, 3, 4]
    } else {
        &[2, 3, 4]
    };
    let intersect = (probs.clone() * gt.clone()).sum_dims(axes);
    let denominator = (gt.sum_dims(axes) + probs.sum_dims(axes))
        .add_scalar(SMOOTH)
        .clamp_min(1e-8);
    let dc = intersect.mul_scalar(2.0).add_scalar(SMOOTH) / denominator;
    ce - dc.mean()
}

/// The weighted deep-supervision loss; outputs with weight 0 are skipped.
pub fn deep_supervision_loss(
    outputs: Vec<Tensor<5>>,
    targets: Vec<Tensor<5>>,
    batch_dice: bool,
) -> Tensor<1> {
    let weights = deep_supervision_weights(outputs.len());
    let mut total: Option<Tensor<1>> = None;
    for ((out, target), w) in outputs.into_iter().zip(targets).zip(weights) {
        if w == 0.0 {
            continue;
        }
        let term = dice_ce(out, target, batch_dice).mul_scalar(w);
        total = Some(match total {
            Some(t) => t + term,
            None => term,
        });
    }
    total.unwrap_or_else(|| Tensor::zeros([1], &Default::default()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn tensor(values: Vec<f32>, shape: [usize; 5]) -> Tensor<5> {
        Tensor::from_data(TensorData::new(values, shape), &Device::flex())
    }

    #[test]
    fn weights_follow_nnunet() {
        let w = deep_supervision_weights(4);
        let expect = [4.0 / 7.0, 2.0 / 7.0, 1.0 / 7.0, 0.0];
        for (a, b) in w.iter().zip(expect) {
            assert!((a - b).abs() < 1e-12);
        }
        assert_eq!(deep_supervision_weights(1), vec![1.0]);
    }

    /// Two classes, two voxels: the value computed by hand with nnU-Net's formulas.
    #[test]
    fn dice_ce_matches_hand_computation() {
        // logits [b=1, c=2, 1, 1, 2]: voxel 0 (0, ln 3) -> p1 = 0.75, voxel 1 (0, 0) -> p1 = 0.5
        let logits = tensor(vec![0.0, 0.0, 3f32.ln(), 0.0], [1, 2, 1, 1, 2]);
        // voxel 0 is class 1, voxel 1 is class 0
        let onehot = tensor(vec![0.0, 1.0, 1.0, 0.0], [1, 2, 1, 1, 2]);
        let loss: f32 = dice_ce(logits, onehot, true).into_scalar();
        let ce = -(0.75f64.ln() + 0.5f64.ln()) / 2.0;
        let dc = (2.0 * 0.75 + SMOOTH) / (1.0 + 1.25 + SMOOTH);
        assert!(
            (f64::from(loss) - (ce - dc)).abs() < 1e-6,
            "{loss} vs {}",
            ce - dc
        );
    }
}
