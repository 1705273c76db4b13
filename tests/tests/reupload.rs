//! Re-uploads on the embedded default (DESIGN.md §3: outputs are pure functions of their inputs'
//! digests): identical bytes change nothing; a corrected annotation re-scores its case, equals a
//! fresh run on the new files, and changes no other byte of the bucket.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use burn::tensor::Device;
use statapp_e2e::{case_files, models, upload_case, upload_model};
use statapp_pipeline::ObjectStore;
use statapp_stages::local::LocalPipeline;
use std::collections::BTreeMap;

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

/// A case's upload bodies by file name.
type Files = Vec<(String, Vec<u8>)>;

/// A bucket with the test models and `cases`, run until idle.
fn pipeline(dir: &std::path::Path, cases: &[(&str, Files)]) -> LocalPipeline {
    let p = LocalPipeline::open(dir).unwrap();
    for m in models() {
        upload_model(&p.store, m);
    }
    for (case, files) in cases {
        upload_case(&p.store, case, files);
    }
    run(&p);
    p
}

#[test]
fn a_corrected_annotation_rescores_its_case_and_changes_nothing_else() {
    let (a, b) = (case_files(5), case_files(6));
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &[("case_a", a.clone()), ("case_b", b)]);
    let first = snapshot(&p.store);
    assert!(first.contains_key("metrics/rows/case_a/ensemble_all.csv"));

    // the same bytes again: nothing changes
    upload_case(&p.store, "case_a", &a);
    run(&p);
    assert_eq!(changed(&first, &snapshot(&p.store)), Vec::<String>::new());

    // a corrected annotation_2 (another valid annotation on the same grid)
    let mut corrected = a.clone();
    corrected[2].1 = a[3].1.clone();
    upload_case(&p.store, "case_a", &corrected[2..3]);
    run(&p);
    let second = snapshot(&p.store);
    let diff = changed(&first, &second);
    let allowed = |k: &str| {
        k == "incoming/case_a/annotation_2.nii.gz"
            || k == "cases/case_a/annotation_2.nii.gz"
            || k == "cases/case_a/ingested.json"
            || k == "cases/case_a/inputs.json"
            || k == "metrics/combined.csv"
            || k.starts_with("metrics/rows/case_a/")
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
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = pipeline(fresh_dir.path(), &[("case_a", corrected)]);
    let fresh = snapshot(&fresh.store);
    let of_case_a = |k: &&String| {
        k.starts_with("metrics/rows/case_a/")
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
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(
        dir.path(),
        &[("case_a", case_files(5)), ("case_b", case_files(6))],
    );
    let first = snapshot(&p.store);
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
    run(&p);
    let second = snapshot(&p.store);
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
        &p.store,
        "case_a",
        &[("image.nii.gz".to_string(), brighter_image(5))],
    );
    run(&p);
    let third = snapshot(&p.store);
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
