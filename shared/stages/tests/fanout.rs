#![cfg(feature = "infer")]
#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Tile fan-out of the infer stage with a real nnU-Net-trained network (tests/fixtures/nnunet_model,
//! mirroring on): parts and gather give the bytes of a one-process prediction for several part
//! counts, and of `statapp predict`'s path; duplicated parts, a lost part and an early gather
//! change nothing.

use burn::tensor::Device;
use statapp_model::checkpoint::load_weights;
use statapp_model::infer::predict_case;
use statapp_model::nnunet_format::import_model;
use statapp_model::outputs::{PredictionRecord, encode_prediction};
use statapp_model::predict::PredictOptions;
use statapp_nnunet::model_dir::{Mirroring, parse_info};
use statapp_nnunet::plans_file::Plans;
use statapp_nnunet::results::Which;
use statapp_pipeline::jobs::{InferJob, Job};
use statapp_pipeline::queue::{Clock, ManualClock};
use statapp_pipeline::{DirStore, JobQueue, Key, MemQueue, ObjectStore};
use statapp_stages::dispatch::{self, Outputs};
use statapp_stages::infer::InferSettings;
use statapp_volume::{ReadOptions, read_nifti};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const MODEL: &str = "nnunet_tiny";
const CASE: &str = "case_010";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/nnunet_model")
}

/// The fixture imported once: every bucket gets the same bytes, so the same model version.
fn imported() -> &'static Path {
    static MODEL_DIR: std::sync::OnceLock<(tempfile::TempDir, PathBuf)> =
        std::sync::OnceLock::new();
    &MODEL_DIR
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let folder = fixture().join("model/nnUNetTrainer_5epochs__nnUNetPlans__3d_tiny");
            let model_dir = import_model(&folder, MODEL, dir.path(), None, Which::Final).unwrap();
            (dir, model_dir)
        })
        .1
}

struct Env {
    _dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    store: DirStore,
    infer: MemQueue,
    others: MemQueue,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::default());
    let c: Arc<dyn Clock> = clock.clone();
    let store = DirStore::open(dir.path().join("bucket"), "statapp").unwrap();
    let model_dir = imported();
    // model.json last, as a registration writes it
    let mut files: Vec<PathBuf> = std::fs::read_dir(model_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort_by_key(|p| p.ends_with("model.json"));
    for f in files {
        let name = f.file_name().unwrap().to_str().unwrap().to_string();
        let k = Key::new(format!("models/{MODEL}/{name}")).unwrap();
        store.put(&k, &std::fs::read(&f).unwrap()).unwrap();
    }
    let image = std::fs::read(fixture().join("images/case_010_0000.nii.gz")).unwrap();
    store
        .put(
            &Key::new(format!("cases/{CASE}/image.nii.gz")).unwrap(),
            &image,
        )
        .unwrap();
    // what ingest records beside the canonical files (this case has no annotations here)
    let image_digest = statapp_stages::digests::sha256_hex(&image);
    statapp_stages::digests::CaseDigests {
        inputs: image_digest.clone(),
        image: image_digest,
        annotations: String::new(),
    }
    .write_current(&store, CASE)
    .unwrap();
    Env {
        _dir: dir,
        clock,
        store,
        infer: MemQueue::new("infer", c.clone()),
        others: MemQueue::new("others", c),
    }
}

impl Env {
    fn out(&self) -> Outputs<'_> {
        Outputs {
            infer: &self.infer,
            aggregate: &self.others,
            metrics: &self.others,
            merge: &self.others,
        }
    }

    fn handle(&self, body: &str, settings: &InferSettings) {
        dispatch::infer(body, &self.store, self.out(), &Device::flex(), settings).unwrap();
    }

    /// Receives every visible infer message; `deliver` says how often each is handled (0: lost).
    fn pump(&self, settings: &InferSettings, deliver: &mut dyn FnMut(&str) -> usize) -> usize {
        let batch = self.infer.receive(1000, Duration::from_secs(600)).unwrap();
        for d in &batch {
            for _ in 0..deliver(&d.body) {
                self.handle(&d.body, settings);
            }
            self.infer.delete(&d.receipt).unwrap();
        }
        batch.len()
    }

    /// The prediction's files (run.json holds timings, not results).
    fn prediction(&self) -> BTreeMap<String, Vec<u8>> {
        let prefix = format!("predictions/{MODEL}/{CASE}/");
        self.store
            .list(&prefix)
            .unwrap()
            .into_iter()
            .filter(|k| !k.as_str().ends_with("run.json"))
            .map(|k| (k.to_string(), self.store.get(&k).unwrap().unwrap()))
            .collect()
    }

    fn run_json(&self) -> serde_json::Value {
        let k = Key::new(format!("predictions/{MODEL}/{CASE}/run.json")).unwrap();
        serde_json::from_slice(&self.store.get(&k).unwrap().unwrap()).unwrap()
    }
}

fn settings(budget_s: f64) -> InferSettings {
    InferSettings {
        mirroring: Mirroring::On,
        budget_s,
        gflops: 1.0,
        gather_delay: Duration::from_secs(5),
        resend_every: 2,
        max_attempts: 10,
        memory_mb: 10240.0,
        // several row blocks on the 19-row grid
        gather_rows: 4,
        part_sums_mb: 1e6,
        // the splits below follow the estimate exactly
        calibrate: false,
    }
}

fn start() -> String {
    Job::Infer(InferJob::new(CASE, MODEL, None)).to_json()
}

/// Runs a prediction to its end with `settings`, every message delivered once.
fn predict(settings: &InferSettings) -> Env {
    let e = env();
    e.handle(&start(), settings);
    while e.pump(settings, &mut |_| 1) > 0 {}
    e
}

fn is_part(body: &str) -> bool {
    matches!(Job::from_json(body), Ok(Job::Infer(j)) if j.part.is_some())
}

#[test]
fn fanned_out_predictions_equal_one_process_bit_for_bit() {
    let whole = predict(&settings(1e9));
    let reference = whole.prediction();
    assert_eq!(reference.len(), 6, "{:?}", reference.keys());
    let run = whole.run_json();
    let tiles = run["tiles"].as_u64().unwrap() as usize;
    assert!(tiles >= 6, "{tiles} tiles");
    assert_eq!(run["parts"].as_array().unwrap().len(), 1);
    assert_eq!(run["views_per_tile"], 8);

    // the stage's path (preprocessed once, exact sums) is `statapp predict`'s
    let model = whole.store.root().join(format!("models/{MODEL}"));
    let info = parse_info(&model, &std::fs::read(model.join("model.json")).unwrap()).unwrap();
    let plans_bytes = std::fs::read(model.join("plans.json")).unwrap();
    let plans = Plans::from_json(&serde_json::from_slice(&plans_bytes).unwrap()).unwrap();
    let config = plans.configuration(&info.configuration).unwrap();
    let d = Device::flex();
    let ckpt = info.prediction_checkpoint();
    let net = load_weights(&info.network, &model.join(ckpt), &d).unwrap();
    let image = read_nifti(
        fixture().join("images/case_010_0000.nii.gz"),
        &ReadOptions::default(),
    )
    .unwrap();
    let geometry = image.geometry.clone();
    let image = image.into_f32();
    let opts = PredictOptions::default().mirror(&info.mirror_axes(Mirroring::On));
    let pred = predict_case(&net, &plans, config, &image, opts, &d).unwrap();
    let record = PredictionRecord::new(&info, ckpt, &plans_bytes, &opts);
    for (file, bytes) in encode_prediction(&info, pred, &geometry, &record).unwrap() {
        let k = format!("predictions/{MODEL}/{CASE}/{file}");
        assert!(reference[&k] == bytes, "{k} differs from statapp predict's");
    }

    // the budget decides the number of parts; every split adds up to the same bits
    let spt = statapp_nnunet::cost::tile_flops(&info.network, config.patch_size) * 8.0 / 1e9;
    for parts in [2, 3, tiles] {
        let budget = spt * (tiles.div_ceil(parts) as f64 + 0.5);
        let e = predict(&settings(budget));
        assert_eq!(e.run_json()["parts"].as_array().unwrap().len(), parts);
        assert!(e.prediction() == reference, "{parts} parts differ");
        // the parts' scratch sums are gone once the prediction is whole
        assert!(e.store.list("partials/").unwrap().is_empty());
    }

    // memory splits too: with all the time in the world, parts whose sums exceed the bound
    let tight = InferSettings {
        part_sums_mb: 1e-6,
        ..settings(1e9)
    };
    let e = predict(&tight);
    assert_eq!(e.run_json()["parts"].as_array().unwrap().len(), tiles);
    assert!(e.prediction() == reference, "memory-bound parts differ");

    // and a measured first tile overrides an estimate that is far too low: at 1e9 GFLOP/s every
    // tile fits the budget on paper, not in the time one really takes
    let measured = InferSettings {
        gflops: 1e9,
        calibrate: true,
        ..settings(1e-9)
    };
    let e = predict(&measured);
    assert_eq!(e.run_json()["parts"].as_array().unwrap().len(), tiles);
    assert!(e.prediction() == reference, "calibrated parts differ");
}

#[test]
fn duplicated_lost_and_early_messages_change_nothing() {
    let reference = predict(&settings(1e9)).prediction();
    let info = {
        let e = env();
        let m = e.store.root().join(format!("models/{MODEL}"));
        parse_info(&m, &std::fs::read(m.join("model.json")).unwrap()).unwrap()
    };
    let plans_path = fixture().join("model/nnUNetTrainer_5epochs__nnUNetPlans__3d_tiny/plans.json");
    let plans =
        Plans::from_json(&serde_json::from_slice(&std::fs::read(plans_path).unwrap()).unwrap())
            .unwrap();
    let patch = plans.configuration(&info.configuration).unwrap().patch_size;
    let s = settings(statapp_nnunet::cost::tile_flops(&info.network, patch) * 8.0 / 1e9 * 2.5);

    // every part delivered twice, the split itself twice
    let e = env();
    e.handle(&start(), &s);
    e.handle(&start(), &s);
    while e.pump(&s, &mut |b| if is_part(b) { 2 } else { 1 }) > 0 {}
    let got = e.prediction();
    let differ: Vec<&String> = reference
        .keys()
        .filter(|k| got.get(*k) != reference.get(*k))
        .collect();
    assert!(
        differ.is_empty(),
        "duplicates changed the prediction: {differ:?}"
    );

    // the gather first, one part lost: the gather waits (delayed), re-sends the lost part after
    // `resend_every` waits, and completes
    let e = env();
    e.handle(&start(), &s);
    let first = e.infer.receive(1000, Duration::from_secs(600)).unwrap();
    let (parts, gathers): (Vec<_>, Vec<_>) = first.iter().partition(|d| is_part(&d.body));
    assert_eq!(gathers.len(), 1);
    assert!(parts.len() >= 2);
    e.handle(&gathers[0].body, &s); // early: nothing there yet
    for (i, d) in parts.iter().enumerate() {
        if i != 1 {
            e.handle(&d.body, &s);
        }
    }
    for d in &first {
        e.infer.delete(&d.receipt).unwrap();
    }
    assert!(e.prediction().is_empty());
    // the re-queued gather is not visible until its delay has passed
    assert_eq!(e.pump(&s, &mut |_| 1), 0);
    for _ in 0..6 {
        e.clock.advance(Duration::from_secs(6));
        e.pump(&s, &mut |_| 1);
    }
    assert!(
        e.prediction() == reference,
        "the lost part was not recomputed"
    );
    assert_eq!(e.run_json()["parts"].as_array().unwrap().len(), parts.len());
}
