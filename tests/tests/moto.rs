#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The pipeline end to end on a real S3/SQS server (moto's): bucket, queues with dead-letter
//! queues and the S3 -> SQS notification created as the templates do; uploads through the AWS
//! SDK; the functions' handlers consuming the real event messages. Acceptance of issue 6.

use statapp_e2e::{
    Harness, case_files, endpoint, gz, key, labels_at, models, nnunet_fixture, nnunet_fixture_case,
    npy_u8, upload_case, upload_model, upload_tree,
};
use statapp_metrics::{CasePaths, RoiMode, score_files};
use statapp_pipeline::jobs::MetricsJob;
use statapp_pipeline::{JobQueue, ObjectStore};
use statapp_stages::score::{COMBINED, Merged, handle_metrics, merge_now, put_row};
use statapp_volume::{ReadOptions, Volume, read_nifti, read_nifti_bytes};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

const CASE: &str = "case_e2e";

fn text(store: &dyn ObjectStore, k: &str) -> String {
    String::from_utf8(store.get(&key(k)).unwrap().unwrap()).unwrap()
}

/// Model and ensemble names expected for the shared models.
fn expected_names() -> Vec<String> {
    let mut names: Vec<String> = models()
        .iter()
        .map(|d| d.file_name().unwrap().to_str().unwrap().to_string())
        .collect();
    names.extend(["ensemble_all".to_string(), "ensemble_anno1".to_string()]);
    names.sort();
    names
}

/// Uploads the models and one case, runs the pipeline (every message sent `dup` times).
fn run_pipeline(h: &Harness, dup: usize) {
    for m in models() {
        upload_model(h.store(), m);
    }
    upload_case(h.store(), CASE, &case_files(31));
    if dup > 1 {
        // every S3 event delivered `dup` times as well
        let events = h.services.ingest.receive(10, Duration::ZERO).unwrap();
        assert!(!events.is_empty());
        let mut all = events;
        loop {
            let more = h.services.ingest.receive(10, Duration::ZERO).unwrap();
            if more.is_empty() {
                break;
            }
            all.extend(more);
        }
        for d in &all {
            for _ in 1..dup {
                h.services.ingest.send(&d.body).unwrap();
            }
        }
    }
    let done = h.drain(dup);
    assert_eq!(done.failed, 0, "{done:?}");
}

#[test]
fn a_case_flows_from_upload_to_the_combined_csv_and_duplicates_change_no_byte() {
    let _ = endpoint();
    let h = Harness::new("flow", Duration::from_secs(120), 3);
    run_pipeline(&h, 1);
    let store = h.store();

    let combined = text(store, COMBINED);
    let rows: Vec<&str> = combined.lines().skip(1).collect();
    let names: Vec<String> = rows
        .iter()
        .map(|r| r.split(',').nth(1).unwrap().to_string())
        .collect();
    assert_eq!(names, expected_names(), "{combined}");
    assert!(rows.iter().all(|r| r.starts_with(&format!("{CASE},"))));

    // every row equals a direct run of the metrics on the same files
    let dir = tempfile::tempdir().unwrap();
    let fetch = |k: &str| {
        let p = dir.path().join(k);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, store.get(&key(k)).unwrap().unwrap()).unwrap();
        p
    };
    for (row, name) in rows.iter().zip(&names) {
        let source = if name.starts_with("ensemble_") {
            format!("ensembles/{name}")
        } else {
            format!("predictions/{name}")
        };
        let direct = score_files(
            &CasePaths {
                annotations: [1, 2, 3]
                    .map(|k| fetch(&format!("cases/{CASE}/annotation_{k}.nii.gz"))),
                probabilities: ["prob_panc", "prob_kidn", "prob_livr"]
                    .map(|n| fetch(&format!("{source}/{CASE}/{n}.nii.gz"))),
                prediction: Some(fetch(&format!("{source}/{CASE}/segmentation.nii.gz"))),
                ct: None,
            },
            RoiMode::Annotations,
        )
        .unwrap();
        assert_eq!(*row, direct.csv_row(CASE, name).join(","), "{name}");
    }
    // each ensemble's uncertainty maps lie on the image's grid, MI within [0, H]
    let image = read_nifti(
        fetch(&format!("cases/{CASE}/image.nii.gz")),
        &ReadOptions::default(),
    )
    .unwrap();
    for name in names.iter().filter(|n| n.starts_with("ensemble_")) {
        let map = |f: &str| {
            let p = fetch(&format!("ensembles/{name}/{CASE}/{f}"));
            let v = read_nifti(&p, &ReadOptions::default()).unwrap().into_f32();
            image
                .geometry
                .ensure_same_grid(Path::new("image"), v.geometry(), &p)
                .unwrap();
            v
        };
        let (h, mi) = (map("entropy.nii.gz"), map("mutual_information.nii.gz"));
        map("expected_entropy.nii.gz");
        assert!(
            h.data()
                .iter()
                .zip(mi.data())
                .all(|(h, mi)| *mi >= 0.0 && mi <= h)
        );
    }
    for stage in statapp_aws::QUEUE_STAGES {
        assert!(h.dead_letters(stage).is_empty(), "{stage}");
    }

    // the same uploads with every event and message delivered three times
    let h3 = Harness::new("flow3", Duration::from_secs(120), 3);
    run_pipeline(&h3, 3);
    let (one, three) = (h.snapshot(), h3.snapshot());
    assert_eq!(
        one.keys().collect::<Vec<_>>(),
        three.keys().collect::<Vec<_>>()
    );
    for (k, v) in &one {
        // run.json records measured seconds and memory: the same keys, not the same bytes
        if k.ends_with("/run.json") {
            continue;
        }
        assert!(three[k] == *v, "{k} differs under duplicate delivery");
    }
}

#[test]
fn poison_uploads_explain_themselves_once() {
    let _ = endpoint();
    let h = Harness::new("poison", Duration::from_secs(1), 2);
    let store = h.store();
    // a truncated image, and a case whose annotation lies on another grid
    let mut bad = case_files(41);
    let half = bad[0].1.len() / 2;
    bad[0].1.truncate(half);
    upload_case(store, "truncated", &bad);
    let mut other = case_files(42);
    let mut labels = ndarray::Array3::<u8>::zeros((4, 5, 6));
    labels[[1, 2, 3]] = 3;
    let grid = statapp_volume::Geometry::axis_aligned([4, 5, 6], [2.0, 1.0, 1.0], [0.0; 3]);
    let small = Volume::new(labels, grid).unwrap();
    other[2].1 = gz(&small);
    upload_case(store, "mismatched", &other);
    upload_case(store, "good", &case_files(43));
    h.drain(1);

    let truncated = text(store, "errors/truncated.json");
    assert!(truncated.contains("image.nii.gz"), "{truncated}");
    assert!(truncated.contains(r#""kind": "Truncated""#), "{truncated}");
    let mismatched = text(store, "errors/mismatched.json");
    assert!(mismatched.contains("annotation_2"), "{mismatched}");
    assert!(store.exists(&key("cases/good/ingested.json")).unwrap());
    assert!(!store.exists(&key("errors/good.json")).unwrap());
    assert!(!store.exists(&key("cases/truncated/ingested.json")).unwrap());
    // a verdict on bytes is permanent: no message is retried into the dead-letter queue
    let dead = h.dead_letters("ingest");
    assert!(dead.is_empty(), "{dead:?}");
}

#[test]
fn hostile_corpus_gives_typed_errors_on_moto() {
    let _ = endpoint();
    let h = Harness::new("corpus", Duration::from_secs(1), 2);
    let store = h.store();
    let cases = statapp_e2e::hostile::corpus();
    for c in &cases {
        upload_case(store, &c.name, &c.files);
    }
    h.drain(1);
    let wrong = statapp_e2e::hostile::mismatches(store, &cases);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let dead = h.dead_letters("ingest");
    assert!(dead.is_empty(), "{dead:?}");
}

#[test]
fn the_scheduled_sweep_reports_a_case_missing_files() {
    let _ = endpoint();
    let h = Harness::new("sweep", Duration::from_secs(1), 2);
    let store = h.store();
    let files = case_files(61);
    upload_case(store, "late", &files[..2]);
    h.drain(1);
    // the message the hourly EventBridge rule sends (infra/template.yaml), with no delay
    h.services
        .ingest
        .send(r#"{"incomplete_after_s": 0}"#)
        .unwrap();
    h.drain(1);
    let error = text(store, "errors/late.json");
    assert!(error.contains(r#""kind": "IncompleteCase""#), "{error}");
    assert!(error.contains("annotation_2, annotation_3"), "{error}");
    upload_case(store, "late", &files[2..]);
    h.drain(1);
    assert!(!store.exists(&key("errors/late.json")).unwrap());
    assert!(store.exists(&key("cases/late/ingested.json")).unwrap());
}

#[test]
fn hostile_keys_are_rejected_and_write_nothing() {
    let _ = endpoint();
    let h = Harness::new("hostile", Duration::from_secs(1), 2);
    let body = case_files(51).remove(1).1;
    let hostile = [
        "incoming/../escape/image.nii.gz",
        "incoming/./case/image.nii.gz",
        "incoming/ca\u{7}se/annotation_1.nii.gz",
        "incoming//case/image.nii.gz",
    ];
    for k in hostile {
        h.runtime
            .block_on(
                h.aws
                    .s3
                    .put_object()
                    .bucket(&h.config.bucket)
                    .key(k)
                    .body(body.clone().into())
                    .send(),
            )
            .unwrap();
    }
    let before = raw_keys(&h);
    h.drain(1);
    assert_eq!(before.len(), hostile.len(), "{before:?}");
    assert_eq!(raw_keys(&h), before, "the pipeline wrote something");
    // the store's own listing skips them
    assert!(h.store().list("").unwrap().is_empty());
    assert!(
        before.iter().all(|k| k.starts_with("incoming/")),
        "{before:?}"
    );
    let dead = h.dead_letters("ingest");
    assert_eq!(dead.len(), hostile.len(), "{dead:?}");
}

/// Every key of the bucket as S3 lists it (unvalidated).
fn raw_keys(h: &Harness) -> Vec<String> {
    let out = h
        .runtime
        .block_on(
            h.aws
                .s3
                .list_objects_v2()
                .bucket(&h.config.bucket)
                .encoding_type(aws_sdk_s3::types::EncodingType::Url)
                .send(),
        )
        .unwrap();
    let mut keys: Vec<String> = out
        .contents()
        .iter()
        .filter_map(|o| o.key().and_then(statapp_pipeline::events::decode_key))
        .collect();
    keys.sort();
    keys
}

#[test]
fn the_adapters_keep_s3_and_sqs_semantics() {
    let _ = endpoint();
    let h = Harness::new("adapters", Duration::from_secs(1), 2);
    let store = h.store().clone().with_multipart(5 << 20, 5 << 20);
    let k = key("scratch/a.bin");
    assert_eq!(store.get(&k).unwrap(), None);
    assert!(!store.exists(&k).unwrap());
    assert!(store.put_if_absent(&k, b"first").unwrap());
    assert!(!store.put_if_absent(&k, b"second").unwrap());
    assert_eq!(store.get(&k).unwrap().unwrap(), b"first");
    store.put(&k, b"third").unwrap();
    assert_eq!(store.get(&k).unwrap().unwrap(), b"third");
    // a multipart upload (3 parts) reads back whole
    let big: Vec<u8> = (0..(11 << 20)).map(|i: u32| (i % 251) as u8).collect();
    let kb = key("scratch/big.bin");
    store.put(&kb, &big).unwrap();
    assert!(store.get(&kb).unwrap().unwrap() == big);
    assert!(!store.put_if_absent(&kb, &big).unwrap());
    // read-modify-write: If-Match on the ETag read (moto checks it on PutObject only, not on
    // CompleteMultipartUpload as S3 does, so only a single-part body is tested here)
    let (body, etag) = store.get_versioned(&k).unwrap().unwrap();
    assert_eq!(body, b"third");
    assert!(store.put_if_version(&k, b"fourth", Some(&etag)).unwrap());
    assert!(!store.put_if_version(&k, b"fifth", Some(&etag)).unwrap());
    assert!(!store.put_if_version(&k, b"fifth", None).unwrap());
    assert_eq!(store.get(&k).unwrap().unwrap(), b"fourth");
    let gone = key("scratch/gone.bin");
    assert!(!store.put_if_version(&gone, b"x", Some(&etag)).unwrap());
    assert!(store.put_if_version(&gone, b"x", None).unwrap());
    store.delete(&gone).unwrap();
    assert_eq!(store.list("scratch").unwrap(), vec![k.clone(), kb.clone()]);
    assert_eq!(
        store.list("scratch/a").unwrap(),
        Vec::new(),
        "whole segments only"
    );
    store.delete(&k).unwrap();
    assert!(!store.exists(&k).unwrap());

    // SQS: redelivery after the visibility timeout, receive counts, dead-letter after 2
    let q = h.services.metrics.clone();
    q.send("poison").unwrap();
    for round in 1..=2u32 {
        let start = Instant::now();
        let got = loop {
            let got = q.receive(10, Duration::from_secs(1)).unwrap();
            if !got.is_empty() || start.elapsed() > Duration::from_secs(10) {
                break got;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].receive_count, round);
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert!(q.receive(10, Duration::from_secs(1)).unwrap().is_empty());
    assert_eq!(h.dead_letters("metrics"), vec!["poison".to_string()]);
}

/// A merge that commits at once.
fn merge(store: &dyn ObjectStore) -> Merged {
    merge_now(store).unwrap()
}

#[test]
fn concurrent_merges_lose_no_row() {
    let _ = endpoint();
    let h = Harness::new("merge", Duration::from_secs(60), 3);
    let store = h.store();
    upload_case(store, "case_m", &case_files(61));
    h.drain(1);
    // a "prediction": annotator 1's labels, one-hot
    let ann = labels_at(store, "cases/case_m/annotation_1.nii.gz");
    for (i, name) in ["prob_panc", "prob_kidn", "prob_livr"].iter().enumerate() {
        let prob = ann
            .data()
            .mapv(|l| f32::from(u8::from(usize::from(l) == i + 1)));
        let v = Volume::new(prob, ann.geometry().clone()).unwrap();
        store
            .put(
                &key(&format!("predictions/m0/case_m/{name}.nii.gz")),
                &gz(&v),
            )
            .unwrap();
    }
    store
        .put(&key("predictions/m0/case_m/segmentation.nii.gz"), &gz(&ann))
        .unwrap();
    store
        .put(&key("predictions/m0/case_m/inputs.json"), b"{}\n")
        .unwrap();
    let job = MetricsJob {
        case: "case_m".into(),
        name: "m0".into(),
        source: "predictions/m0".into(),
    };
    let row_key = handle_metrics(&job, store, &h.services.merge).unwrap();
    let template = text(store, row_key.as_str());
    std::thread::scope(|s| {
        for t in 0..12 {
            let template = &template;
            s.spawn(move || {
                let name = format!("model_{t:02}");
                let row = template.replace(",m0,", &format!(",{name},"));
                put_row(store, "case_m", &name, &row).unwrap();
                merge(store);
            });
        }
    });
    let combined = text(store, COMBINED);
    assert_eq!(combined.lines().count(), 1 + 13, "{combined}");
    let before = combined.clone();
    assert_eq!(merge(store), Merged::Nothing);
    store.delete(&key(COMBINED)).unwrap();
    assert_eq!(
        merge(store),
        Merged::Committed {
            rows: 13,
            applied: 13
        }
    );
    assert_eq!(text(store, COMBINED), before);
}

/// The worker of `a_killed_worker_leaves_no_partial_object`: runs the pipeline of the bucket
/// named by `STATAPP_E2E_WORKER_BUCKET` until it is killed.
#[test]
#[ignore = "child process of a_killed_worker_leaves_no_partial_object"]
fn pipeline_worker_process() {
    let id = std::env::var("STATAPP_E2E_WORKER_BUCKET").expect("worker bucket");
    let h = Harness::open(&id, Duration::from_secs(3), 5);
    h.drain(1);
}

#[test]
fn a_killed_worker_leaves_no_partial_object_and_the_retry_completes() {
    let _ = endpoint();
    let h = Harness::new("crash", Duration::from_secs(3), 5);
    for m in models() {
        upload_model(h.store(), m);
    }
    upload_case(h.store(), CASE, &case_files(31));
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "pipeline_worker_process",
            "--ignored",
            "--nocapture",
        ])
        .env("STATAPP_E2E_WORKER_BUCKET", &h.config.bucket)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // kill it (SIGKILL: no cleanup runs) while it writes the first model's prediction
    let start = Instant::now();
    while h.store().list("predictions").unwrap().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "worker never predicted"
        );
        assert!(child.try_wait().unwrap().is_none(), "worker ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!h.store().exists(&key(COMBINED)).unwrap());
    assert_every_object_is_whole(&h);

    // the killed jobs come back after the visibility timeout and complete
    let done = h.drain(1);
    assert_eq!(done.failed, 0);
    assert_every_object_is_whole(&h);
    let combined = text(h.store(), COMBINED);
    let names: Vec<&str> = combined
        .lines()
        .skip(1)
        .map(|r| r.split(',').nth(1).unwrap())
        .collect();
    assert_eq!(names, expected_names());
}

/// Every NIfTI decodes, every JSON and CSV parses.
fn assert_every_object_is_whole(h: &Harness) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (k, body) in h.snapshot() {
        if k.ends_with(".nii.gz") {
            let ok =
                read_nifti_bytes(std::path::Path::new(&k), &body, &ReadOptions::default()).is_ok();
            assert!(ok, "{k} is not a whole NIfTI");
            *counts.entry("nifti").or_default() += 1;
        } else if k.ends_with(".json") {
            serde_json::from_slice::<serde_json::Value>(&body)
                .unwrap_or_else(|e| panic!("{k}: {e}"));
            *counts.entry("json").or_default() += 1;
        } else if k.ends_with(".csv") {
            let t = String::from_utf8(body).unwrap();
            let widths: Vec<usize> = t.lines().map(|l| l.split(',').count()).collect();
            assert!(
                widths.len() >= 2 && widths.iter().all(|w| *w == widths[0]),
                "{k}"
            );
            *counts.entry("csv").or_default() += 1;
        }
    }
    assert!(counts["nifti"] > 0);
}

/// A trained nnU-Net v2 model folder uploaded unchanged under `models/<id>/` (the original's
/// artifact layout) is described, registered, predicts with mirroring (nnU-Net's default), fanned
/// out over several infer jobs by a small time budget and gathered, and is scored: its row
/// reaches the combined CSV.
#[test]
fn an_nnunet_model_folder_uploaded_under_models_is_registered_fanned_out_and_scored() {
    let _ = endpoint();
    let mut h = Harness::new("nnunet", Duration::from_secs(120), 3);
    // about a tenth of a second of estimated compute per job: several parts
    h.infer.budget_s = 0.1;
    h.infer.gflops = 100.0;
    let store = h.store();
    let folder = "nnUNetTrainer_5epochs__nnUNetPlans__3d_tiny";
    upload_tree(
        store,
        &nnunet_fixture().join("model").join(folder),
        &format!("models/ref_nnunet/{folder}"),
    );
    upload_case(store, "case_010", &nnunet_fixture_case("case_010"));
    let done = h.drain(1);
    assert_eq!(done.failed, 0, "{done:?}");
    let info: serde_json::Value =
        serde_json::from_str(&text(store, "models/ref_nnunet/model.json")).unwrap();
    assert_eq!(
        info["checkpoints"][0],
        format!("{folder}/fold_all/checkpoint_final.pth")
    );
    assert_eq!(info["nnunet"]["trainer"], "nnUNetTrainer_5epochs");
    let record: serde_json::Value = serde_json::from_str(&text(
        store,
        "predictions/ref_nnunet/case_010/prediction.json",
    ))
    .unwrap();
    assert_eq!(record["mirroring_axes"], serde_json::json!([0, 1, 2]));
    assert_eq!(record["configuration"], "3d_tiny");
    let run: serde_json::Value =
        serde_json::from_str(&text(store, "predictions/ref_nnunet/case_010/run.json")).unwrap();
    let parts = run["parts"].as_array().unwrap().len();
    assert!(parts >= 2, "{run}");
    assert!(store.list("partials/").unwrap().is_empty());
    assert!(store.list("preprocessed/").unwrap().len() >= 2);
    let combined = text(store, COMBINED);
    let rows: Vec<&str> = combined.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{combined}");
    assert!(rows[0].starts_with("case_010,ref_nnunet,"), "{combined}");
    // the pipeline's segmentation is nnU-Net's own (nnUNetPredictor, mirroring on)
    let seg = labels_at(store, "predictions/ref_nnunet/case_010/segmentation.nii.gz");
    let want = npy_u8(&nnunet_fixture().join("expected/case_010_segmentation_mirror.npy"));
    let same = seg.data().iter().zip(&want).filter(|(a, b)| a == b).count();
    assert_eq!(seg.data().len(), want.len());
    assert!(
        same as f64 >= 0.9999 * want.len() as f64,
        "{same} of {}",
        want.len()
    );
}
