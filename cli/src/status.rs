//! `statapp status`: the bucket stage by stage (from the objects each stage writes), the queues
//! (SQS attributes on a real endpoint; on a directory bucket, what `serve` last recorded under
//! `.statapp/`), dead letters and the latest `errors/` entries.

use crate::bucket::{BucketArg, Target};
use anyhow::Result;
use statapp_pipeline::JobQueue;
use statapp_stages::local::{recorded_dead_letters, recorded_queues};
use statapp_stages::survey::{Survey, survey};
use std::collections::BTreeMap;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    bucket: BucketArg,
    /// One JSON document, for scripts.
    #[arg(long)]
    json: bool,
    /// How many of the latest `errors/` entries to show.
    #[arg(long, default_value_t = 10)]
    errors: usize,
}

/// One stage's queue.
#[derive(Debug, Default, serde::Serialize)]
struct Queue {
    waiting: usize,
    in_flight: usize,
    dead_letters: usize,
}

#[derive(Debug, serde::Serialize)]
struct Report {
    bucket: String,
    #[serde(flatten)]
    survey: Survey,
    queues: BTreeMap<String, Queue>,
    /// When the queue figures were taken (seconds since the epoch); on a directory bucket, the
    /// last time `serve` recorded them (`None`: it never ran there).
    queues_as_of: Option<u64>,
    /// Dead-lettered bodies (first 200 characters), on a directory bucket.
    dead_letter_bodies: Vec<String>,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The stage a dead-lettered body was queued for: a job names its kind, anything else was an
/// S3 event (or garbage) on the ingest queue.
fn stage_of(body: &str) -> &'static str {
    match statapp_pipeline::Job::from_json(body) {
        Ok(statapp_pipeline::Job::Infer(_) | statapp_pipeline::Job::Gather(_)) => "infer",
        Ok(statapp_pipeline::Job::Ensemble(_)) => "ensemble",
        Ok(statapp_pipeline::Job::Metrics(_)) => "metrics",
        Ok(statapp_pipeline::Job::Merge(_)) => "merge",
        _ => "ingest",
    }
}

/// Queues by stage, when they were read, and the dead-lettered bodies (directory bucket).
type Queues = (BTreeMap<String, Queue>, Option<u64>, Vec<String>);

fn queues(target: &Target) -> Result<Queues> {
    let mut out: BTreeMap<String, Queue> = BTreeMap::new();
    match target {
        Target::S3 { cloud, .. } => {
            let services = cloud.services()?;
            for (stage, q) in [
                ("ingest", &services.ingest),
                ("infer", &services.infer),
                ("ensemble", &services.aggregate),
                ("metrics", &services.metrics),
                ("merge", &services.merge),
            ] {
                let (in_flight, waiting) = q.in_flight_and_visible()?;
                let dead_letters = match q.dead_letter_queue()? {
                    Some(dlq) => dlq.approximate_len()?,
                    None => 0,
                };
                out.insert(
                    stage.into(),
                    Queue {
                        waiting,
                        in_flight,
                        dead_letters,
                    },
                );
            }
            Ok((out, Some(now()), Vec::new()))
        }
        Target::Dir { root, .. } => {
            let recorded = recorded_queues(root)?;
            for (stage, depth) in recorded.iter().flat_map(|r| &r.queues) {
                let q = out.entry(stage.clone()).or_default();
                q.waiting = depth.waiting;
                q.in_flight = depth.in_flight;
            }
            let train = root.join(crate::serve::TRAIN_QUEUE);
            if train.is_dir() {
                let (waiting, in_flight, failed) =
                    statapp_pipeline::DirQueue::open(&train)?.counts()?;
                out.insert(
                    "train".into(),
                    Queue {
                        waiting,
                        in_flight,
                        dead_letters: failed,
                    },
                );
            }
            let bodies = recorded_dead_letters(root)?;
            for b in &bodies {
                out.entry(stage_of(b).into()).or_default().dead_letters += 1;
            }
            let short = bodies
                .iter()
                .map(|b| b.chars().take(200).collect())
                .collect();
            Ok((out, recorded.map(|r| r.updated), short))
        }
    }
}

pub fn run(args: Args) -> Result<()> {
    let target = Target::open(&args.bucket)?;
    let survey = survey(target.store(), &target.prefixes(), args.errors)?;
    let (queues, queues_as_of, dead_letter_bodies) = queues(&target)?;
    let report = Report {
        bucket: target.url(),
        survey,
        queues,
        queues_as_of,
        dead_letter_bodies,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

fn ago(t: Option<u64>) -> String {
    match t {
        Some(t) => format!("{} s ago", now().saturating_sub(t)),
        None => "never".into(),
    }
}

fn print_report(r: &Report) {
    let s = &r.survey;
    println!("bucket {}", r.bucket);
    println!(
        "cases: {} file(s) uploaded, {} ingested, {} with errors/",
        s.uploaded_files,
        s.ingested,
        s.errors.len()
    );
    println!("models: {} registered {:?}", s.models.len(), s.models);
    for (name, n) in &s.predicted {
        println!("  predicted by {name}: {n} case(s)");
    }
    for (name, n) in &s.ensembled {
        println!("  ensembled {name}: {n} case(s)");
    }
    println!(
        "scored: {} metric row(s); combined.csv changed {}",
        s.scored,
        ago(s.combined_modified)
    );
    println!("queues (as of {}):", ago(r.queues_as_of));
    for (stage, q) in &r.queues {
        println!(
            "  {stage:<9} {} waiting, {} in flight, {} dead-lettered",
            q.waiting, q.in_flight, q.dead_letters
        );
    }
    for e in &s.errors {
        println!("error {} [{}] {}: {}", e.case, e.kind, e.file, e.message);
    }
}
