#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A worker process killed (SIGKILL) in the middle of training: its message returns to the
//! queue, the next worker resumes from `checkpoint_latest` and ends with the weights of a run
//! that was never interrupted.

mod common;

use burn::tensor::Device;
use statapp_model::checkpoint::{load_weights, read_info};
use statapp_pipeline::DirQueue;
use statapp_pipeline::jobs::{Job, TrainJob};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MODEL: &str = "anno1_init778899_foldall";

fn worker(queue: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_statapp-gpu-trainer"));
    cmd.args(["--device", "cpu", "--queue"])
        .arg(queue)
        .env("RUST_LOG", "info")
        .env("STATAPP_LOG_JSON", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

fn final_weights(models: &Path) -> Vec<Vec<f32>> {
    let dir = models.join(MODEL);
    let info = read_info(&dir).unwrap();
    load_weights(
        &info.network,
        &dir.join("checkpoint_final.bpk"),
        &Device::flex(),
    )
    .unwrap()
    .conv_weights()
}

/// The epoch a run will start at, from its checkpoint (None before the first one).
fn saved_epoch(models: &Path) -> Option<u64> {
    let state = models.join(format!(".partial-{MODEL}/checkpoint_latest/state.json"));
    let text = std::fs::read_to_string(state).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["next_epoch"].as_u64()
}

#[test]
fn a_killed_worker_is_resumed_by_the_next_to_the_same_weights() {
    let tmp = tempfile::tempdir().unwrap();
    // two cases: each worker run ends with nnU-Net's final validation over them
    let prepared = common::prepared(tmp.path(), 5, 2, 1);
    let job = |models: &Path| TrainJob {
        annotator: 1,
        seed: 778899,
        fold: "all".into(),
        configuration: "3d_cpu".into(),
        data: prepared.display().to_string(),
        models: models.display().to_string(),
        epochs: 6,
        iterations: 2,
        val_iterations: 1,
        patience: 20,
    };

    // uninterrupted
    let whole = tmp.path().join("whole");
    let q1 = tmp.path().join("q1");
    DirQueue::open(&q1)
        .unwrap()
        .send(&Job::Train(job(&whole)).to_json())
        .unwrap();
    assert!(worker(&q1).status().unwrap().success());

    // killed once epoch 2 is saved
    let models = tmp.path().join("killed");
    let q2 = tmp.path().join("q2");
    let queue = DirQueue::open(&q2).unwrap();
    queue.send(&Job::Train(job(&models)).to_json()).unwrap();
    let mut child = worker(&q2).spawn().unwrap();
    let started = Instant::now();
    while saved_epoch(&models).is_none_or(|e| e < 2) {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no checkpoint"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before the kill"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let at = saved_epoch(&models).unwrap();
    assert!(at < 6, "killed before the end");
    assert!(!models.join(MODEL).exists());
    assert_eq!(queue.pending().unwrap(), 0, "the message is in flight");

    // the next worker takes the message back and resumes
    let out = worker(&q2).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let said = |what: &str| {
        lines
            .iter()
            .filter(|l| l["fields"]["message"] == what)
            .map(|l| l["fields"]["epoch"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(said("resuming training"), [at], "{log}");
    let trained: Vec<u64> = (at..6).collect();
    assert_eq!(
        said("epoch"),
        trained,
        "only the epochs after the checkpoint"
    );
    assert_eq!(final_weights(&models), final_weights(&whole));
    assert!(!models.join(MODEL).join("checkpoint_latest").exists());
}
