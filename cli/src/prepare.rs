//! `statapp prepare`: nnU-Net's fingerprint, plans and preprocessing for one annotator's view of
//! a dataset (bucket or nnU-Net raw layout).

use crate::progress;
use anyhow::Result;
use statapp_nnunet::dataset::CaseSet;
use statapp_nnunet::prepare::{PrepareRequest, Stage, prepare_dataset};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Dataset root: a bucket root (incoming/) or an nnU-Net raw dataset (dataset.json).
    dataset: PathBuf,
    /// Output directory: dataset_fingerprint.json, nnUNetPlans.json, nnUNetPlans_{3d_fullres,3d_cpu}/.
    #[arg(long)]
    out: PathBuf,
    /// Whose labels to use (bucket layout).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=3))]
    annotator: u8,
    /// Cases: train, validation, test, all, or comma-separated ids.
    #[arg(long, default_value = "all")]
    cases: CaseSet,
    /// Largest patch of the small CPU configuration `3d_cpu` (z,y,x).
    #[arg(long, default_value = "32,64,64", value_delimiter = ',', num_args = 3)]
    cpu_patch: Vec<usize>,
    /// How much coarser than 3d_fullres the 3d_cpu in-plane spacing is (1 keeps the full resolution).
    #[arg(long, default_value_t = 2.0)]
    cpu_spacing_factor: f64,
}

pub fn run(args: Args) -> Result<()> {
    let req = PrepareRequest {
        annotator: usize::from(args.annotator),
        cases: args.cases,
        cpu_patch: [args.cpu_patch[0], args.cpu_patch[1], args.cpu_patch[2]],
        cpu_spacing_factor: args.cpu_spacing_factor,
        dataset_name: statapp_synth::nnunet_dataset_name(usize::from(args.annotator)),
    };
    let mut bar: Option<(Stage, indicatif::ProgressBar)> = None;
    let plans = prepare_dataset(&args.dataset, &args.out, &req, &mut |stage, done, total| {
        if bar.as_ref().is_none_or(|(s, _)| *s != stage) {
            if let Some((_, b)) = bar.take() {
                b.finish_and_clear();
            }
            let name = match stage {
                Stage::Fingerprint => "fingerprint",
                Stage::Preprocess => "preprocess",
            };
            bar = Some((stage, progress::bar(total as u64, name)));
        }
        if let Some((_, b)) = &bar {
            b.set_position(done as u64);
        }
    })?;
    if let Some((_, b)) = bar {
        b.finish_and_clear();
    }
    let full = plans.configuration("3d_fullres")?;
    let cpu = plans.configuration("3d_cpu")?;
    println!(
        "3d_fullres: spacing {:?} patch {:?} batch {}; 3d_cpu: spacing {:?} patch {:?} -> {}",
        full.spacing,
        full.patch_size,
        full.batch_size,
        cpu.spacing,
        cpu.patch_size,
        args.out.display()
    );
    Ok(())
}
