//! Re-uploads on the embedded default (DESIGN.md §3: outputs are pure functions of their inputs'
//! digests): identical bytes change nothing; a corrected annotation re-scores its case, equals a
//! fresh run on the new files, and changes no other byte of the bucket.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use burn::tensor::Device;
use statapp_e2e::{Harness, case_files, models, upload_case, upload_model};
use statapp_pipeline::ObjectStore;
use statapp_stages::local::LocalPipeline;
use std::collections::BTreeMap;
use std::time::Duration;

fn run(p: &LocalPipeline) {
    let stats = p.run_until_idle(&Device::flex(), &mut |_, _| {}).unwrap();
    assert_eq!(stats.failed, 0);
}

fn snapshot(store: &dyn ObjectStore) -> BTreeMap<String, Vec<u8>> {
    store
        .list("")
        .unwrap()
        .into_iter()
        .filter(|k| !k.as_str().starts_with('.'))
        .map(|k| (k.to_string(), store.get(&k).unwrap().unwrap()))
        .collect()
}

/// Keys whose bytes differ between `a` and `b`, or that only one has.
fn changed(a: &BTreeMap<String, Vec<u8>>, b: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    let mut keys: Vec<String> = a.keys().chain(b.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    keys.retain(|k| a.get(k) != b.get(k));
    keys
}

/// Every object of a bucket with its bytes.
type Snapshot = BTreeMap<String, Vec<u8>>;

/// A fresh bucket given the models and some cases, run: its snapshot.
type FreshRun<'a> = dyn Fn(&[(&str, Files)]) -> Snapshot + 'a;

/// A case's upload bodies by file name.
type Files = Vec<(String, Vec<u8>)>;

/// Uploads the test models and `cases`.
fn upload_all(store: &dyn ObjectStore, cases: &[(&str, Files)]) {
    for m in models() {
        upload_model(store, m);
    }
    for (case, files) in cases {
        upload_case(store, case, files);
    }
}

/// A bucket under test: its store, a run until idle, and the snapshot of a fresh bucket given the
/// models and `cases` and run (what "equal to a fresh run" compares with).
struct Bucket<'a> {
    store: &'a dyn ObjectStore,
    run: &'a dyn Fn(),
    fresh: &'a FreshRun<'a>,
}

/// Runs `test` on the embedded default.
fn embedded(test: fn(&Bucket)) {
    let dir = tempfile::tempdir().unwrap();
    let p = LocalPipeline::open(&dir.path().join("bucket")).unwrap();
    let fresh = |cases: &[(&str, Files)]| {
        let d = tempfile::tempdir().unwrap();
        let f = LocalPipeline::open(d.path()).unwrap();
        upload_all(&f.store, cases);
        run(&f);
        snapshot(&f.store)
    };
    test(&Bucket {
        store: &p.store,
        run: &|| run(&p),
        fresh: &fresh,
    });
}

/// Runs `test` on moto's S3 and SQS, the functions' handlers consuming the real messages.
fn on_moto(name: &str, test: fn(&Bucket)) {
    let _ = statapp_e2e::endpoint();
    let h = Harness::new(name, Duration::from_secs(60), 3);
    let drain = |h: &Harness| assert_eq!(h.drain(1).failed, 0);
    let fresh = |cases: &[(&str, Files)]| {
        let f = Harness::new(&format!("{name}-fresh"), Duration::from_secs(60), 3);
        upload_all(f.store(), cases);
        drain(&f);
        snapshot(f.store())
    };
    test(&Bucket {
        store: h.store(),
        run: &|| drain(&h),
        fresh: &fresh,
    });
}

#[test]
fn a_corrected_annotation_rescores_its_case_and_changes_nothing_else() {
    embedded(corrected_annotation);
}

#[test]
fn on_moto_a_corrected_annotation_rescores_its_case_and_changes_nothing_else() {
    on_moto("reupload-annotation", corrected_annotation);
}

fn corrected_annotation(p: &Bucket) {
    let (a, b) = (case_files(5), case_files(6));
    upload_all(p.store, &[("case_a", a.clone()), ("case_b", b)]);
    (p.run)();
    let first = snapshot(p.store);
    assert!(first.contains_key("metrics/rows/case_a/ensemble_all.csv"));

    // the same bytes again: nothing changes
    upload_case(p.store, "case_a", &a);
    (p.run)();
    assert_eq!(changed(&first, &snapshot(p.store)), Vec::<String>::new());

    // a corrected annotation_2 (another valid annotation on the same grid)
    let mut corrected = a.clone();
    corrected[2].1 = a[3].1.clone();
    upload_case(p.store, "case_a", &corrected[2..3]);
    (p.run)();
    let second = snapshot(p.store);
    let diff = changed(&first, &second);
    let allowed = |k: &str| {
        k == "incoming/case_a/annotation_2.nii.gz"
            || k == "cases/case_a/annotation_2.nii.gz"
            || k == "cases/case_a/ingested.json"
            || k == "cases/case_a/inputs.json"
            || k == "metrics/combined.csv"
            || k.starts_with("metrics/rows/case_a/")
            || k.starts_with("metrics/curves/case_a/")
            || k.starts_with("metrics/inputs/case_a/")
    };
    let stray: Vec<&String> = diff.iter().filter(|k| !allowed(k)).collect();
    assert!(
        stray.is_empty(),
        "changed beyond the case's rows: {stray:?}"
    );
    // every row of the case is scored again, against the new annotation
    let rows: Vec<&String> = first
        .keys()
        .filter(|k| k.starts_with("metrics/rows/case_a/"))
        .collect();
    for r in &rows {
        assert!(diff.contains(r), "{r} kept its old values");
    }

    // equal to a fresh run on the new files
    let fresh = (p.fresh)(&[("case_a", corrected)]);
    let of_case_a = |k: &&String| {
        k.starts_with("metrics/rows/case_a/")
            || k.starts_with("metrics/curves/case_a/")
            || k.starts_with("metrics/inputs/case_a/")
            || (k.starts_with("ensembles/") && k.contains("/case_a/"))
    };
    for k in second.keys().filter(of_case_a) {
        assert_eq!(second.get(k), fresh.get(k), "{k} differs from a fresh run");
    }
}

/// `case_files(seed)` with every CT voxel brightened by 7 HU: another image on the same grid.
fn brighter_image(seed: u64) -> Vec<u8> {
    let p = statapp_synth::generate(seed, 0, statapp_synth::Size::Small);
    let data = p.ct.data().mapv(|v| v + 7);
    statapp_e2e::gz(&statapp_volume::Volume::new(data, p.ct.geometry().clone()).unwrap())
}

#[test]
fn a_retrained_model_or_a_new_image_recomputes_what_depends_on_it_and_nothing_else() {
    embedded(retrained_model_and_new_image);
}

#[test]
fn on_moto_a_retrained_model_or_a_new_image_recomputes_what_depends_on_it() {
    on_moto("reupload-model", retrained_model_and_new_image);
}

fn retrained_model_and_new_image(p: &Bucket) {
    upload_all(
        p.store,
        &[("case_a", case_files(5)), ("case_b", case_files(6))],
    );
    (p.run)();
    let first = snapshot(p.store);
    let retrained = models()[0]
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(retrained.starts_with("anno1_"), "{retrained}");

    // a retrained model under the same id: other weights, then model.json (same bytes) again
    for f in std::fs::read_dir(&models()[2]).unwrap() {
        let f = f.unwrap().path();
        let name = f.file_name().unwrap().to_str().unwrap();
        if name.starts_with("checkpoint") {
            let k = statapp_e2e::key(&format!("models/{retrained}/{name}"));
            p.store.put(&k, &std::fs::read(&f).unwrap()).unwrap();
        }
    }
    let info = statapp_e2e::key(&format!("models/{retrained}/model.json"));
    let body = p.store.get(&info).unwrap().unwrap();
    p.store.put(&info, &body).unwrap();
    (p.run)();
    let second = snapshot(p.store);
    let diff = changed(&first, &second);
    let depends_on_model = |k: &str| {
        let name =
            |n: &str| k.ends_with(&format!("/{n}.csv")) || k.ends_with(&format!("/{n}.json"));
        k.starts_with(&format!("models/{retrained}/"))
            || k.starts_with(&format!("predictions/{retrained}/"))
            || k.starts_with("ensembles/ensemble_anno1/")
            || k.starts_with("ensembles/ensemble_all/")
            || k == "metrics/combined.csv"
            || (k.starts_with("metrics/")
                && (name(&retrained) || name("ensemble_anno1") || name("ensemble_all")))
    };
    let stray: Vec<&String> = diff.iter().filter(|k| !depends_on_model(k)).collect();
    assert!(
        stray.is_empty(),
        "changed without depending on the model: {stray:?}"
    );
    for case in ["case_a", "case_b"] {
        for k in [
            format!("predictions/{retrained}/{case}/prob_panc.nii.gz"),
            format!("predictions/{retrained}/{case}/inputs.json"),
            format!("metrics/inputs/{case}/{retrained}.json"),
            format!("ensembles/ensemble_all/{case}/inputs.json"),
        ] {
            assert!(diff.contains(&k), "{k} was not recomputed");
        }
    }

    // a new image of case_a: its preprocessing, predictions, ensembles and rows, nothing of case_b
    upload_case(
        p.store,
        "case_a",
        &[("image.nii.gz".to_string(), brighter_image(5))],
    );
    (p.run)();
    let third = snapshot(p.store);
    let diff = changed(&second, &third);
    let of_case_a = |k: &str| k.contains("/case_a/") || k == "metrics/combined.csv";
    let stray: Vec<&String> = diff.iter().filter(|k| !of_case_a(k)).collect();
    assert!(stray.is_empty(), "changed beyond case_a: {stray:?}");
    let predicted: Vec<&String> = diff
        .iter()
        .filter(|k| k.starts_with("predictions/") && k.ends_with("/inputs.json"))
        .collect();
    assert_eq!(predicted.len(), models().len(), "{predicted:?}");
    assert!(
        diff.iter()
            .any(|k| k.starts_with("preprocessed/") && k.ends_with("/case.json"))
    );
    assert!(diff.contains(&"metrics/rows/case_a/ensemble_all.csv".to_string()));
}
