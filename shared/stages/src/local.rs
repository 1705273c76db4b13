//! The embedded default: a directory as the bucket (object-created events for the upload
//! prefixes, `incoming/` and `models/` and the original's where configured, go to the ingest queue, as the S3 notifications of the templates do) and in-process
//! queues with SQS semantics, each with a dead-letter queue after 3 receives. `run_until_idle`
//! plays Lambda's event source mappings: it feeds every queue's messages to its handler until
//! all queues are empty.

use crate::StageError;
use crate::dispatch::{self, Outputs};
use burn::tensor::Device;
use statapp_pipeline::queue::{Clock, SystemClock};
use statapp_pipeline::{DirStore, JobQueue, MemQueue, Prefixes};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Receives before a message goes to the dead-letter queue.
pub const MAX_RECEIVES: u32 = 3;

/// The stages, in pipeline order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Ingest,
    Infer,
    Aggregate,
    Metrics,
    Merge,
}

impl Stage {
    /// The stage's name in progress lines and summaries.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Ingest => "ingest",
            Stage::Infer => "infer",
            Stage::Aggregate => "ensemble",
            Stage::Metrics => "metrics",
            Stage::Merge => "merge",
        }
    }
}

#[derive(Debug)]
pub struct LocalPipeline {
    pub store: DirStore,
    pub ingest: Arc<MemQueue>,
    pub infer: Arc<MemQueue>,
    pub aggregate: Arc<MemQueue>,
    pub metrics: Arc<MemQueue>,
    pub merge: Arc<MemQueue>,
    pub dead_letters: Arc<MemQueue>,
    /// Where uploads are (`incoming/`, `models/` and the original's prefixes where configured).
    pub prefixes: Prefixes,
    /// How the infer stage runs (budget, mirroring, gather delay).
    pub settings: crate::infer::InferSettings,
}

/// Where `serve` keeps what another process (`statapp status`) cannot see of the in-process
/// queues: `queues.json` (depths) and `dead-letters/<digest>.json` (each dead-lettered body,
/// kept across runs until deleted). Inside the bucket directory, never listed as an object.
pub const STATE_DIR: &str = ".statapp";

/// One queue's messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueueDepth {
    pub waiting: usize,
    pub in_flight: usize,
}

/// The queues as `serve` last recorded them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueueState {
    /// Seconds since the epoch.
    pub updated: u64,
    /// Process id of the `serve` that wrote it.
    pub pid: u32,
    pub queues: std::collections::BTreeMap<String, QueueDepth>,
}

fn state_err(path: &Path) -> impl Fn(std::io::Error) -> StageError + '_ {
    move |e| StageError::State {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

/// Dead-lettered message bodies recorded under `bucket/.statapp/dead-letters/`.
pub fn recorded_dead_letters(bucket: &Path) -> Result<Vec<String>, StageError> {
    let dir = bucket.join(STATE_DIR).join("dead-letters");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for e in entries {
        let path = e.map_err(state_err(&dir))?.path();
        if path.extension().is_some_and(|x| x == "json") {
            out.push(std::fs::read_to_string(&path).map_err(state_err(&path))?);
        }
    }
    out.sort();
    Ok(out)
}

/// The last `queues.json`, if a `serve` wrote one.
pub fn recorded_queues(bucket: &Path) -> Result<Option<QueueState>, StageError> {
    let path = bucket.join(STATE_DIR).join("queues.json");
    let Ok(body) = std::fs::read(&path) else {
        return Ok(None);
    };
    let state =
        serde_json::from_slice(&body).map_err(StageError::json(path.display().to_string()))?;
    Ok(Some(state))
}

/// Counts of a run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunStats {
    pub handled: usize,
    pub failed: usize,
}

impl LocalPipeline {
    pub fn open(bucket: &Path) -> Result<Self, StageError> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let dead_letters = Arc::new(MemQueue::new("dead-letters", clock.clone()));
        let queue = |name: &str| {
            Arc::new(
                MemQueue::new(name, clock.clone())
                    .with_dead_letter(dead_letters.clone(), MAX_RECEIVES),
            )
        };
        let ingest = queue("ingest");
        let prefixes = Prefixes::from_env();
        let mut store = DirStore::open(bucket, "statapp-local")?;
        for prefix in prefixes.notified() {
            store = store.notify(&prefix, ingest.clone());
        }
        Ok(Self {
            store,
            prefixes,
            ingest,
            infer: queue("infer"),
            aggregate: queue("aggregate"),
            metrics: queue("metrics"),
            merge: queue("merge"),
            dead_letters,
            settings: crate::infer::InferSettings::from_env()?,
        })
    }

    /// Queues the object-created event of every upload already in the bucket (`incoming/` and
    /// `models/`): what a watcher that just started, or `serve --once`, has to catch up on. A
    /// case or model seen before is recognised by ingest and costs a read, nothing more.
    pub fn rescan(&self) -> Result<usize, StageError> {
        let mut n = 0;
        for prefix in self.prefixes.notified() {
            n += self.store.announce(&prefix)?;
        }
        Ok(n)
    }

    fn stage_queues(&self) -> [(Stage, &Arc<MemQueue>); 5] {
        [
            (Stage::Ingest, &self.ingest),
            (Stage::Infer, &self.infer),
            (Stage::Aggregate, &self.aggregate),
            (Stage::Metrics, &self.metrics),
            (Stage::Merge, &self.merge),
        ]
    }

    /// Records the queue depths and every dead-lettered body under [`STATE_DIR`], each file
    /// written whole.
    pub fn save_state(&self) -> Result<(), StageError> {
        let dir = self.store.root().join(STATE_DIR);
        let dead = dir.join("dead-letters");
        std::fs::create_dir_all(&dead).map_err(state_err(&dead))?;
        for body in self.dead_letters.bodies() {
            let path = dead.join(format!("{}.json", statapp_pipeline::body_digest(&body)));
            if !path.exists() {
                statapp_volume::write_atomic(&path, body.as_bytes()).map_err(state_err(&path))?;
            }
        }
        let queues = self
            .stage_queues()
            .iter()
            .map(|(stage, q)| {
                let (waiting, in_flight) = q.counts();
                (stage.name().to_string(), QueueDepth { waiting, in_flight })
            })
            .collect();
        let state = QueueState {
            updated: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            pid: std::process::id(),
            queues,
        };
        let text = serde_json::to_string_pretty(&state).map_err(StageError::json("queues.json"))?;
        let path = dir.join("queues.json");
        statapp_volume::write_atomic(&path, text.as_bytes()).map_err(state_err(&path))
    }

    fn outputs(&self) -> Outputs<'_> {
        Outputs {
            infer: self.infer.as_ref(),
            aggregate: self.aggregate.as_ref(),
            metrics: self.metrics.as_ref(),
            merge: self.merge.as_ref(),
        }
    }

    fn handle(&self, stage: Stage, body: &str, device: &Device) -> Result<(), StageError> {
        let (store, out) = (&self.store, self.outputs());
        match stage {
            Stage::Ingest => dispatch::preprocess(body, store, out),
            Stage::Infer => dispatch::infer(body, store, out, device, &self.settings),
            Stage::Aggregate | Stage::Merge => dispatch::aggregate(body, store, out),
            Stage::Metrics => dispatch::metrics(body, store, out),
        }
    }

    /// Runs every queue until all are empty; failed messages are retried (visibility 0) and
    /// dead-lettered after `MAX_RECEIVES`. `on_done` sees each handled message.
    pub fn run_until_idle(
        &self,
        device: &Device,
        on_done: &mut dyn FnMut(Stage, &Result<(), StageError>),
    ) -> Result<RunStats, StageError> {
        let mut stats = RunStats::default();
        loop {
            let mut progressed = false;
            for (stage, q) in self.stage_queues() {
                let batch = q.receive(64, Duration::ZERO)?;
                if batch.is_empty() {
                    continue;
                }
                progressed = true;
                if stage == Stage::Merge {
                    // one merge reads every row: the queued requests collapse into one
                    let r = self.handle(stage, &batch[0].body, device);
                    on_done(stage, &r);
                    if r.is_ok() {
                        for d in &batch {
                            q.delete(&d.receipt)?;
                        }
                        stats.handled += 1;
                    } else {
                        stats.failed += 1;
                    }
                    continue;
                }
                for d in batch {
                    let r = self.handle(stage, &d.body, device);
                    on_done(stage, &r);
                    match r {
                        Ok(()) => {
                            q.delete(&d.receipt)?;
                            stats.handled += 1;
                        }
                        Err(e) => {
                            tracing::warn!(queue = q.name(), error = %e, receive = d.receive_count, "job failed");
                            stats.failed += 1;
                        }
                    }
                }
                // downstream stages run as soon as there is work for them
                break;
            }
            if !progressed {
                // delayed messages (a gather waiting for its parts): sleep until one is due
                let queues = [
                    &self.ingest,
                    &self.infer,
                    &self.aggregate,
                    &self.metrics,
                    &self.merge,
                ];
                match queues.iter().filter_map(|q| q.next_visible()).min() {
                    Some(t) => std::thread::sleep(t.saturating_duration_since(Instant::now())),
                    None => return Ok(stats),
                }
            }
        }
    }
}
