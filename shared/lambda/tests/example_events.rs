#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The example events under `functions/*/events/` (for `cargo lambda invoke --data-file`) stay
//! valid: each is an SQS event Lambda would deliver, whose bodies the function's handler reads,
//! and the preprocess examples run through the real handler on a directory bucket.

use statapp_lambda::aws_lambda_events::event::sqs::SqsEvent;
use statapp_lambda::{Handler, handle_batch};
use statapp_pipeline::events::parse_object_created;
use statapp_pipeline::jobs::Job;
use statapp_pipeline::queue::SystemClock;
use statapp_pipeline::{DirStore, MemQueue};
use statapp_stages::dispatch::{self, Outputs, labels};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn examples(function: &str) -> Vec<(PathBuf, SqsEvent)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../functions")
        .join(function)
        .join("events");
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let event: SqsEvent = serde_json::from_str(&std::fs::read_to_string(&p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, event)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!out.is_empty(), "no examples in {}", dir.display());
    out
}

#[test]
fn job_examples_hold_the_jobs_their_function_handles() {
    for (function, kinds) in [
        ("infer", &["infer"][..]),
        ("metrics", &["metrics"]),
        ("aggregate", &["ensemble", "merge"]),
    ] {
        for (path, event) in examples(function) {
            for rec in &event.records {
                assert!(rec.message_id.is_some(), "{}", path.display());
                let body = rec.body.as_deref().unwrap();
                let job = Job::from_json(body).unwrap();
                let kind = serde_json::to_value(&job).unwrap()["kind"].clone();
                let kind = kind.as_str().unwrap();
                assert!(kinds.contains(&kind), "{}: {kind}", path.display());
            }
        }
    }
    let (_, event) = &examples("infer")[0];
    assert_eq!(
        labels(event.records[0].body.as_deref().unwrap()),
        (
            Some("case_001".to_string()),
            Some("anno1_init112233_foldall".to_string())
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn preprocess_examples_run_through_the_handler() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(DirStore::open(dir.path(), "statapp-data-example").unwrap());
    let infer = Arc::new(MemQueue::new("infer", Arc::new(SystemClock)));
    let other = Arc::new(MemQueue::new("other", Arc::new(SystemClock)));
    let (s, i, o) = (store.clone(), infer.clone(), other.clone());
    let handler: Handler = Arc::new(move |body: &str| {
        let out = Outputs {
            infer: i.as_ref(),
            aggregate: o.as_ref(),
            metrics: o.as_ref(),
            merge: o.as_ref(),
        };
        dispatch::preprocess(body, s.as_ref(), out)
    });
    for (path, event) in examples("preprocess") {
        for rec in &event.records {
            parse_object_created(rec.body.as_deref().unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
        // a partial upload waits, a test event is skipped, a model with no cases schedules none
        let response = handle_batch("preprocess", event, handler.clone()).await;
        assert!(
            response.batch_item_failures.is_empty(),
            "{}",
            path.display()
        );
    }
    assert!(infer.bodies().is_empty());
}
