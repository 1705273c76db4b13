//! The embedded default: a directory as the bucket (object-created events for `incoming/` and
//! `models/` go to the ingest queue, as the S3 notifications of the templates do) and in-process
//! queues with SQS semantics, each with a dead-letter queue after 3 receives. `run_until_idle`
//! plays Lambda's event source mappings: it feeds every queue's messages to its handler until
//! all queues are empty.

use crate::StageError;
use crate::dispatch::{self, Outputs};
use burn::tensor::Device;
use statapp_pipeline::queue::{Clock, SystemClock};
use statapp_pipeline::{DirStore, JobQueue, MemQueue};
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
    /// How the infer stage runs (budget, mirroring, gather delay).
    pub settings: crate::infer::InferSettings,
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
        let store = DirStore::open(bucket, "statapp-local")?
            .notify("incoming/", ingest.clone())
            .notify("models/", ingest.clone());
        Ok(Self {
            store,
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
        Ok(self.store.announce("incoming/")? + self.store.announce("models/")?)
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
            for (stage, q) in [
                (Stage::Ingest, &self.ingest),
                (Stage::Infer, &self.infer),
                (Stage::Aggregate, &self.aggregate),
                (Stage::Metrics, &self.metrics),
                (Stage::Merge, &self.merge),
            ] {
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
