//! `statapp serve`: the embedded pipeline on a directory bucket that other tools write into.
//! Uploads are found by scanning `incoming/` and `models/` on start, whenever a file-system
//! notification (inotify, through `notify`) says something changed there, and every `--poll-ms`
//! anyway (network and container file systems often send no notifications). A file is
//! announced once its modification time has been still for `--settle-ms`, so a copy in progress
//! is not read half-written. The upload
//! prefixes are statapp's and the original's (`S3_DATA_DIR`, `S3_ARTIFACTS_DIR`) where set.
//! Training jobs queued with `statapp queue-training` run on a local CPU worker once the other
//! queues are idle; the models they write under `models/` are registered like uploads.

use anyhow::{Context, Result};
use burn::tensor::Device;
use clap::Parser;
use statapp_gpu_trainer::{Outcome, drain_in};
use statapp_pipeline::DirQueue;
use statapp_pipeline::jobs::{Job, TrainJob};
use statapp_pipeline::{Key, ObjectStore};
use statapp_stages::ingest::sweep_incomplete;
use statapp_stages::local::LocalPipeline;
use statapp_stages::score::COMBINED;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

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
    let found = announce_changes(&pipeline, &mut seen, settle)?.announced;
    println!("{found} upload(s) found in {}", args.bucket.display());
    let train_queue = DirQueue::open(args.bucket.join(TRAIN_QUEUE))?;
    let wake = Wake::watch(&args.bucket, &pipeline.prefixes.notified());
    loop {
        process(&pipeline, &device, &args)?;
        // new models are uploads like any other: the next scan registers them
        if train(&train_queue, &args.bucket, &device)? > 0 {
            announce_changes(&pipeline, &mut seen, Duration::ZERO)?;
            continue;
        }
        if args.once {
            return Ok(());
        }
        let poll = Duration::from_millis(args.poll_ms);
        loop {
            let scan = announce_changes(&pipeline, &mut seen, settle)?;
            if scan.announced > 0 || has_jobs(&train_queue)? {
                break;
            }
            wake.wait(if scan.unsettled {
                poll.min(settle)
            } else {
                poll
            });
        }
    }
}

/// File-system notifications for the upload prefixes, as wake-ups of the scan loop.
struct Wake {
    // dropping the watcher stops the notifications
    _watcher: Option<notify::RecommendedWatcher>,
    events: std::sync::mpsc::Receiver<()>,
}

impl Wake {
    /// Watches `bucket` for changes under `prefixes` (and the train queue). Without
    /// notifications (the watcher cannot start) the loop still scans every `--poll-ms`: said.
    fn watch(bucket: &Path, prefixes: &[String]) -> Self {
        let (tx, events) = std::sync::mpsc::channel();
        let mut watched: Vec<PathBuf> = prefixes.iter().map(|p| bucket.join(p)).collect();
        watched.push(bucket.join(TRAIN_QUEUE));
        let handler = move |event: notify::Result<notify::Event>| {
            let relevant = event.is_ok_and(|e| {
                e.paths
                    .iter()
                    .any(|p| watched.iter().any(|w| p.starts_with(w)))
            });
            // a send fails only once serve is exiting
            if relevant && tx.send(()).is_err() {
                tracing::debug!("notification after the loop ended");
            }
        };
        let watcher = notify::recommended_watcher(handler).and_then(|mut w| {
            notify::Watcher::watch(&mut w, bucket, notify::RecursiveMode::Recursive).map(|()| w)
        });
        let watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                println!(
                    "no file-system notifications for {} ({e}): scanning on a timer only",
                    bucket.display()
                );
                None
            }
        };
        Self {
            _watcher: watcher,
            events,
        }
    }

    /// Until a notification or `timeout`; notifications already queued are taken together.
    fn wait(&self, timeout: Duration) {
        if self.events.recv_timeout(timeout).is_ok() {
            while self.events.try_recv().is_ok() {}
        }
    }
}

/// The train queue of a directory bucket (the trainer's directory queue): `queue-training`
/// writes `TrainJob`s there, `serve` runs them on a local CPU worker.
pub const TRAIN_QUEUE: &str = ".statapp/train";

fn has_jobs(queue: &DirQueue) -> Result<bool> {
    Ok(queue.pending()? > 0)
}

/// Trains every queued job (paths relative to the bucket); returns how many models are new.
fn train(queue: &DirQueue, bucket: &Path, device: &Device) -> Result<usize> {
    let mut trained = 0;
    for outcome in drain_in(queue, bucket, device)? {
        match outcome {
            Outcome::Trained { model_id, epochs } => {
                println!("trained {model_id} ({epochs} epoch(s))");
                trained += 1;
            }
            Outcome::AlreadyPresent { model_id } => println!("{model_id} already trained"),
            Outcome::Failed { id, reason } => println!("train job {id} failed: {reason}"),
        }
    }
    Ok(trained)
}

#[derive(Debug, Parser)]
pub struct QueueTrainingArgs {
    /// The directory bucket `serve` runs on.
    #[arg(long)]
    bucket: PathBuf,
    /// The prepared dataset (`statapp prepare ... --out BUCKET/prepared/anno1`), relative to
    /// the bucket.
    #[arg(long)]
    data: String,
    /// One model per annotator and seed.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    annotators: Vec<u8>,
    #[arg(long, value_delimiter = ',', default_value = "112233,445566,778899")]
    seeds: Vec<u64>,
    #[command(flatten)]
    schedule: crate::train::Schedule,
}

/// `statapp queue-training`: one `TrainJob` per annotator and seed into the bucket's train
/// queue. `--data` may hold `{annotator}` for one prepared dataset per annotator.
pub fn queue_training(args: QueueTrainingArgs) -> Result<()> {
    let queue = DirQueue::open(args.bucket.join(TRAIN_QUEUE))?;
    let mut n = 0;
    for &annotator in &args.annotators {
        for &seed in &args.seeds {
            let job = TrainJob {
                annotator,
                seed,
                fold: args.schedule.fold.clone(),
                configuration: args.schedule.configuration.clone(),
                data: args.data.replace("{annotator}", &annotator.to_string()),
                models: "models".into(),
                epochs: args.schedule.epochs,
                iterations: args.schedule.iterations,
                val_iterations: args.schedule.val_iterations,
                patience: args.schedule.patience,
            };
            queue.send(&Job::Train(job).to_json())?;
            n += 1;
        }
    }
    println!(
        "queued {n} train job(s) in {}",
        args.bucket.join(TRAIN_QUEUE).display()
    );
    Ok(())
}

/// What one scan did.
#[derive(Debug, Clone, Copy, Default)]
struct Scan {
    announced: usize,
    /// New or changed files not settled yet: scan again after the settle time.
    unsettled: bool,
}

/// Announces the uploads that are new or changed since the last scan and have settled.
fn announce_changes(
    pipeline: &LocalPipeline,
    seen: &mut HashMap<Key, SystemTime>,
    settle: Duration,
) -> Result<Scan> {
    let store = &pipeline.store;
    let now = SystemTime::now();
    let mut scan = Scan::default();
    for prefix in pipeline.prefixes.notified() {
        for key in store.list(&prefix)? {
            let Some(modified) = store.modified(&key)? else {
                continue;
            };
            if seen.get(&key) == Some(&modified) {
                continue;
            }
            let settled = now.duration_since(modified).is_ok_and(|age| age >= settle);
            if !settled {
                scan.unsettled = true;
            } else if store.announce_key(&key)? {
                seen.insert(key, modified);
                scan.announced += 1;
            }
        }
    }
    Ok(scan)
}

/// Runs every queue until idle, sweeps incomplete cases, and says what happened. The queues'
/// state is recorded for `statapp status` as it goes (at most once a second) and at the end.
fn process(pipeline: &LocalPipeline, device: &Device, args: &Args) -> Result<()> {
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    pipeline.save_state()?;
    let mut saved = Instant::now();
    let mut save_error = None;
    let stats = pipeline.run_until_idle(device, &mut |stage, _| {
        *counts.entry(stage.name()).or_default() += 1;
        if saved.elapsed() >= Duration::from_secs(1) {
            saved = Instant::now();
            if let Err(e) = pipeline.save_state() {
                save_error.get_or_insert(e);
            }
        }
    })?;
    if let Some(e) = save_error {
        return Err(e).context("recording the queues for `statapp status`");
    }
    pipeline.save_state()?;
    let after = Duration::from_secs(args.incomplete_after_s);
    let incomplete = sweep_incomplete(
        &pipeline.store,
        &pipeline.prefixes,
        SystemTime::now(),
        after,
    )?;
    if !incomplete.is_empty() {
        println!("{} incomplete case(s) reported", incomplete.len());
    }
    let rejected = pipeline.store.list("errors/")?.len();
    let dead = statapp_stages::local::recorded_dead_letters(&args.bucket)?.len();
    println!(
        "{} job(s) handled {counts:?}, {} failed attempt(s), {dead} dead-lettered, {rejected} case(s) with errors/",
        stats.handled, stats.failed
    );
    if pipeline.store.exists(&Key::new(COMBINED)?)? {
        println!("metrics: {}", args.bucket.join(COMBINED).display());
    }
    Ok(())
}
