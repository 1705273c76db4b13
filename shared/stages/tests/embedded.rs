#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The ingest, metrics and merge stages on the embedded adapters (a directory bucket that emits
//! S3 events, in-process queues with SQS semantics): complete cases, duplicates, poison uploads,
//! hostile keys, metric rows equal to a direct run, and concurrent merges.

use statapp_metrics::{CasePaths, RoiMode, score_files};
use statapp_pipeline::jobs::{Job, MetricsJob};
use statapp_pipeline::queue::{Clock, ManualClock};
use statapp_pipeline::{DirStore, JobQueue, Key, MemQueue, ObjectStore};
use statapp_stages::ingest::{
    IngestSettings, Ingested, handle_event, handle_object, registered_models,
};
use statapp_stages::score::{COMBINED, Merged, PENDING, handle_metrics, merge_now, put_row};
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

/// The cases of the infer jobs queued so far (drained).
fn inferred_cases(e: &Env) -> Vec<String> {
    let mut cases: Vec<String> = e
        .infer
        .receive(100, VIS)
        .unwrap()
        .into_iter()
        .map(|d| {
            e.infer.delete(&d.receipt).unwrap();
            match Job::from_json(&d.body).unwrap() {
                Job::Infer(j) => j.case,
                other => panic!("not an infer job: {other:?}"),
            }
        })
        .collect();
    cases.sort();
    cases
}

fn register(e: &Env, model: &str, settings: &IngestSettings) -> Ingested {
    let k = key(&format!("models/{model}/model.json"));
    e.store.put(&k, b"{}").unwrap();
    handle_object(&k, &e.store, e.infer.as_ref(), settings).unwrap()
}

#[test]
fn splits_json_decides_which_cases_are_inferred() {
    let e = env();
    let settings = IngestSettings::default();
    register(&e, "anno1_init1_foldall", &settings);
    let splits = br#"{"train": ["case_t"], "validation": ["case_v"]}"#;
    e.store.put(&key("splits.json"), splits).unwrap();
    for (i, case) in ["case_t", "case_v", "case_x"].iter().enumerate() {
        upload(&e, case, 10 + i as u64);
    }
    pump(&e);
    // every case is ingested (training reads them), only the test case is inferred
    for case in ["case_t", "case_v", "case_x"] {
        let marker = key(&format!("cases/{case}/ingested.json"));
        assert!(e.store.exists(&marker).unwrap(), "{case}");
    }
    assert_eq!(inferred_cases(&e), ["case_x"]);
    // a model registered later predicts the test cases too, and nothing else
    register(&e, "anno2_init1_foldall", &settings);
    assert_eq!(inferred_cases(&e), ["case_x"]);
    // configurable: validation and test
    let wider = IngestSettings {
        infer_sets: "validation,test".parse().unwrap(),
        ..IngestSettings::default()
    };
    register(&e, "anno3_init1_foldall", &wider);
    assert_eq!(inferred_cases(&e), ["case_v", "case_x"]);
    // a splits.json that cannot say a role fails the message, naming the file
    e.store
        .put(
            &key("splits.json"),
            br#"{"train": ["case_x"], "test": ["case_x"]}"#,
        )
        .unwrap();
    let k = key("models/anno1_init2_foldall/model.json");
    e.store.put(&k, b"{}").unwrap();
    let err = handle_object(&k, &e.store, e.infer.as_ref(), &settings).unwrap_err();
    assert!(
        err.to_string().contains("splits.json lists case case_x"),
        "{err}"
    );
}

#[test]
fn concurrent_events_of_a_complete_case_queue_its_jobs_once() {
    let e = env();
    let settings = IngestSettings::default();
    register(&e, "anno1_init1_foldall", &settings);
    register(&e, "anno2_init1_foldall", &settings);
    upload(&e, "case_c", 30);
    // the four files' events, handled at once by four invocations
    let events = e.ingest.receive(100, VIS).unwrap();
    assert_eq!(events.len(), 4);
    let barrier = std::sync::Barrier::new(events.len());
    let results: Vec<Ingested> = std::thread::scope(|s| {
        let handles: Vec<_> = events
            .iter()
            .map(|d| {
                s.spawn(|| {
                    barrier.wait();
                    handle_event(&d.body, &e.store, e.infer.as_ref(), &settings).unwrap()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let fanned = results
        .iter()
        .filter(|r| matches!(r, Ingested::Ready { infer_jobs: 2, .. }))
        .count();
    assert_eq!(fanned, 1, "{results:?}");
    assert_eq!(inferred_cases(&e), ["case_c", "case_c"]);
    // the claim is gone once the case is ingested
    assert!(e.store.list("cases/case_c/claims/").unwrap().is_empty());
    // the claimant died before its marker: another file's event leaves the case to it, and its
    // own event, delivered again, ingests the case
    let marker = key("cases/case_c/ingested.json");
    let digests: serde_json::Value =
        serde_json::from_slice(&e.store.get(&marker).unwrap().unwrap()).unwrap();
    let claim = key(&format!(
        "cases/case_c/claims/{}.json",
        digests["inputs"].as_str().unwrap()
    ));
    let claimant = key("incoming/case_c/annotation_3.nii.gz");
    e.store
        .put(&claim, format!(r#"{{"key":"{claimant}"}}"#).as_bytes())
        .unwrap();
    e.store.delete(&marker).unwrap();
    let other = key("incoming/case_c/image.nii.gz");
    let got = handle_object(&other, &e.store, e.infer.as_ref(), &settings).unwrap();
    assert_eq!(
        got,
        Ingested::Claimed {
            case: "case_c".into(),
            by: claimant.to_string()
        }
    );
    assert!(inferred_cases(&e).is_empty());
    let got = handle_object(&claimant, &e.store, e.infer.as_ref(), &settings).unwrap();
    assert!(
        matches!(got, Ingested::Ready { infer_jobs: 2, .. }),
        "{got:?}"
    );
    assert_eq!(inferred_cases(&e), ["case_c", "case_c"]);
}

#[test]
fn colliding_or_malformed_model_ids_write_nothing_but_their_error() {
    let e = env();
    upload(&e, "case_x", 20);
    pump(&e);
    let before = snapshot(&e.store);
    let settings = IngestSettings::default();
    for (model, kind) in [
        ("ensemble_all", "ReservedModelId"),
        ("anno1_init112233", "MalformedModelId"),
    ] {
        let got = register(&e, model, &settings);
        assert_eq!(
            got,
            Ingested::Rejected {
                case: format!("models/{model}"),
                kind: kind.to_string()
            }
        );
        let entry = e
            .store
            .get(&key(&format!("errors/models/{model}.json")))
            .unwrap()
            .unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&entry).unwrap();
        assert_eq!(doc["kind"], kind, "{doc}");
        assert!(doc["message"].as_str().unwrap().contains(model), "{doc}");
    }
    // an nnU-Net folder under a refused id is not described either
    let pth = key("models/ensemble_anno1/Trainer__Plans__3d_fullres/plans.json");
    e.store.put(&pth, b"{}").unwrap();
    let got = handle_object(&pth, &e.store, e.infer.as_ref(), &settings).unwrap();
    assert!(matches!(got, Ingested::Rejected { .. }), "{got:?}");
    assert!(inferred_cases(&e).is_empty());
    assert!(registered_models(&e.store).unwrap().is_empty());
    let after = snapshot(&e.store);
    let added: Vec<&String> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    assert_eq!(
        added,
        [
            "errors/models/anno1_init112233.json",
            "errors/models/ensemble_all.json",
            "errors/models/ensemble_anno1.json",
            "models/anno1_init112233/model.json",
            "models/ensemble_all/model.json",
            "models/ensemble_anno1/Trainer__Plans__3d_fullres/plans.json",
        ]
    );
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
    // what the prediction was computed from, as the infer stage records it
    e.store
        .put(&key("predictions/m1/case_m/inputs.json"), b"{}\n")
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
    // the report's curves beside the row, the same as scored directly
    let curves = e
        .store
        .get(&key("metrics/curves/case_m/m1.json"))
        .unwrap()
        .unwrap();
    let curves: statapp_metrics::curves::Curves = serde_json::from_slice(&curves).unwrap();
    assert_eq!(curves, direct.curves);
    assert_eq!(
        merge(&e.store),
        Merged::Committed {
            rows: 1,
            applied: 1
        }
    );

    // many rows arriving at once, each followed by its own merge, in parallel
    let template = row_text.clone();
    std::thread::scope(|s| {
        for t in 0..8 {
            let store = &e.store;
            let template = &template;
            s.spawn(move || {
                let name = format!("model_{t}");
                let text = template.replace(",m1,", &format!(",{name},"));
                put_row(store, "case_m", &name, &text).unwrap();
                merge(store);
            });
        }
    });
    let combined = String::from_utf8(e.store.get(&key(COMBINED)).unwrap().unwrap()).unwrap();
    assert_eq!(combined.lines().count(), 1 + 9, "{combined}");
    assert!(e.store.list(PENDING).unwrap().is_empty());
    assert_eq!(merge(&e.store), Merged::Nothing);
    // without the combined CSV, a merge rebuilds it from every row: the same bytes
    e.store.delete(&key(COMBINED)).unwrap();
    assert_eq!(
        merge(&e.store),
        Merged::Committed {
            rows: 9,
            applied: 9
        }
    );
    assert_eq!(
        String::from_utf8(e.store.get(&key(COMBINED)).unwrap().unwrap()).unwrap(),
        combined,
        "a rebuild gives the same bytes"
    );
}

/// A merge that commits at once.
fn merge(store: &dyn ObjectStore) -> Merged {
    merge_now(store).unwrap()
}
