//! `statapp train`: one nnU-Net model (annotator, seed, fold) from a prepared dataset, on the CPU.

use anyhow::Result;
use burn::tensor::Device;
use statapp_model::train::{TrainSettings, train};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Prepared dataset (`statapp prepare --out`): nnUNetPlans.json and nnUNetPlans_<configuration>/.
    #[arg(long)]
    data: PathBuf,
    /// Directory that receives models/<model_id>/.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=3))]
    annotator: u8,
    /// Seed of the weights, patch sampling and augmentation (the original's: 112233, 445566, 778899).
    #[arg(long, default_value_t = 112233)]
    seed: u64,
    #[command(flatten)]
    schedule: Schedule,
    /// Initial learning rate (nnU-Net: 0.01).
    #[arg(long, default_value_t = 0.01)]
    lr: f64,
    /// Skip nnU-Net's final validation (sliding-window prediction of the validation cases,
    /// validation/summary.json).
    #[arg(long)]
    no_final_validation: bool,
    /// Disable data augmentation.
    #[arg(long)]
    no_augment: bool,
}

/// What a model is trained on and for how long: shared by `train` and `queue-training`.
#[derive(Debug, clap::Args)]
pub struct Schedule {
    /// Cross-validation fold 0..4 (nnU-Net's splits_final.json) or `all`.
    #[arg(long, default_value = "all")]
    pub fold: String,
    /// Plan configuration: 3d_cpu (small, for CPUs and the local worker) or 3d_fullres (the GPU
    /// trainer's).
    #[arg(long, default_value = "3d_cpu")]
    pub configuration: String,
    /// Most epochs (the original: 300).
    #[arg(long, default_value_t = 300)]
    pub epochs: usize,
    /// Training iterations per epoch (nnU-Net: 250).
    #[arg(long, default_value_t = 250)]
    pub iterations: usize,
    /// Validation batches per epoch (nnU-Net: 50).
    #[arg(long, default_value_t = 50)]
    pub val_iterations: usize,
    /// Epochs without a better EMA pseudo-Dice before stopping (the original: 20).
    #[arg(long, default_value_t = 20)]
    pub patience: usize,
}

pub fn run(args: Args) -> Result<()> {
    let settings = TrainSettings {
        configuration: args.schedule.configuration,
        annotator: args.annotator,
        seed: args.seed,
        fold: args.schedule.fold,
        max_epochs: args.schedule.epochs,
        iterations: args.schedule.iterations,
        val_iterations: args.schedule.val_iterations,
        patience: args.schedule.patience,
        initial_lr: args.lr,
        augment: !args.no_augment,
        final_validation: !args.no_final_validation,
    };
    let outcome = train(
        &args.data,
        &args.out,
        &settings,
        &Device::flex(),
        &mut |e| {
            let dice: Vec<String> = e
                .pseudo_dice
                .iter()
                .map(|d| d.map_or("-".into(), |v| format!("{v:.3}")))
                .collect();
            eprintln!(
                "epoch {:>3}  loss {:>7.4}  val {:>7.4}  dice [{}]  ema {:.4}  lr {:.5}  {:.1}s",
                e.epoch,
                e.train_loss,
                e.val_loss,
                dice.join(" "),
                e.ema_fg_dice,
                e.lr,
                e.seconds
            );
        },
    )?;
    let log = &outcome.log;
    if outcome.already_present {
        println!(
            "{} already trained -> {}",
            log.model_id,
            outcome.model_dir.display()
        );
    } else {
        println!(
            "{}: {} epoch(s), stopped by {}, best EMA pseudo-Dice {:.4} at epoch {} -> {}",
            log.model_id,
            log.epochs.len(),
            log.stop_reason,
            log.best_ema_fg_dice.unwrap_or(f64::NAN),
            log.best_epoch.map_or("-".into(), |e| e.to_string()),
            outcome.model_dir.display()
        );
    }
    Ok(())
}
