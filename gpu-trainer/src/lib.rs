//! The trainer worker: claims `TrainJob` messages from a queue, trains the model on the given
//! burn device and writes `models/<model_id>/`. A job whose model already exists completes without
//! training again (messages arrive at least once); a job that fails is kept with its reason.

use anyhow::{Context, Result};
use burn::tensor::Device;
use statapp_model::train::{TrainSettings, train};
use statapp_pipeline::jobs::{Job, TrainJob};
use statapp_pipeline::{DirQueue, Received};
use std::path::Path;

/// How one message ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Trained { model_id: String, epochs: usize },
    AlreadyPresent { model_id: String },
    Failed { id: String, reason: String },
}

/// Trains one job, its `data` and `models` resolved against `root` (relative ones: the prefixes
/// of a directory bucket); `Ok(true)` when the model already existed.
pub fn run_job(job: &TrainJob, root: &Path, device: &Device) -> Result<(String, usize, bool)> {
    let settings = TrainSettings {
        configuration: job.configuration.clone(),
        annotator: job.annotator,
        seed: job.seed,
        fold: job.fold.clone(),
        max_epochs: job.epochs,
        iterations: job.iterations,
        val_iterations: job.val_iterations,
        patience: job.patience,
        ..TrainSettings::default()
    };
    let model_id = settings.model_id();
    let outcome = train(
        &root.join(&job.data),
        &root.join(&job.models),
        &settings,
        device,
        &mut |e| {
            tracing::info!(
                model = %model_id,
                epoch = e.epoch,
                train_loss = e.train_loss,
                val_loss = e.val_loss,
                ema_fg_dice = e.ema_fg_dice,
                seconds = e.seconds,
                "epoch"
            );
        },
    )
    .with_context(|| format!("training {model_id}"))?;
    Ok((model_id, outcome.log.epochs.len(), outcome.already_present))
}

fn handle(queue: &DirQueue, msg: Received, root: &Path, device: &Device) -> Result<Outcome> {
    let result = match Job::from_json(&msg.body) {
        Ok(Job::Train(job)) => run_job(&job, root, device),
        Ok(other) => Err(anyhow::anyhow!("not a train job: {other:?}")),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok((model_id, epochs, present)) => {
            queue.complete(msg)?;
            Ok(if present {
                Outcome::AlreadyPresent { model_id }
            } else {
                Outcome::Trained { model_id, epochs }
            })
        }
        Err(e) => {
            let reason = format!("{e:#}");
            tracing::error!(message_id = %msg.id, %reason, "train job failed");
            let id = msg.id.clone();
            queue.fail(msg, &reason)?;
            Ok(Outcome::Failed { id, reason })
        }
    }
}

/// Drains the queue: every pending message is claimed and handled in name order. Messages a
/// crashed run left in flight are requeued first. Paths in the jobs are taken as they are.
pub fn drain(queue: &DirQueue, device: &Device) -> Result<Vec<Outcome>> {
    drain_in(queue, Path::new(""), device)
}

/// [`drain`] with relative paths in the jobs resolved against `root`: the local CPU worker of
/// `statapp serve`, whose jobs name prefixes of its directory bucket.
pub fn drain_in(queue: &DirQueue, root: &Path, device: &Device) -> Result<Vec<Outcome>> {
    let requeued = queue.requeue_inflight()?;
    if requeued > 0 {
        tracing::warn!(requeued, "requeued jobs left in flight by an earlier run");
    }
    let mut out = Vec::new();
    while let Some(msg) = queue.receive()? {
        out.push(handle(queue, msg, root, device)?);
    }
    Ok(out)
}
