#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Training on a tiny prepared phantom dataset: outputs, determinism, early stopping.

use burn::tensor::Device;
use statapp_model::checkpoint::{load_weights, read_info};
use statapp_model::train::log::TrainingLog;
use statapp_model::train::{TrainSettings, train};
use statapp_nnunet::dataset::CaseSet;
use statapp_nnunet::prepare::{PrepareRequest, prepare_dataset};
use std::path::{Path, PathBuf};

/// Five small phantoms (the fewest that make nnU-Net's five folds), prepared with a 16 x 32 x 32 `3d_cpu` patch.
fn prepared(root: &Path) -> PathBuf {
    let raw = root.join("raw");
    for i in 0..5 {
        statapp_synth::write_bucket_case(
            &raw,
            &statapp_synth::generate(11, i, statapp_synth::Size::Small),
        )
        .unwrap();
    }
    let out = root.join("prepared");
    let req = PrepareRequest {
        annotator: 1,
        cases: CaseSet::All,
        cpu_patch: [16, 32, 32],
        cpu_spacing_factor: 2.0,
        dataset_name: "Dataset475_CURVAS_ANNO1".into(),
    };
    prepare_dataset(&raw, &out, &req, &mut |_, _, _| {}).unwrap();
    out
}

fn tiny(seed: u64, fold: &str) -> TrainSettings {
    TrainSettings {
        configuration: "3d_cpu".into(),
        seed,
        fold: fold.into(),
        max_epochs: 2,
        iterations: 2,
        val_iterations: 1,
        patience: 20,
        // the sliding-window validation is its own test below
        final_validation: false,
        ..TrainSettings::default()
    }
}

fn weights(dir: &Path, file: &str) -> Vec<Vec<f32>> {
    let info = read_info(dir).unwrap();
    load_weights(&info.network, &dir.join(file), &Device::flex())
        .unwrap()
        .conv_weights()
}

#[test]
fn training_writes_a_complete_model_and_is_deterministic() {
    let tmp = tempfile::tempdir().unwrap();
    let data = prepared(tmp.path());
    let dev = Device::flex();
    let mut epochs_seen = 0;
    let a = train(
        &data,
        &tmp.path().join("a"),
        &tiny(7, "0"),
        &dev,
        &mut |_| epochs_seen += 1,
    )
    .unwrap();
    assert_eq!(epochs_seen, 2);
    let dir = &a.model_dir;
    assert!(dir.ends_with("anno1_init7_fold0"));
    for f in [
        "model.json",
        "plans.json",
        "dataset.json",
        "training_log.json",
        "training_curve.png",
        "checkpoint_best.bpk",
        "checkpoint_final.bpk",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    // no temporary directory is left behind
    let names: Vec<_> = std::fs::read_dir(tmp.path().join("a"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    let log: TrainingLog =
        serde_json::from_str(&std::fs::read_to_string(dir.join("training_log.json")).unwrap())
            .unwrap();
    assert_eq!(log.epochs.len(), 2);
    // fold 0 of nnU-Net's split of 5 cases: 4 train, 1 validation, and the split file is kept
    assert_eq!((log.train_cases.len(), log.val_cases.len()), (4, 1));
    assert!(data.join("splits_final.json").is_file());
    assert!(
        log.epochs
            .iter()
            .all(|e| e.train_loss.is_finite() && e.lr > 0.0)
    );
    assert_eq!(log.epochs[1].lr, 0.01 * 0.5f64.powf(0.9));

    // same seed, same weights; another seed, other weights
    let b = train(
        &data,
        &tmp.path().join("b"),
        &tiny(7, "0"),
        &dev,
        &mut |_| {},
    )
    .unwrap();
    let c = train(
        &data,
        &tmp.path().join("c"),
        &tiny(8, "0"),
        &dev,
        &mut |_| {},
    )
    .unwrap();
    let (wa, wb, wc) = (
        weights(&a.model_dir, "checkpoint_final.bpk"),
        weights(&b.model_dir, "checkpoint_final.bpk"),
        weights(&c.model_dir, "checkpoint_final.bpk"),
    );
    assert_eq!(wa, wb);
    assert_ne!(wa, wc);
    // training moved the weights away from the seeded initialisation
    let init =
        statapp_model::PlainConvUNet::new(&read_info(&a.model_dir).unwrap().network, 7, &dev)
            .conv_weights();
    assert_ne!(wa, init);

    // a second run with a finished model is a no-op (at-least-once job delivery)
    let again = train(
        &data,
        &tmp.path().join("a"),
        &tiny(7, "0"),
        &dev,
        &mut |_| panic!("trained again"),
    )
    .unwrap();
    assert!(again.already_present);
}

#[test]
fn early_stopping_ends_a_plateau() {
    let tmp = tempfile::tempdir().unwrap();
    let data = prepared(tmp.path());
    // learning rate 0: the network never changes, the pseudo-Dice is flat from epoch 0, and with
    // patience 3 training stops after epoch 3 instead of running 50 epochs
    let settings = TrainSettings {
        max_epochs: 50,
        iterations: 1,
        patience: 3,
        initial_lr: 0.0,
        ..tiny(5, "all")
    };
    let out = train(
        &data,
        &tmp.path().join("m"),
        &settings,
        &Device::flex(),
        &mut |_| {},
    )
    .unwrap();
    let log = &out.log;
    assert_eq!(log.stop_reason, "early_stopping");
    assert_eq!(log.epochs.len(), 4);
    assert_eq!(log.best_epoch, Some(0));
    assert_eq!(
        log.train_cases, log.val_cases,
        "fold all validates on the training cases"
    );
}

#[test]
fn bad_fold_and_missing_data_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let err = train(
        tmp.path(),
        &tmp.path().join("m"),
        &tiny(1, "7"),
        &Device::flex(),
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("fold"), "{err}");
    let err = train(
        tmp.path(),
        &tmp.path().join("m"),
        &tiny(1, "all"),
        &Device::flex(),
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("nnUNetPlans.json"), "{err}");
}

/// nnU-Net's final validation: every validation case of the fold predicted and scored per class,
/// with nnU-Net's summary.json fields.
#[test]
fn final_validation_scores_every_validation_case() {
    let tmp = tempfile::tempdir().unwrap();
    let data = prepared(tmp.path());
    let settings = TrainSettings {
        final_validation: true,
        ..tiny(3, "1")
    };
    let out = train(
        &data,
        &tmp.path().join("m"),
        &settings,
        &Device::flex(),
        &mut |_| {},
    )
    .unwrap();
    let text = std::fs::read_to_string(out.model_dir.join("validation/summary.json")).unwrap();
    let summary: serde_json::Value = serde_json::from_str(&text).unwrap();
    let per_case = summary["metric_per_case"].as_array().unwrap();
    assert_eq!(per_case.len(), out.log.val_cases.len());
    for case in per_case {
        for class in ["1", "2", "3"] {
            let m = &case["metrics"][class];
            let (tp, fp, fn_) = (
                m["TP"].as_f64().unwrap(),
                m["FP"].as_f64().unwrap(),
                m["FN"].as_f64().unwrap(),
            );
            match m["Dice"].as_f64() {
                Some(d) => assert!((d - 2.0 * tp / (2.0 * tp + fp + fn_)).abs() < 1e-12),
                None => assert_eq!(tp + fp + fn_, 0.0),
            }
        }
    }
    assert!(summary["foreground_mean"].get("Dice").is_some());
}

/// The log without its wall-clock seconds.
fn epochs_without_time(log: &TrainingLog) -> Vec<String> {
    log.epochs
        .iter()
        .map(|e| {
            let mut e = e.clone();
            e.seconds = 0.0;
            format!("{e:?}")
        })
        .collect()
}

#[test]
fn an_interrupted_run_resumes_to_the_uninterrupted_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let data = prepared(tmp.path());
    let dev = Device::flex();
    let settings = TrainSettings {
        max_epochs: 4,
        ..tiny(9, "0")
    };
    let whole = train(&data, &tmp.path().join("a"), &settings, &dev, &mut |_| {}).unwrap();

    // killed while epoch 2 ends, before its checkpoint: epochs 0 and 1 are saved
    let root = tmp.path().join("b");
    let killed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        train(&data, &root, &settings, &dev, &mut |e| {
            assert!(e.epoch < 2, "interrupted");
        })
    }));
    assert!(killed.is_err());
    let work = root.join(format!(".partial-{}", settings.model_id()));
    assert!(work.join("checkpoint_latest/state.json").is_file());
    let mut seen = Vec::new();
    let resumed = train(&data, &root, &settings, &dev, &mut |e| seen.push(e.epoch)).unwrap();
    assert_eq!(seen, [2, 3], "resumed after the last saved epoch");
    for file in ["checkpoint_final.bpk", "checkpoint_best.bpk"] {
        assert_eq!(
            weights(&resumed.model_dir, file),
            weights(&whole.model_dir, file),
            "{file}"
        );
    }
    assert_eq!(
        epochs_without_time(&resumed.log),
        epochs_without_time(&whole.log)
    );
    // like nnU-Net, the finished model keeps no checkpoint_latest
    assert!(!resumed.model_dir.join("checkpoint_latest").exists());

    // a checkpoint of other settings is not resumed: that run starts at epoch 0
    let root = tmp.path().join("c");
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        train(&data, &root, &settings, &dev, &mut |e| {
            assert!(e.epoch < 1, "interrupted");
        })
    }));
    let other = TrainSettings {
        iterations: 3,
        ..settings.clone()
    };
    let mut seen = Vec::new();
    train(&data, &root, &other, &dev, &mut |e| seen.push(e.epoch)).unwrap();
    assert_eq!(seen, [0, 1, 2, 3]);
}

#[test]
fn unpacked_cases_read_in_regions_give_the_patches_of_cases_in_memory() {
    use statapp_model::rng::Rng;
    use statapp_model::train::augment::sample_patch;
    use statapp_model::train::data::{TrainCase, load_case};
    use statapp_volume::{ReadOptions, read_nifti};
    let tmp = tempfile::tempdir().unwrap();
    let data = prepared(tmp.path());
    let folder = data.join("nnUNetPlans_3d_cpu");
    let id = "case_000";
    let read = |f: &str| {
        read_nifti(folder.join(f), &ReadOptions::default())
            .unwrap()
            .into_f32()
            .data()
            .clone()
    };
    let image = read(&format!("{id}_data.nii.gz"));
    let labels = read(&format!("{id}_seg.nii.gz")).mapv(|v| v.max(0.0) as u8);
    let memory = TrainCase::new(id.into(), image.clone(), labels.clone(), 3);
    let files = load_case(&data, "nnUNetPlans_3d_cpu", id, 3).unwrap();
    assert!(folder.join(format!("unpacked/{id}.json")).is_file());
    assert_eq!(files.shape(), memory.shape());
    assert_eq!(files.counts(), memory.counts());
    for (c, &n) in (1..).zip(memory.counts()) {
        for i in (0..n).step_by(97) {
            assert_eq!(
                files.location(c, i).unwrap(),
                memory.location(c, i).unwrap()
            );
        }
    }
    let whole = files.whole().unwrap();
    assert_eq!(whole.image, image);
    assert_eq!(whole.labels, labels);
    // augmented patches (rotations and scaling read boxes of the case) match draw for draw
    let (mut a, mut b) = (Rng::new(3), Rng::new(3));
    for i in 0..40 {
        let fg = i % 3 == 0;
        assert_eq!(
            sample_patch(&files, [16, 32, 32], fg, true, &mut a).unwrap(),
            sample_patch(&memory, [16, 32, 32], fg, true, &mut b).unwrap()
        );
    }
    // a second load reads the unpacked record, a changed prepared file is unpacked again
    let again = load_case(&data, "nnUNetPlans_3d_cpu", id, 3).unwrap();
    assert_eq!(again.counts(), files.counts());
    let seg = folder.join(format!("{id}_seg.nii.gz"));
    let other = folder.join("case_001_seg.nii.gz");
    std::fs::copy(&other, &seg).unwrap();
    let changed = load_case(&data, "nnUNetPlans_3d_cpu", id, 3);
    // case_001's labels have another shape or other positions: either a clear error or new data
    match changed {
        Ok(c) => assert_ne!(c.counts(), files.counts()),
        Err(e) => assert!(e.to_string().contains("differ in shape"), "{e}"),
    }
}
