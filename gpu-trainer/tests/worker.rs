#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The trainer worker on the CPU: jobs from a directory queue become model directories; repeats
//! are no-ops; bad jobs are kept with their reason.

mod common;

use burn::tensor::Device;
use statapp_gpu_trainer::{Outcome, drain};
use statapp_pipeline::DirQueue;
use statapp_pipeline::jobs::{Job, TrainJob};

#[test]
fn queue_jobs_train_models_once_and_failures_are_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let prepared = common::prepared(tmp.path(), 3, 3, 2);
    let models = tmp.path().join("models");
    let job = TrainJob {
        annotator: 2,
        seed: 445566,
        fold: "all".into(),
        configuration: "3d_cpu".into(),
        data: prepared.display().to_string(),
        models: models.display().to_string(),
        epochs: 1,
        iterations: 1,
        val_iterations: 1,
        patience: 20,
    };
    let queue = DirQueue::open(tmp.path().join("queue")).unwrap();
    queue.send(&Job::Train(job.clone()).to_json()).unwrap();
    let out = drain(&queue, &Device::flex()).unwrap();
    assert_eq!(
        out,
        vec![Outcome::Trained {
            model_id: "anno2_init445566_foldall".into(),
            epochs: 1
        }]
    );
    assert!(
        models
            .join("anno2_init445566_foldall/checkpoint_best.bpk")
            .is_file()
    );

    // the same message again (at-least-once delivery) trains nothing
    queue.send(&Job::Train(job.clone()).to_json()).unwrap();
    let out = drain(&queue, &Device::flex()).unwrap();
    assert!(matches!(&out[..], [Outcome::AlreadyPresent { .. }]));

    // a job on missing data and a message that is not a job both fail with a reason
    let bad = TrainJob {
        data: tmp.path().join("nowhere").display().to_string(),
        seed: 1,
        ..job
    };
    queue.send(&Job::Train(bad).to_json()).unwrap();
    queue.send("{\"version\":1,\"kind\":\"train\"}").unwrap();
    let out = drain(&queue, &Device::flex()).unwrap();
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|o| matches!(o, Outcome::Failed { .. })));
    let failed = tmp.path().join("queue/failed");
    let notes: Vec<String> = std::fs::read_dir(&failed)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".error.txt"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert_eq!(notes.len(), 2);
    assert!(
        notes.iter().any(|n| n.contains("nnUNetPlans.json")),
        "{notes:?}"
    );
    assert!(
        notes.iter().any(|n| n.contains("missing field")),
        "{notes:?}"
    );
    assert_eq!(queue.pending().unwrap(), 0);
}
