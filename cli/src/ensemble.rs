//! `statapp ensemble`: mean of member predictions (nnU-Net's rule), on local directories.

use anyhow::{Context, Result};
use statapp_nnunet::ensemble::{ensemble, write_prediction};
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
    let (probs, labels) = ensemble(&args.members).context("ensembling")?;
    bar.finish_and_clear();
    write_prediction(&args.out, &probs, &labels)?;
    println!(
        "ensemble of {} member(s) -> {}",
        args.members.len(),
        args.out.display()
    );
    Ok(())
}
