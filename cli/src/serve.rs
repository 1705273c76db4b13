//! `statapp serve`: the embedded pipeline on a directory bucket that other tools write into.
//! Uploads are found by scanning `incoming/` and `models/` (on start, then every `--poll-ms`):
//! a file is announced once its modification time has been still for `--settle-ms`, so a copy in
//! progress is not read half-written. Scanning rather than inotify works the same on network and
//! container file systems, where file-system notifications are often missing.

use anyhow::{Context, Result};
use burn::tensor::Device;
use clap::Parser;
use statapp_pipeline::{Key, ObjectStore};
use statapp_stages::ingest::sweep_incomplete;
use statapp_stages::local::LocalPipeline;
use statapp_stages::score::COMBINED;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

#[derive(Debug, Parser)]
pub struct Args {
    /// The directory used as the bucket: uploads go under `incoming/<case>/` and `models/<id>/`.
    #[arg(long)]
    bucket: PathBuf,
    /// Process what is in the bucket now and exit when every queue is idle.
    #[arg(long)]
    once: bool,
    /// How often the bucket is scanned for new or changed files.
    #[arg(long, default_value_t = 1000)]
    poll_ms: u64,
    /// How long a file must be unchanged before it is read (a copy in progress is left alone).
    #[arg(long, default_value_t = 2000)]
    settle_ms: u64,
    /// Once idle, a case still missing files this many seconds after its last upload gets an
    /// `IncompleteCase` error in `errors/<case>.json`.
    #[arg(long, default_value_t = 3600)]
    incomplete_after_s: u64,
}

pub fn run(args: Args) -> Result<()> {
    std::fs::create_dir_all(&args.bucket)
        .with_context(|| format!("creating {}", args.bucket.display()))?;
    let pipeline = LocalPipeline::open(&args.bucket)?;
    let device = Device::flex();
    let mut seen = HashMap::new();
    // --once takes every file as it is: nothing is being copied in
    let settle = if args.once {
        Duration::ZERO
    } else {
        Duration::from_millis(args.settle_ms)
    };
    let found = announce_changes(&pipeline, &mut seen, settle)?;
    println!("{found} upload(s) found in {}", args.bucket.display());
    loop {
        process(&pipeline, &device, &args)?;
        if args.once {
            return Ok(());
        }
        while announce_changes(&pipeline, &mut seen, settle)? == 0 {
            std::thread::sleep(Duration::from_millis(args.poll_ms));
        }
    }
}

/// Announces the uploads that are new or changed since the last scan and have settled.
fn announce_changes(
    pipeline: &LocalPipeline,
    seen: &mut HashMap<Key, SystemTime>,
    settle: Duration,
) -> Result<usize> {
    let store = &pipeline.store;
    let now = SystemTime::now();
    let mut announced = 0;
    for prefix in ["incoming/", "models/"] {
        for key in store.list(prefix)? {
            let Some(modified) = store.modified(&key)? else {
                continue;
            };
            let settled = now.duration_since(modified).is_ok_and(|age| age >= settle);
            if settled && seen.get(&key) != Some(&modified) && store.announce_key(&key)? {
                seen.insert(key, modified);
                announced += 1;
            }
        }
    }
    Ok(announced)
}

/// Runs every queue until idle, sweeps incomplete cases, and says what happened.
fn process(pipeline: &LocalPipeline, device: &Device, args: &Args) -> Result<()> {
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    let stats = pipeline.run_until_idle(device, &mut |stage, _| {
        *counts.entry(stage.name()).or_default() += 1;
    })?;
    let after = Duration::from_secs(args.incomplete_after_s);
    let incomplete = sweep_incomplete(&pipeline.store, SystemTime::now(), after)?;
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
