//! nnU-Net's training loop with the original project's changes (seeded He init, early stopping
//! on the EMA pseudo-Dice, at most 300 epochs), on any burn device.
//!
//! One epoch = `iterations` steps of SGD (Nesterov momentum 0.99, weight decay 3e-5, gradient
//! norm clipped at 12 over all gradients (torch's clip_grad_norm_), polynomial LR decay per epoch) on batches of
//! augmented patches, a third of them forced to contain foreground, with the Dice + CE loss over
//! the deep-supervision outputs; then `val_iterations` unaugmented validation batches give the
//! pseudo-Dice. Unlike nnU-Net, which draws new validation patches every epoch, the validation
//! patches are the same every epoch, so the EMA and early stopping react to the network only.
//! The model directory is assembled under a temporary name and renamed when training ends, so a
//! half-trained model is never visible; a rerun of an interrupted job resumes from the last
//! completed epoch (`resume`) with the weights an uninterrupted run would have.

pub mod augment;
pub mod bench;
pub mod clip;
pub mod data;
pub mod log;
pub mod loss;
pub mod resume;
pub mod validation;

pub use crate::checkpoint::{CHECKPOINT_BEST, CHECKPOINT_FINAL};
use crate::checkpoint::{CheckpointError, ModelInfo, save_weights, write_info};
use crate::rng::Rng;
use crate::unet::{PlainConvUNet, UNetConfig};
use augment::sample_patch;
use burn::module::Module;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, Tensor, TensorData};
use data::{TrainCase, list_ids, load_case};
use log::{EarlyStopping, EpochRecord, TrainingLog, mean_defined, pseudo_dice};
use statapp_nnunet::plans_file::Plans;
use statapp_nnunet::splits::{FoldSpec, SplitError, fold_cases};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Classes of the CURVAS labels: background, pancreas, kidney, liver.
pub const NUM_CLASSES: usize = 4;
/// nnU-Net's `clip_grad_norm_(..., 12)`.
const GRAD_CLIP_NORM: f64 = 12.0;
pub const TRAINING_LOG: &str = "training_log.json";
pub const TRAINING_CURVE: &str = "training_curve.png";

/// Batches the sampling thread may prepare ahead of the device.
const PREFETCH_BATCHES: usize = 2;

/// Fraction of each batch forced to contain foreground (nnU-Net's `oversample_foreground_percent`).
const OVERSAMPLE_FOREGROUND: f64 = 0.33;

/// What to train and how long.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainSettings {
    /// Plan configuration: `3d_fullres` or `3d_cpu`.
    pub configuration: String,
    pub annotator: u8,
    pub seed: u64,
    pub fold: String,
    pub max_epochs: usize,
    pub iterations: usize,
    pub val_iterations: usize,
    pub patience: usize,
    pub initial_lr: f64,
    /// nnU-Net's data augmentation (off only for tests and debugging).
    pub augment: bool,
    /// nnU-Net's final validation after training (`validation/summary.json`).
    pub final_validation: bool,
}

impl Default for TrainSettings {
    /// The original trainer: 300 epochs of 250 iterations, 50 validation batches, patience 20.
    fn default() -> Self {
        Self {
            configuration: "3d_fullres".into(),
            annotator: 1,
            seed: 112_233,
            fold: "all".into(),
            max_epochs: 300,
            iterations: 250,
            val_iterations: 50,
            patience: 20,
            initial_lr: 0.01,
            augment: true,
            final_validation: true,
        }
    }
}

impl TrainSettings {
    /// `anno<k>_init<seed>_fold<f>`, the original's model id.
    pub fn model_id(&self) -> String {
        format!("anno{}_init{}_fold{}", self.annotator, self.seed, self.fold)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Data(#[from] data::DataError),
    #[error(transparent)]
    Split(#[from] SplitError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("{path}: {detail}")]
    Io { path: PathBuf, detail: String },
    #[error("{path}: {detail}")]
    Plans { path: PathBuf, detail: String },
    #[error("{0}")]
    Settings(String),
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Io {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

/// How a training run ended.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    pub model_dir: PathBuf,
    pub log: TrainingLog,
    /// True when a complete model with this id already existed and nothing was trained.
    pub already_present: bool,
}

/// Trains one model from a prepared dataset (`nnUNetPlans.json`, `nnUNetPlans_<configuration>/`) into
/// `models_root/<model_id>/`. `on_epoch` sees every epoch as it ends (progress display).
pub fn train(
    prepared: &Path,
    models_root: &Path,
    settings: &TrainSettings,
    device: &Device,
    on_epoch: &mut dyn FnMut(&EpochRecord),
) -> Result<TrainOutcome, TrainError> {
    if settings.max_epochs == 0 || settings.iterations == 0 {
        return Err(TrainError::Settings(
            "epochs and iterations must be at least 1".into(),
        ));
    }
    let model_id = settings.model_id();
    let final_dir = models_root.join(&model_id);
    if final_dir.join(crate::checkpoint::MODEL_JSON).exists() {
        let path = final_dir.join(TRAINING_LOG);
        let text = std::fs::read_to_string(&path).map_err(|e| io_err(&path, e))?;
        let log = serde_json::from_str(&text).map_err(|e| io_err(&path, e))?;
        return Ok(TrainOutcome {
            model_dir: final_dir,
            log,
            already_present: true,
        });
    }
    let fold: FoldSpec = settings.fold.parse()?;
    let plans_path = prepared.join("nnUNetPlans.json");
    let plans_text = std::fs::read_to_string(&plans_path).map_err(|e| io_err(&plans_path, e))?;
    let plans_err = |e: &dyn std::fmt::Display| TrainError::Plans {
        path: plans_path.clone(),
        detail: e.to_string(),
    };
    let plans_json = serde_json::from_str(&plans_text).map_err(|e| plans_err(&e))?;
    let plans = Plans::from_json(&plans_json).map_err(|e| plans_err(&e))?;
    let config = plans
        .configuration(&settings.configuration)
        .map_err(|e| plans_err(&e))?;
    let network = UNetConfig::from_configuration(config, NUM_CLASSES);

    let data_identifier = config.data_identifier();
    let ids = list_ids(prepared, &data_identifier)?;
    let split = fold_cases(prepared, &ids, fold)?;
    let mut cases: BTreeMap<String, TrainCase> = BTreeMap::new();
    for id in split.train.iter().chain(&split.val) {
        if !cases.contains_key(id) {
            cases.insert(
                id.clone(),
                load_case(prepared, &data_identifier, id, NUM_CLASSES - 1)?,
            );
        }
    }
    let pick = |list: &[String]| -> Vec<&TrainCase> {
        list.iter().filter_map(|id| cases.get(id)).collect()
    };
    let (train_cases, val_cases) = (pick(&split.train), pick(&split.val));

    std::fs::create_dir_all(models_root).map_err(|e| io_err(models_root, e))?;
    let work = models_root.join(format!(".partial-{model_id}"));
    let train_device = device.clone().autodiff();
    let optim = sgd();
    let resumed = if work.exists() {
        resume::load(
            &work,
            settings,
            &plans_text,
            &network,
            optim.clone(),
            &train_device,
        )?
    } else {
        None
    };
    if resumed.is_none() {
        if work.exists() {
            std::fs::remove_dir_all(&work).map_err(|e| io_err(&work, e))?;
        }
        std::fs::create_dir_all(&work).map_err(|e| io_err(&work, e))?;
        std::fs::write(work.join("plans.json"), &plans_text).map_err(|e| io_err(&work, e))?;
        write_dataset_json(&work, split.train.len())?;
    }

    let fresh_log = TrainingLog {
        model_id: model_id.clone(),
        configuration: settings.configuration.clone(),
        seed: settings.seed,
        fold: settings.fold.clone(),
        train_cases: split.train.clone(),
        val_cases: split.val.clone(),
        max_epochs: settings.max_epochs,
        iterations_per_epoch: settings.iterations,
        val_iterations: settings.val_iterations,
        patience: settings.patience,
        best_epoch: None,
        best_ema_fg_dice: None,
        stop_reason: "max_epochs".into(),
        epochs: Vec::new(),
    };
    let batcher = Batcher {
        patch: config.patch_size,
        batch_size: config.batch_size.max(1),
        scales: deep_supervision_strides(&network),
        batch_dice: config.batch_dice,
    };
    let (mut net, mut optim, mut train_rng, mut stopping, mut log, first_epoch) = match resumed {
        Some(r) => (
            r.net,
            r.optim,
            Rng::new(r.state.rng),
            r.state.stopping,
            r.state.log,
            r.state.next_epoch,
        ),
        None => (
            PlainConvUNet::new(&network, settings.seed, &train_device),
            optim,
            Rng::derive(settings.seed, 1),
            EarlyStopping::new(settings.patience),
            fresh_log,
            0,
        ),
    };
    let plans_sha256 = crate::outputs::digest(plans_text.as_bytes());

    for epoch in first_epoch..settings.max_epochs {
        let start = Instant::now();
        let lr = poly_lr(settings.initial_lr, epoch, settings.max_epochs);
        let mut loss_sum = 0.0;
        // one background thread samples and augments the epoch's batches in order, from the
        // same stream as in the foreground, a few batches ahead of the device
        let (tx, rx) = std::sync::mpsc::sync_channel(PREFETCH_BATCHES);
        let mut rng = train_rng.clone();
        net = std::thread::scope(|scope| -> Result<PlainConvUNet, TrainError> {
            // owned here: an early return drops it, so a blocked producer ends
            let (mut net, rx) = (net, rx);
            let (batcher, cases) = (&batcher, &train_cases);
            let producer = scope.spawn(move || {
                for _ in 0..settings.iterations {
                    let batch = batcher.sample(cases, settings.augment, &mut rng);
                    let failed = batch.is_err();
                    if tx.send(batch).is_err() || failed {
                        break;
                    }
                }
                rng
            });
            for batch in rx.iter().take(settings.iterations) {
                let batch = batch?.into_device(&train_device);
                let (updated, loss) = step(net, &mut optim, batch, batcher, lr);
                net = updated;
                loss_sum += loss;
            }
            train_rng = producer
                .join()
                .map_err(|_| TrainError::Settings("the batch sampling thread panicked".into()))?;
            Ok(net)
        })?;
        let eval = net.valid();
        // the same validation patches every epoch: the EMA follows the network, not the draw
        let mut val_rng = Rng::derive(settings.seed, 2);
        let (val_loss, dice) = validate(
            &eval,
            &batcher,
            &val_cases,
            settings.val_iterations,
            &mut val_rng,
            device,
        )?;
        let mean = mean_defined(&dice);
        let verdict = stopping.update(mean);
        if verdict.new_best {
            save_weights(&eval, &work, CHECKPOINT_BEST)?;
            log.best_epoch = Some(epoch);
            log.best_ema_fg_dice = Some(verdict.ema);
        }
        let record = EpochRecord {
            epoch,
            train_loss: loss_sum / settings.iterations as f64,
            val_loss,
            pseudo_dice: dice,
            mean_fg_dice: mean,
            ema_fg_dice: verdict.ema,
            lr,
            seconds: start.elapsed().as_secs_f64(),
        };
        on_epoch(&record);
        log.epochs.push(record);
        write_json(&work.join(TRAINING_LOG), &log)?;
        if verdict.stop {
            log.stop_reason = "early_stopping".into();
            break;
        }
        if epoch + 1 < settings.max_epochs {
            let state = resume::LatestState {
                settings: settings.clone(),
                plans_sha256: plans_sha256.clone(),
                next_epoch: epoch + 1,
                rng: train_rng.state(),
                stopping: stopping.clone(),
                log: log.clone(),
            };
            resume::save(&work, &net, &optim, &state)?;
        }
    }
    resume::remove(&work)?;
    let final_net = net.valid();
    save_weights(&final_net, &work, CHECKPOINT_FINAL)?;
    write_json(&work.join(TRAINING_LOG), &log)?;
    if settings.final_validation {
        let summary = validation::final_validation(
            &final_net,
            &val_cases,
            config.patch_size,
            NUM_CLASSES,
            device,
        )
        .map_err(|e| io_err(&work, e))?;
        let dir = work.join("validation");
        std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        write_json(&dir.join("summary.json"), &summary)?;
    }
    log::plot(&log, &work.join(TRAINING_CURVE)).map_err(|e| io_err(&work, e))?;
    write_info(
        &work,
        &ModelInfo::native(
            model_id.clone(),
            settings.configuration.clone(),
            settings.seed,
            network,
            vec![CHECKPOINT_BEST.into(), CHECKPOINT_FINAL.into()],
        ),
    )
    .map_err(CheckpointError::from)?;
    if final_dir.exists() {
        // an incomplete directory without model.json (from an older interrupted layout)
        std::fs::remove_dir_all(&final_dir).map_err(|e| io_err(&final_dir, e))?;
    }
    std::fs::rename(&work, &final_dir).map_err(|e| io_err(&final_dir, e))?;
    Ok(TrainOutcome {
        model_dir: final_dir,
        log,
        already_present: false,
    })
}

/// One training step: forward, the deep-supervision Dice + CE loss (read back, which waits for
/// the device), backward, gradients clipped, SGD. Returns the updated network and the loss.
fn step(
    net: PlainConvUNet,
    optim: &mut burn::optim::ModuleOptimizer,
    batch: Batch,
    batcher: &Batcher,
    lr: f64,
) -> (PlainConvUNet, f64) {
    let loss =
        loss::deep_supervision_loss(net.forward(batch.image), batch.targets, batcher.batch_dice);
    let value = f64::from(loss.clone().into_scalar::<f32>());
    let grads = GradientsParams::from_grads(loss.backward(), &net);
    let (grads, _) = clip::clip_global_norm(&net, grads, GRAD_CLIP_NORM);
    (optim.step(lr, net, grads), value)
}

/// nnU-Net's optimizer: SGD with Nesterov momentum 0.99 and weight decay 3e-5.
fn sgd() -> burn::optim::ModuleOptimizer {
    SgdConfig::new()
        .with_momentum(Some(MomentumConfig {
            momentum: 0.99,
            dampening: 0.0,
            nesterov: true,
        }))
        .with_weight_decay(Some(WeightDecayConfig::new(3e-5)))
        .init()
}

/// nnU-Net's `PolyLRScheduler`: `lr0 * (1 - epoch / max_epochs)^0.9`.
pub fn poly_lr(initial: f64, epoch: usize, max_epochs: usize) -> f64 {
    initial * (1.0 - epoch as f64 / max_epochs as f64).powf(0.9)
}

/// Cumulative strides of every decoder output, highest resolution first.
fn deep_supervision_strides(cfg: &UNetConfig) -> Vec<[usize; 3]> {
    let mut cum = [1usize; 3];
    let mut out = Vec::new();
    for s in cfg.strides.iter().take(cfg.n_stages().saturating_sub(1)) {
        for a in 0..3 {
            cum[a] *= s[a];
        }
        out.push(cum);
    }
    out
}

struct Batch {
    image: Tensor<5>,
    /// One-hot targets per deep-supervision output.
    targets: Vec<Tensor<5>>,
    /// Full-resolution labels, for the pseudo-Dice.
    labels: Vec<u8>,
}

/// [`Batch`] before it goes to the device.
struct HostBatch {
    image: TensorData,
    targets: Vec<TensorData>,
    labels: Vec<u8>,
}

impl HostBatch {
    fn into_device(self, device: &Device) -> Batch {
        Batch {
            image: Tensor::from_data(self.image, device),
            targets: self
                .targets
                .into_iter()
                .map(|t| Tensor::from_data(t, device))
                .collect(),
            labels: self.labels,
        }
    }
}

struct Batcher {
    patch: [usize; 3],
    batch_size: usize,
    scales: Vec<[usize; 3]>,
    /// The plan's `batch_dice`: the loss's Dice over the whole batch, or per sample.
    batch_dice: bool,
}

impl Batcher {
    /// nnU-Net's `get_do_oversample`: the last third of the batch is forced to foreground.
    fn batch(
        &self,
        cases: &[&TrainCase],
        augment: bool,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<Batch, data::DataError> {
        Ok(self.sample(cases, augment, rng)?.into_device(device))
    }

    /// A batch on the host: the CPU work of a step (sampling, augmentation, one-hot targets),
    /// which a background thread does while the device trains on the previous batch.
    fn sample(
        &self,
        cases: &[&TrainCase],
        augment: bool,
        rng: &mut Rng,
    ) -> Result<HostBatch, data::DataError> {
        let keep_random = (self.batch_size as f64 * (1.0 - OVERSAMPLE_FOREGROUND)).round() as usize;
        let mut image = Vec::new();
        let mut labels = Vec::new();
        for b in 0..self.batch_size {
            let case = cases[rng.below(cases.len())];
            let p = sample_patch(case, self.patch, b >= keep_random, augment, rng)?;
            image.extend_from_slice(&p.image);
            labels.extend_from_slice(&p.labels);
        }
        Ok(self.host_batch(image, labels))
    }

    /// The batch of these patches (`batch_size` of them, in C order) with its one-hot targets.
    fn host_batch(&self, image: Vec<f32>, labels: Vec<u8>) -> HostBatch {
        let [pz, py, px] = self.patch;
        let image = TensorData::new(image, [self.batch_size, 1, pz, py, px]);
        let targets = self
            .scales
            .iter()
            .map(|s| self.one_hot(&labels, *s))
            .collect();
        HostBatch {
            image,
            targets,
            labels,
        }
    }

    /// Labels at `1/stride` resolution (PyTorch's `nearest-exact`: source `floor((i + 0.5) * s)`),
    /// one-hot over the classes.
    fn one_hot(&self, labels: &[u8], stride: [usize; 3]) -> TensorData {
        let [pz, py, px] = self.patch;
        let shape = [pz / stride[0], py / stride[1], px / stride[2]];
        let n: usize = shape.iter().product();
        let mut out = vec![0f32; self.batch_size * NUM_CLASSES * n];
        for b in 0..self.batch_size {
            let mut i = 0;
            for z in 0..shape[0] {
                let sz = z * stride[0] + stride[0] / 2;
                for y in 0..shape[1] {
                    let sy = y * stride[1] + stride[1] / 2;
                    for x in 0..shape[2] {
                        let sx = x * stride[2] + stride[2] / 2;
                        let l = usize::from(labels[b * pz * py * px + (sz * py + sy) * px + sx]);
                        out[(b * NUM_CLASSES + l.min(NUM_CLASSES - 1)) * n + i] = 1.0;
                        i += 1;
                    }
                }
            }
        }
        TensorData::new(
            out,
            [self.batch_size, NUM_CLASSES, shape[0], shape[1], shape[2]],
        )
    }
}

/// Mean validation loss and the pseudo-Dice per foreground class, from true/false positive and
/// false negative counts summed over all validation batches (nnU-Net's online evaluation).
fn validate(
    net: &PlainConvUNet,
    batcher: &Batcher,
    cases: &[&TrainCase],
    iterations: usize,
    rng: &mut Rng,
    device: &Device,
) -> Result<(f64, Vec<Option<f64>>), data::DataError> {
    let fg = NUM_CLASSES - 1;
    let (mut tp, mut fp, mut fn_) = (vec![0u64; fg], vec![0u64; fg], vec![0u64; fg]);
    let mut loss_sum = 0.0;
    let n_vox: usize = batcher.patch.iter().product();
    for _ in 0..iterations {
        let batch = batcher.batch(cases, false, rng, device)?;
        let outputs = net.forward(batch.image);
        let top = outputs[0].clone();
        loss_sum += f64::from(
            loss::deep_supervision_loss(outputs, batch.targets, batcher.batch_dice)
                .into_scalar::<f32>(),
        );
        let data = top.into_data();
        let Ok(logits) = data.as_slice::<f32>() else {
            continue;
        };
        for b in 0..batcher.batch_size {
            for v in 0..n_vox {
                let at = |c: usize| logits[(b * NUM_CLASSES + c) * n_vox + v];
                let pred =
                    (1..NUM_CLASSES).fold(0, |best, c| if at(c) > at(best) { c } else { best });
                let truth = usize::from(batch.labels[b * n_vox + v]);
                for c in 1..NUM_CLASSES {
                    match (pred == c, truth == c) {
                        (true, true) => tp[c - 1] += 1,
                        (true, false) => fp[c - 1] += 1,
                        (false, true) => fn_[c - 1] += 1,
                        _ => {}
                    }
                }
            }
        }
    }
    Ok((
        loss_sum / iterations.max(1) as f64,
        pseudo_dice(&tp, &fp, &fn_),
    ))
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), TrainError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| io_err(path, e))? + "\n";
    statapp_volume::write_atomic(path, text.as_bytes()).map_err(|e| io_err(path, e))
}

/// nnU-Net's `dataset.json` for the CURVAS labels.
fn write_dataset_json(dir: &Path, num_training: usize) -> Result<(), TrainError> {
    let json = serde_json::json!({
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, "pancreas": 1, "kidney": 2, "liver": 3},
        "numTraining": num_training,
        "file_ending": ".nii.gz"
    });
    write_json(&dir.join("dataset.json"), &json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poly_schedule() {
        assert_eq!(poly_lr(0.01, 0, 300), 0.01);
        let mid = poly_lr(0.01, 150, 300);
        assert!((mid - 0.01 * 0.5f64.powf(0.9)).abs() < 1e-15);
        assert!(poly_lr(0.01, 299, 300) > 0.0);
    }
}
