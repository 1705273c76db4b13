#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The original project's `.env` and commands against moto's S3/SQS server (started by
//! tools/test.sh): `setup`, `upload-model-artifacts`, `upload-data`, `run`, `compute-metrics`,
//! `dl-metrics`, `status` and `empty-data`, with only the original's variable names.

mod common;

use common::{copy_tree, fixtures, text};
use statapp_aws::{Aws, AwsConfig, S3Store, SqsQueue};
use statapp_pipeline::{JobQueue, Key, ObjectStore};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

fn endpoint() -> String {
    std::env::var("STATAPP_TEST_ENDPOINT")
        .expect("STATAPP_TEST_ENDPOINT is not set: run the suite with tools/test.sh")
}

/// A working directory with the original's `.env` (METRICS.md §15) pointing at moto.
struct Work {
    dir: tempfile::TempDir,
    bucket: String,
    queue_prefix: String,
}

impl Work {
    fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bucket = format!("orig-{name}-{}", std::process::id());
        let env = format!(
            "S3_ENDPOINT={}\nS3_ACCESS_KEY=test\nS3_SECRET_KEY=test\nS3_BUCKET={bucket}\n\
             S3_DATA_DIR=data\nS3_ARTIFACTS_DIR=artifacts\nS3_OUTPUT_DIR=output\n\
             S3_METRICS_DIR=metrics_results\nS3_MODEL_ARTIFACTS_SUBDIR=models\n\
             S3_PROPROCESSING_ARTIFACTS_SUBDIR=preprocessing\n",
            endpoint()
        );
        std::fs::write(dir.path().join(".env"), env).unwrap();
        Self {
            dir,
            queue_prefix: bucket.clone(),
            bucket,
        }
    }

    /// `statapp run --until-idle` with failed messages back after 1 s.
    fn run_until_idle(&self) -> String {
        self.run(&[
            "run",
            "--until-idle",
            "--visibility-seconds",
            "1",
            "--timeout-seconds",
            "600",
        ])
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_statapp"));
        c.args(args)
            .current_dir(self.dir.path())
            // only the .env speaks: none of statapp's own names
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("STATAPP_BUCKET")
            .env("STATAPP_QUEUE_PREFIX", &self.queue_prefix)
            .env("AWS_EC2_METADATA_DISABLED", "true");
        c
    }

    fn run(&self, args: &[&str]) -> String {
        let o = self.command(args).output().unwrap();
        let out = text(&o);
        assert!(o.status.success(), "statapp {args:?}: {out}");
        out
    }

    fn run_with_stdin(&self, args: &[&str], stdin: &str) -> String {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "statapp {args:?}: {}", text(&o));
        text(&o)
    }

    /// The test's own view of the bucket and its ingest queue.
    fn clients(&self) -> (S3Store, SqsQueue) {
        let config = AwsConfig::from_vars(|name| match name {
            "STATAPP_BUCKET" => Some(self.bucket.clone()),
            "AWS_ENDPOINT_URL" => Some(endpoint()),
            "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY" => Some("test".into()),
            _ => None,
        })
        .unwrap();
        let runtime = Box::leak(Box::new(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap(),
        ));
        let aws = runtime.block_on(Aws::connect(&config));
        let queue =
            SqsQueue::lookup(aws.clone(), &format!("{}-ingest", self.queue_prefix)).unwrap();
        (S3Store::new(aws, self.bucket.clone()), queue)
    }
}

fn rows(csv: &Path) -> Vec<String> {
    std::fs::read_to_string(csv)
        .unwrap()
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect()
}

#[test]
fn the_originals_env_and_commands_run_the_pipeline_on_moto() {
    let w = Work::new("flow");
    w.run(&["setup", "--visibility-seconds", "1", "--max-receives", "1"]);
    let out = w.run(&[
        "upload-model-artifacts",
        fixtures().join("nnunet_model/model").to_str().unwrap(),
        "anno1_init112233_foldall",
    ]);
    assert!(
        out.contains("nnU-Net model anno1_init112233_foldall"),
        "{out}"
    );
    // an id that would overwrite the ensemble's row is refused before anything is uploaded
    let refused = w
        .command(&[
            "upload-model-artifacts",
            fixtures().join("nnunet_model/model").to_str().unwrap(),
            "ensemble_all",
        ])
        .output()
        .unwrap();
    assert!(
        !refused.status.success() && text(&refused).contains("belong to the ensembles"),
        "{}",
        text(&refused)
    );
    let (store, ingest) = w.clients();
    assert!(store.list("models/ensemble_all/").unwrap().is_empty());
    // the original's sets at the bucket root: UKCHLL001 is a training patient, not scored
    w.run(&["original-splits", "-o", "splits.json"]);
    let splits = std::fs::read(w.dir.path().join("splits.json")).unwrap();
    store
        .put(&Key::new("splits.json").unwrap(), &splits)
        .unwrap();
    let data = w.dir.path().join("data");
    copy_tree(&fixtures().join("hostile/valid"), &data.join("UKCHLL010"));
    copy_tree(&fixtures().join("hostile/valid"), &data.join("UKCHLL001"));
    copy_tree(
        &fixtures().join("hostile/label_negative"),
        &data.join("UKCHLL011"),
    );
    let out = w.run(&["upload-data", "data"]);
    assert!(
        out.contains("uploaded 12 file(s)") && out.contains("/data/"),
        "{out}"
    );
    // a message no handler can read: dead-lettered after one receive
    ingest.send("this is not an S3 event").unwrap();
    w.run_until_idle();
    w.run(&["dl-metrics"]);
    let csv = w.dir.path().join("metrics.csv");
    let first = rows(&csv);
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(
        store
            .list("predictions/anno1_init112233_foldall/UKCHLL001/")
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .exists(&Key::new("cases/UKCHLL001/ingested.json").unwrap())
            .unwrap()
    );
    assert!(
        first[0].starts_with("UKCHLL010,anno1_init112233_foldall,"),
        "{first:?}"
    );

    // compute-metrics queues the row again once it is gone
    let scored: Vec<Key> = store.list("metrics/").unwrap();
    assert!(!scored.is_empty());
    store.delete_many(&scored).unwrap();
    let out = w.run(&["compute-metrics", "010", "-m", "anno1_init112233_foldall"]);
    assert!(
        out.contains("queued 1 metric job(s) for 1 patient(s)"),
        "{out}"
    );
    let unknown = w.command(&["compute-metrics", "999"]).output().unwrap();
    assert!(!unknown.status.success() && text(&unknown).contains("999"));
    w.run_until_idle();
    w.run(&["dl-metrics", "-o", "again.csv"]);
    assert_eq!(rows(&w.dir.path().join("again.csv")), first);

    let status: serde_json::Value = serde_json::from_str(&w.run(&["status", "--json"])).unwrap();
    assert_eq!(status["ingested"], 2, "{status}");
    assert_eq!(
        status["predicted"]["anno1_init112233_foldall"], 1,
        "{status}"
    );
    assert_eq!(status["queues"]["ingest"]["dead_letters"], 1, "{status}");
    assert_eq!(status["queues"]["infer"]["dead_letters"], 0, "{status}");
    assert_eq!(status["errors"][0]["case"], "UKCHLL011", "{status}");
    assert_eq!(status["errors"][0]["kind"], "InvalidLabel", "{status}");
}

#[test]
fn empty_data_asks_first_then_deletes_more_than_a_thousand_objects() {
    let w = Work::new("empty");
    w.run(&["setup"]);
    let (store, _) = w.clients();
    for i in 0..1005 {
        let key = match i {
            0..1000 => format!("data/UKCHLL{i:03}/annotation_1.nii.gz"),
            _ => format!("data/extra{i}/image.nii.gz"),
        };
        store.put(&Key::new(key).unwrap(), b"x").unwrap();
    }
    store
        .put(&Key::new("models/keep/model.json").unwrap(), b"{}")
        .unwrap();
    let out = w.run_with_stdin(&["empty-data"], "n\n");
    assert!(
        out.contains("delete 1005 object(s)") && out.contains("nothing deleted"),
        "{out}"
    );
    assert_eq!(store.list("data/").unwrap().len(), 1005);
    let out = w.run_with_stdin(&["empty-data"], "y\n");
    assert!(out.contains("deleted 1005 object(s)"), "{out}");
    assert!(store.list("data/").unwrap().is_empty());
    // artifacts are another command's
    assert_eq!(store.list("models/").unwrap().len(), 1);
    let out = w.run(&["empty-artifacts", "--confirm"]);
    assert!(out.contains("deleted 1 object(s)"), "{out}");
}
