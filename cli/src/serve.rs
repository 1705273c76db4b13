//! `statapp serve`: the embedded pipeline on a directory bucket that other tools write into.

use anyhow::{Context, Result};
use burn::tensor::Device;
use clap::Parser;
use statapp_pipeline::{Key, ObjectStore};
use statapp_stages::ingest::sweep_incomplete;
use statapp_stages::local::LocalPipeline;
use statapp_stages::score::COMBINED;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Parser)]
pub struct Args {
    /// The directory used as the bucket: uploads go under `incoming/<case>/` and `models/<id>/`.
    #[arg(long)]
    bucket: PathBuf,
    /// Process what is in the bucket now and exit when every queue is idle.
    #[arg(long)]
    once: bool,
    /// Once idle, a case still missing files this many seconds after its last upload gets an
    /// `IncompleteCase` error in `errors/<case>.json`.
    #[arg(long, default_value_t = 3600)]
    incomplete_after_s: u64,
}

pub fn run(args: Args) -> Result<()> {
    anyhow::ensure!(
        args.once,
        "watching a bucket is not available yet: pass --once to process what is there"
    );
    std::fs::create_dir_all(&args.bucket)
        .with_context(|| format!("creating {}", args.bucket.display()))?;
    let pipeline = LocalPipeline::open(&args.bucket)?;
    let found = pipeline.rescan()?;
    println!("{found} upload(s) found in {}", args.bucket.display());
    let device = Device::flex();
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    let stats = pipeline.run_until_idle(&device, &mut |stage, _| {
        *counts.entry(stage.name()).or_default() += 1;
    })?;
    let after = std::time::Duration::from_secs(args.incomplete_after_s);
    let incomplete = sweep_incomplete(&pipeline.store, std::time::SystemTime::now(), after)?;
    if !incomplete.is_empty() {
        println!("{} incomplete case(s) reported", incomplete.len());
    }
    let rejected = pipeline.store.list("errors/")?.len();
    let dead = pipeline.dead_letters.bodies().len();
    println!(
        "{} job(s) handled {counts:?}, {} failed attempt(s), {dead} dead-lettered, {rejected} case(s) with errors/",
        stats.handled, stats.failed
    );
    if pipeline.store.exists(&Key::new(COMBINED)?)? {
        println!("metrics: {}", args.bucket.join(COMBINED).display());
    }
    Ok(())
}
