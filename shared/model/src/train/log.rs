//! The training record: per-epoch losses, pseudo-Dice and learning rate (`training_log.json`),
//! the original trainer's early stopping on the EMA pseudo-Dice, and a PNG of the curves.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// One epoch of `training_log.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_loss: f64,
    /// Pseudo-Dice per foreground class (pancreas, kidney, liver) on the validation patches;
    /// null when a class appeared in neither prediction nor reference.
    pub pseudo_dice: Vec<Option<f64>>,
    pub mean_fg_dice: f64,
    pub ema_fg_dice: f64,
    pub lr: f64,
    pub seconds: f64,
}

/// `training_log.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingLog {
    pub model_id: String,
    pub configuration: String,
    pub seed: u64,
    pub fold: String,
    pub train_cases: Vec<String>,
    pub val_cases: Vec<String>,
    pub max_epochs: usize,
    pub iterations_per_epoch: usize,
    pub val_iterations: usize,
    pub patience: usize,
    pub best_epoch: Option<usize>,
    pub best_ema_fg_dice: Option<f64>,
    /// Why training ended: `max_epochs` or `early_stopping`.
    pub stop_reason: String,
    pub epochs: Vec<EpochRecord>,
}

/// The original trainer's rule: keep the best EMA pseudo-Dice, stop after `patience` epochs
/// without a new best.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EarlyStopping {
    patience: usize,
    ema: Option<f64>,
    best: Option<f64>,
    since_best: usize,
}

/// What one epoch's pseudo-Dice means for training.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    pub ema: f64,
    pub new_best: bool,
    pub stop: bool,
}

impl EarlyStopping {
    pub fn new(patience: usize) -> Self {
        Self {
            patience,
            ema: None,
            best: None,
            since_best: 0,
        }
    }

    /// nnU-Net's EMA (`0.9 * ema + 0.1 * dice`, the first epoch's value as it is).
    pub fn update(&mut self, mean_fg_dice: f64) -> Verdict {
        let dice = if mean_fg_dice.is_finite() {
            mean_fg_dice
        } else {
            0.0
        };
        let ema = match self.ema {
            Some(e) => 0.9 * e + 0.1 * dice,
            None => dice,
        };
        self.ema = Some(ema);
        let new_best = self.best.is_none_or(|b| ema > b);
        if new_best {
            self.best = Some(ema);
            self.since_best = 0;
        } else {
            self.since_best += 1;
        }
        Verdict {
            ema,
            new_best,
            stop: self.since_best >= self.patience,
        }
    }

    pub fn best(&self) -> Option<f64> {
        self.best
    }
}

/// Pseudo-Dice per class from summed true positives, false positives and false negatives.
pub fn pseudo_dice(tp: &[u64], fp: &[u64], fn_: &[u64]) -> Vec<Option<f64>> {
    tp.iter()
        .zip(fp)
        .zip(fn_)
        .map(|((&t, &p), &n)| {
            let d = 2 * t + p + n;
            (d > 0).then(|| 2.0 * t as f64 / d as f64)
        })
        .collect()
}

/// Mean over the defined classes (NaN when none is defined), as `np.nanmean`.
pub fn mean_defined(v: &[Option<f64>]) -> f64 {
    let d: Vec<f64> = v.iter().flatten().copied().collect();
    if d.is_empty() {
        f64::NAN
    } else {
        d.iter().sum::<f64>() / d.len() as f64
    }
}

const WIDTH: usize = 900;
const PANEL: usize = 300;
const MARGIN: usize = 30;
/// Curve colours: train loss, validation loss (top); pancreas, kidney, liver, EMA (bottom).
pub const COLOURS: [(&str, [u8; 3]); 6] = [
    ("train_loss", [31, 119, 180]),
    ("val_loss", [255, 127, 14]),
    ("pseudo_dice_pancreas", [44, 160, 44]),
    ("pseudo_dice_kidney", [148, 103, 189]),
    ("pseudo_dice_liver", [214, 39, 40]),
    ("ema_fg_dice", [0, 0, 0]),
];

/// Two panels, like nnU-Net's `progress.png`: losses on top (own scale, dashed zero line),
/// pseudo-Dice per organ and its EMA below on [0, 1] with grid lines every 0.25.
pub fn plot(log: &TrainingLog, path: &Path) -> std::io::Result<()> {
    let height = 2 * PANEL + 3 * MARGIN;
    let mut img = vec![255u8; WIDTH * height * 3];
    let n = log.epochs.len().max(2);
    let x_of = |e: usize| MARGIN + e * (WIDTH - 2 * MARGIN) / (n - 1);
    let set = |img: &mut [u8], x: usize, y: usize, c: [u8; 3]| {
        if x < WIDTH && y < height {
            img[(y * WIDTH + x) * 3..][..3].copy_from_slice(&c);
        }
    };
    let losses: Vec<f64> = log
        .epochs
        .iter()
        .flat_map(|e| [e.train_loss, e.val_loss])
        .filter(|v| v.is_finite())
        .collect();
    let lo = losses.iter().copied().fold(0.0f64, f64::min);
    let hi = losses.iter().copied().fold(0.0f64, f64::max).max(lo + 1e-6);
    let top = MARGIN;
    let bottom = 2 * MARGIN + PANEL;
    let y_loss = |v: f64| top + ((hi - v) / (hi - lo) * (PANEL - 1) as f64) as usize;
    let y_dice = |v: f64| bottom + ((1.0 - v.clamp(0.0, 1.0)) * (PANEL - 1) as f64) as usize;
    // frames, zero line and Dice grid
    for x in MARGIN..WIDTH - MARGIN {
        for y in [top, top + PANEL - 1, bottom, bottom + PANEL - 1] {
            set(&mut img, x, y, [120, 120, 120]);
        }
        if x % 6 < 3 {
            set(&mut img, x, y_loss(0.0), [180, 180, 180]);
            for g in [0.25, 0.5, 0.75] {
                set(&mut img, x, y_dice(g), [200, 200, 200]);
            }
        }
    }
    type Series = fn(&EpochRecord) -> Option<f64>;
    let series: [Series; 6] = [
        |e| Some(e.train_loss),
        |e| Some(e.val_loss),
        |e| e.pseudo_dice.first().copied().flatten(),
        |e| e.pseudo_dice.get(1).copied().flatten(),
        |e| e.pseudo_dice.get(2).copied().flatten(),
        |e| Some(e.ema_fg_dice),
    ];
    for (k, f) in series.iter().enumerate() {
        let colour = COLOURS[k].1;
        let y_of = |v: f64| if k < 2 { y_loss(v) } else { y_dice(v) };
        let mut prev: Option<(usize, usize)> = None;
        for e in &log.epochs {
            let Some(v) = f(e).filter(|v| v.is_finite()) else {
                prev = None;
                continue;
            };
            let p = (x_of(e.epoch), y_of(v));
            if let Some(q) = prev {
                line(q, p, |x, y| {
                    set(&mut img, x, y, colour);
                    set(&mut img, x, y + 1, colour);
                });
            } else {
                set(&mut img, p.0, p.1, colour);
            }
            prev = Some(p);
        }
    }
    let mut encoded = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut encoded, WIDTH as u32, height as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(std::io::Error::other)?;
        writer
            .write_image_data(&img)
            .map_err(std::io::Error::other)?;
    }
    statapp_volume::write_atomic(path, &encoded)
}

/// Bresenham's line.
fn line((x0, y0): (usize, usize), (x1, y1): (usize, usize), mut plot: impl FnMut(usize, usize)) {
    let (mut x, mut y) = (x0 as isize, y0 as isize);
    let (x1, y1) = (x1 as isize, y1 as isize);
    let dx = (x1 - x).abs();
    let dy = -(y1 - y).abs();
    let sx = if x < x1 { 1 } else { -1 };
    let sy = if y < y1 { 1 } else { -1 };
    let mut err = dx + dy;
    loop {
        plot(x as usize, y as usize);
        if x == x1 && y == y1 {
            break;
        }
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            x += sx;
        }
        if e2 <= dx {
            err += dx;
            y += sy;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ema_and_patience() {
        let mut es = EarlyStopping::new(3);
        let v = es.update(0.5);
        assert_eq!(v.ema, 0.5);
        assert!(v.new_best && !v.stop);
        let v = es.update(0.6);
        assert!((v.ema - 0.51).abs() < 1e-12 && v.new_best);
        // a plateau below the EMA lowers it: three epochs without a new best stop training
        assert!(!es.update(0.2).stop);
        assert!(!es.update(0.2).stop);
        let v = es.update(0.2);
        assert!(v.stop && !v.new_best);
        assert_eq!(es.best(), Some(0.51));
        assert!(EarlyStopping::new(2).update(f64::NAN).ema == 0.0);
    }

    #[test]
    fn dice_from_counts() {
        let d = pseudo_dice(&[5, 0, 0], &[1, 0, 2], &[4, 0, 0]);
        assert_eq!(d, vec![Some(10.0 / 15.0), None, Some(0.0)]);
        assert!((mean_defined(&d) - 1.0 / 3.0).abs() < 1e-12);
        assert!(mean_defined(&[None]).is_nan());
    }
}
