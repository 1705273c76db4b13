//! `statapp ensemble`: mean of member predictions (nnU-Net's rule), on local directories.

use anyhow::{Context, Result};
use statapp_nnunet::ensemble::ensemble_to_dir;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Member prediction directories (prob_panc/kidn/livr.nii.gz, segmentation.nii.gz).
    #[arg(required = true)]
    members: Vec<PathBuf>,
    /// Output directory for the ensemble's probabilities and segmentation.
    #[arg(long, short)]
    out: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let bar = crate::progress::spinner(&format!("ensembling {} members", args.members.len()));
    ensemble_to_dir(&args.members, &args.out).context("ensembling")?;
    bar.finish_and_clear();
    println!(
        "ensemble of {} member(s) -> {}",
        args.members.len(),
        args.out.display()
    );
    Ok(())
}
