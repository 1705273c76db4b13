//! The hostile-upload corpus through ingest on the embedded default, as `statapp serve --once`
//! runs it (files copied into a directory bucket, every one announced, every queue run until
//! idle). The same corpus runs on moto in `moto.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use burn::tensor::Device;
use statapp_e2e::hostile::{HostileCase, corpus, mismatches};
use statapp_pipeline::{Key, ObjectStore, Prefixes};
use statapp_stages::ingest::sweep_incomplete;
use statapp_stages::local::LocalPipeline;
use std::path::Path;

fn copy_in(bucket: &Path, cases: &[HostileCase]) {
    for c in cases {
        let dir = bucket.join("incoming").join(&c.name);
        std::fs::create_dir_all(&dir).unwrap();
        for (file, bytes) in &c.files {
            std::fs::write(dir.join(file), bytes).unwrap();
        }
    }
}

#[test]
fn every_hostile_upload_gets_its_typed_error_and_the_rest_go_on() {
    let cases = corpus();
    let kinds: std::collections::BTreeSet<_> = cases
        .iter()
        .filter_map(|c| c.expected.clone())
        .map(|e| e.kind)
        .collect();
    assert!(cases.iter().filter(|c| c.expected.is_some()).count() >= 25);
    assert!(kinds.len() >= 10, "{kinds:?}");
    let bucket = tempfile::tempdir().unwrap();
    copy_in(bucket.path(), &cases);
    let pipeline = LocalPipeline::open(bucket.path()).unwrap();
    let device = Device::flex();
    let uploads: usize = cases.iter().map(|c| c.files.len()).sum();
    assert_eq!(pipeline.rescan().unwrap(), uploads);
    pipeline.run_until_idle(&device, &mut |_, _| {}).unwrap();
    let wrong = mismatches(&pipeline.store, &cases);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // a verdict on bytes is permanent: nothing is retried into the dead-letter queue
    assert!(pipeline.dead_letters.bodies().is_empty());

    // a corrected re-upload clears the error and the case goes on
    let valid = cases.iter().find(|c| c.name == "valid").unwrap();
    let image = &valid
        .files
        .iter()
        .find(|(f, _)| f == "image.nii.gz")
        .unwrap()
        .1;
    let store = &pipeline.store;
    store
        .put(
            &Key::new("incoming/gzip_cut_short/image.nii.gz").unwrap(),
            image,
        )
        .unwrap();
    pipeline.run_until_idle(&device, &mut |_, _| {}).unwrap();
    let error = Key::new("errors/gzip_cut_short.json").unwrap();
    assert!(!store.exists(&error).unwrap());
    let ingested = Key::new("cases/gzip_cut_short/ingested.json").unwrap();
    assert!(store.exists(&ingested).unwrap());
}

#[test]
fn a_case_missing_files_is_reported_after_the_timeout_and_goes_on_when_completed() {
    let cases = corpus();
    let valid = cases.iter().find(|c| c.name == "valid").unwrap();
    let bucket = tempfile::tempdir().unwrap();
    let pipeline = LocalPipeline::open(bucket.path()).unwrap();
    let store = &pipeline.store;
    let put = |file: &str| {
        let bytes = &valid.files.iter().find(|(f, _)| f == file).unwrap().1;
        store
            .put(&Key::new(format!("incoming/late/{file}")).unwrap(), bytes)
            .unwrap();
    };
    put("image.nii.gz");
    put("annotation_1.nii.gz");
    let device = Device::flex();
    pipeline.run_until_idle(&device, &mut |_, _| {}).unwrap();
    let now = std::time::SystemTime::now();
    let hour = std::time::Duration::from_secs(3600);
    // not yet late: nothing is reported
    assert!(
        sweep_incomplete(store, &Prefixes::default(), now, hour)
            .unwrap()
            .is_empty()
    );
    let later = now + 2 * hour;
    assert_eq!(
        sweep_incomplete(store, &Prefixes::default(), later, hour)
            .unwrap()
            .len(),
        1
    );
    let error = Key::new("errors/late.json").unwrap();
    let doc: serde_json::Value =
        serde_json::from_slice(&store.get(&error).unwrap().unwrap()).unwrap();
    assert_eq!(doc["kind"], "IncompleteCase");
    let message = doc["message"].as_str().unwrap();
    assert!(message.contains("annotation_2, annotation_3"), "{message}");
    // once: a second sweep leaves the entry alone
    assert!(
        sweep_incomplete(store, &Prefixes::default(), later, hour)
            .unwrap()
            .is_empty()
    );
    put("annotation_2.nii.gz");
    put("annotation_3.nii.gz");
    pipeline.run_until_idle(&device, &mut |_, _| {}).unwrap();
    assert!(!store.exists(&error).unwrap());
    assert!(
        store
            .exists(&Key::new("cases/late/ingested.json").unwrap())
            .unwrap()
    );
}
