#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The ingest, metrics and merge stages on the embedded adapters (a directory bucket that emits
//! S3 events, in-process queues with SQS semantics): complete cases, duplicates, poison uploads,
//! hostile keys, metric rows equal to a direct run, and concurrent merges.

use statapp_metrics::{CasePaths, RoiMode, score_files};
use statapp_pipeline::jobs::{Job, MetricsJob};
use statapp_pipeline::queue::{Clock, ManualClock};
use statapp_pipeline::{DirStore, JobQueue, Key, MemQueue, ObjectStore};
use statapp_stages::ingest::{IngestSettings, Ingested, handle_event};
use statapp_stages::score::{COMBINED, handle_merge, handle_metrics};
use statapp_volume::{Volume, WriteOptions, encode_nifti};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const VIS: Duration = Duration::from_secs(60);

struct Env {
    _dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    ingest: Arc<MemQueue>,
    dlq: Arc<MemQueue>,
    infer: Arc<MemQueue>,
    store: DirStore,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::default());
    let c: Arc<dyn Clock> = clock.clone();
    let dlq = Arc::new(MemQueue::new("ingest-dlq", c.clone()));
    let ingest = Arc::new(MemQueue::new("ingest", c.clone()).with_dead_letter(dlq.clone(), 3));
    let infer = Arc::new(MemQueue::new("infer", c));
    let store = DirStore::open(dir.path().join("bucket"), "statapp")
        .unwrap()
        .notify("incoming/", ingest.clone());
    Env {
        _dir: dir,
        clock,
        ingest,
        dlq,
        infer,
        store,
    }
}

/// Delivers every visible ingest message once; failed ones stay for redelivery.
fn pump(e: &Env) -> Vec<Result<Vec<Ingested>, String>> {
    let mut out = Vec::new();
    for d in e.ingest.receive(100, VIS).unwrap() {
        match handle_event(
            &d.body,
            &e.store,
            e.infer.as_ref(),
            &IngestSettings::default(),
        ) {
            Ok(r) => {
                e.ingest.delete(&d.receipt).unwrap();
                out.push(Ok(r));
            }
            Err(err) => out.push(Err(err.to_string())),
        }
    }
    out
}

fn key(s: &str) -> Key {
    Key::new(s).unwrap()
}

fn gz<T: statapp_volume::Element>(v: &Volume<T>) -> Vec<u8> {
    encode_nifti(v, &WriteOptions::default(), true)
}

fn upload(e: &Env, case: &str, seed: u64) -> statapp_synth::Phantom {
    let mut p = statapp_synth::generate(seed, 0, statapp_synth::Size::Small);
    p.case_id = case.to_string();
    e.store
        .put(&key(&format!("incoming/{case}/image.nii.gz")), &gz(&p.ct))
        .unwrap();
    for (k, a) in p.annotations.iter().enumerate() {
        e.store
            .put(
                &key(&format!("incoming/{case}/annotation_{}.nii.gz", k + 1)),
                &gz(a),
            )
            .unwrap();
    }
    p
}

/// Every object of the bucket with its bytes.
fn snapshot(store: &DirStore) -> BTreeMap<String, Vec<u8>> {
    store
        .list("")
        .unwrap()
        .into_iter()
        .map(|k| (k.to_string(), store.get(&k).unwrap().unwrap()))
        .collect()
}

#[test]
fn complete_cases_are_copied_once_and_duplicates_change_nothing() {
    let e = env();
    e.store
        .put(&key("models/anno1_init1_foldall/model.json"), b"{}")
        .unwrap();
    upload(&e, "case_a", 1);
    let results = pump(&e);
    assert_eq!(results.len(), 4);
    let ready: Vec<_> = results
        .iter()
        .flat_map(|r| r.as_ref().unwrap())
        .filter(|r| matches!(r, Ingested::Ready { .. }))
        .collect();
    assert!(!ready.is_empty());
    for role in ["image", "annotation_1", "annotation_2", "annotation_3"] {
        assert!(
            e.store
                .exists(&key(&format!("cases/case_a/{role}.nii.gz")))
                .unwrap()
        );
    }
    let jobs = e.infer.bodies();
    assert!(
        jobs.iter()
            .all(|b| b.contains("\"kind\":\"infer\"") && b.contains("anno1_init1_foldall"))
    );
    let before = snapshot(&e.store);
    // every event delivered three more times: the bucket keeps the same keys and bytes
    for _ in 0..3 {
        for role in ["image", "annotation_1", "annotation_2", "annotation_3"] {
            let k = key(&format!("incoming/case_a/{role}.nii.gz"));
            let body = e.store.get(&k).unwrap().unwrap();
            let ev = statapp_pipeline::events::object_created_event(
                "statapp",
                &k,
                body.len() as u64,
                "",
                "t",
            );
            e.ingest.send(&ev.to_string()).unwrap();
        }
    }
    assert!(pump(&e).iter().all(|r| r.is_ok()));
    assert_eq!(snapshot(&e.store), before);
}

#[test]
fn poison_uploads_explain_themselves_once() {
    let e = env();
    upload(&e, "case_ok", 2);
    // a truncated image
    let p = upload(&e, "case_bad", 3);
    let img = gz(&p.ct);
    e.store
        .put(
            &key("incoming/case_bad/image.nii.gz"),
            &img[..img.len() / 2],
        )
        .unwrap();
    // an annotation on another grid
    let mut q = upload(&e, "case_grid", 4);
    let small = ndarray::Array3::<u8>::from_elem((4, 4, 4), 1);
    q.annotations[1] = Volume::new(
        small,
        statapp_volume::Geometry::axis_aligned([4, 4, 4], [1.0; 3], [0.0; 3]),
    )
    .unwrap();
    e.store
        .put(
            &key("incoming/case_grid/annotation_2.nii.gz"),
            &gz(&q.annotations[1]),
        )
        .unwrap();
    for _ in 0..4 {
        pump(&e);
        e.clock.advance(VIS);
    }
    pump(&e);
    assert!(e.store.exists(&key("cases/case_ok/image.nii.gz")).unwrap());
    assert!(!e.store.exists(&key("cases/case_bad/image.nii.gz")).unwrap());
    let err = |c: &str| -> serde_json::Value {
        serde_json::from_slice(
            &e.store
                .get(&key(&format!("errors/{c}.json")))
                .unwrap()
                .unwrap(),
        )
        .unwrap()
    };
    let bad = err("case_bad");
    assert_eq!(bad["kind"], "Truncated", "{bad}");
    assert_eq!(bad["file"], "incoming/case_bad/image.nii.gz", "{bad}");
    assert!(
        bad["message"].as_str().unwrap().contains("truncated"),
        "{bad}"
    );
    let grid = err("case_grid");
    assert_eq!(grid["kind"], "GeometryMismatch", "{grid}");
    assert_eq!(
        grid["file"], "incoming/case_grid/annotation_2.nii.gz",
        "{grid}"
    );
    // a verdict on bytes is permanent: the messages are done, none is retried or dead-lettered
    assert!(e.dlq.bodies().is_empty(), "{:?}", e.dlq.bodies());
    assert_eq!(e.ingest.approximate_len().unwrap(), 0);
    // a corrected upload clears the error
    e.store
        .put(&key("incoming/case_bad/image.nii.gz"), &img)
        .unwrap();
    pump(&e);
    assert!(!e.store.exists(&key("errors/case_bad.json")).unwrap());
    assert!(e.store.exists(&key("cases/case_bad/image.nii.gz")).unwrap());
}

#[test]
fn hostile_keys_write_nothing() {
    let e = env();
    let before = snapshot(&e.store);
    for raw in [
        "incoming%2F..%2F..%2Fetc%2Fpasswd",
        "%2Fabs%2Fx",
        "incoming/c/a%0Ab.nii.gz",
    ] {
        let ev = format!(
            r#"{{"Records":[{{"eventName":"ObjectCreated:Put","s3":{{"bucket":{{"name":"statapp"}},"object":{{"key":"{raw}"}}}}}}]}}"#
        );
        assert!(handle_event(&ev, &e.store, e.infer.as_ref(), &IngestSettings::default()).is_err());
    }
    assert!(Key::new("incoming/../x").is_err());
    assert_eq!(snapshot(&e.store), before);
}

#[test]
fn metric_rows_equal_a_direct_run_and_merges_lose_nothing() {
    let e = env();
    let p = upload(&e, "case_m", 5);
    pump(&e);
    // a "prediction": annotator 1's labels as one-hot probabilities
    let g = p.ct.geometry().clone();
    let a1 = p.annotations[0].data();
    for (i, name) in ["prob_panc", "prob_kidn", "prob_livr"].iter().enumerate() {
        let prob = a1.mapv(|l| f32::from(u8::from(usize::from(l) == i + 1)));
        e.store
            .put(
                &key(&format!("predictions/m1/case_m/{name}.nii.gz")),
                &gz(&Volume::new(prob, g.clone()).unwrap()),
            )
            .unwrap();
    }
    e.store
        .put(
            &key("predictions/m1/case_m/segmentation.nii.gz"),
            &gz(&p.annotations[0]),
        )
        .unwrap();
    let merge_q = MemQueue::new("merge", Arc::new(statapp_pipeline::queue::SystemClock));
    let job = MetricsJob {
        case: "case_m".into(),
        name: "m1".into(),
        source: "predictions/m1".into(),
    };
    let row_key = handle_metrics(&job, &e.store, &merge_q).unwrap();
    assert!(merge_q.bodies()[0].contains("\"kind\":\"merge\""));
    // the same files scored directly
    let root = e.store.root();
    let f = |k: &str| root.join(k);
    let direct = score_files(
        &CasePaths {
            annotations: [1, 2, 3].map(|k| f(&format!("cases/case_m/annotation_{k}.nii.gz"))),
            probabilities: ["prob_panc", "prob_kidn", "prob_livr"]
                .map(|n| f(&format!("predictions/m1/case_m/{n}.nii.gz"))),
            prediction: Some(f("predictions/m1/case_m/segmentation.nii.gz")),
            ct: None,
        },
        RoiMode::Annotations,
    )
    .unwrap();
    let row_text = String::from_utf8(e.store.get(&row_key).unwrap().unwrap()).unwrap();
    let expected = direct.csv_row("case_m", "m1").join(",");
    assert_eq!(row_text.lines().nth(1).unwrap(), expected);
    assert_eq!(handle_merge(&e.store).unwrap(), 1);

    // many rows arriving at once, each followed by its own merge, in parallel
    let template = row_text.clone();
    std::thread::scope(|s| {
        for t in 0..8 {
            let store = &e.store;
            let template = &template;
            s.spawn(move || {
                let name = format!("model_{t}");
                let text = template.replace(",m1,", &format!(",{name},"));
                store
                    .put(
                        &key(&format!("metrics/rows/case_m/{name}.csv")),
                        text.as_bytes(),
                    )
                    .unwrap();
                handle_merge(store).unwrap();
            });
        }
    });
    let combined = String::from_utf8(e.store.get(&key(COMBINED)).unwrap().unwrap()).unwrap();
    assert_eq!(combined.lines().count(), 1 + 9, "{combined}");
    let again = handle_merge(&e.store).unwrap();
    assert_eq!(again, 9);
    assert_eq!(
        String::from_utf8(e.store.get(&key(COMBINED)).unwrap().unwrap()).unwrap(),
        combined,
        "a repeated merge gives the same bytes"
    );
    let _ = Job::Merge(statapp_pipeline::MergeJob {});
}
