//! The `statapp` binary as a user runs it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{copy_tree, fixtures, text};
use std::path::Path;
use std::process::{Command, Output};

fn statapp(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_statapp"))
        .args(args)
        .output()
        .expect("statapp runs")
}

#[test]
fn every_command_has_help() {
    for cmd in [
        vec![],
        vec!["synth"],
        vec!["inspect"],
        vec!["preview"],
        vec!["bench"],
        vec!["bench", "nifti"],
        vec!["metrics"],
        vec!["metrics", "case"],
        vec!["metrics", "merge"],
        vec!["ensemble"],
        vec!["train"],
        vec!["demo"],
        vec!["prepare"],
        vec!["status"],
        vec!["about"],
        vec!["upload-data"],
        vec!["upload-model-artifacts"],
        vec!["empty-data"],
        vec!["empty-artifacts"],
        vec!["compute-metrics"],
        vec!["dl-metrics"],
    ] {
        let mut args = cmd.clone();
        args.push("--help");
        let o = statapp(&args);
        assert!(o.status.success(), "{cmd:?}: {}", text(&o));
        assert!(text(&o).contains("Usage"), "{cmd:?}");
    }
}

#[test]
fn synth_writes_both_layouts_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    let out = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let run = |o: &str, extra: &[&str]| {
        let mut args = vec![
            "synth", "--cases", "2", "--size", "small", "--seed", "3", "--out", o,
        ];
        args.extend_from_slice(extra);
        let r = statapp(&args);
        assert!(r.status.success(), "{}", text(&r));
        r
    };
    let r = run(&out("a"), &["--report"]);
    assert!(text(&r).contains("pairwise Dice"), "{}", text(&r));
    run(&out("b"), &[]);
    for case in ["case_000", "case_001"] {
        for f in ["image", "annotation_1", "annotation_2", "annotation_3"] {
            let rel = format!("incoming/{case}/{f}.nii.gz");
            let a = std::fs::read(dir.path().join("a").join(&rel)).unwrap();
            let b = std::fs::read(dir.path().join("b").join(&rel)).unwrap();
            assert_eq!(a, b, "{rel} differs between two runs with the same seed");
        }
    }
    run(&out("nn"), &["--layout", "nnunet", "--annotator", "2"]);
    let ds = dir.path().join("nn/Dataset475_CURVAS_ANNO2");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ds.join("dataset.json")).unwrap()).unwrap();
    assert_eq!(json["numTraining"], 2);
    assert_eq!(json["labels"]["pancreas"], 1);
    assert_eq!(json["channel_names"]["0"], "CT");
    let read = |p: &Path| statapp_volume_read(p);
    assert_eq!(
        read(&ds.join("labelsTr/case_001.nii.gz")),
        read(&dir.path().join("a/incoming/case_001/annotation_2.nii.gz"))
    );
    assert!(ds.join("imagesTr/case_001_0000.nii.gz").is_file());
}

/// Decompressed bytes of a file (headers and data), to compare contents across layouts.
fn statapp_volume_read(p: &Path) -> Vec<u8> {
    let o = statapp(&["inspect", &p.to_string_lossy()]);
    assert!(o.status.success(), "{}", text(&o));
    // the label counts and geometry lines identify the content; drop the file name line
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.starts_with("file"))
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes()
}

#[test]
fn inspect_reports_geometry_and_labels() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/volume/tests/fixtures");
    let o = statapp(&[
        "inspect",
        &fixture.join("labels_u8.nii.gz").to_string_lossy(),
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("shape zyx    [5, 6, 7]"), "{t}");
    assert!(t.contains("labels"), "{t}");
    assert!(t.contains("uint8"), "{t}");
}

#[test]
fn corrupt_files_fail_cleanly_naming_the_file() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/volume/tests/fixtures");
    for (name, words) in [
        ("truncated.nii.gz", "truncated"),
        ("random_bytes.nii", "not a NIfTI"),
        ("four_d.nii.gz", "3-D"),
    ] {
        let o = statapp(&["inspect", &fixture.join(name).to_string_lossy()]);
        let t = text(&o);
        assert!(!o.status.success(), "{name}: {t}");
        assert!(t.contains(name) && t.contains(words), "{name}: {t}");
        assert!(!t.contains("panicked"), "{name}: {t}");
    }
}

fn fixture_case(name: &str) -> Vec<String> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/metrics/tests/fixtures")
        .join(name);
    let f = |n: &str| d.join(n).to_string_lossy().into_owned();
    vec![
        "metrics".into(),
        "case".into(),
        "--annotation".into(),
        f("annotation_1.nii.gz"),
        "--annotation".into(),
        f("annotation_2.nii.gz"),
        "--annotation".into(),
        f("annotation_3.nii.gz"),
        "--probabilities".into(),
        f("prob_panc.nii.gz"),
        f("prob_kidn.nii.gz"),
        f("prob_livr.nii.gz"),
    ]
}

fn run_owned(args: &[String]) -> Output {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    statapp(&refs)
}

#[test]
fn metrics_case_json_and_csv_agree() {
    let args = fixture_case("no_ct_no_prediction");
    let o = run_owned(&args);
    assert!(o.status.success(), "{}", text(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let keys: Vec<&String> = doc.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "case",
            "inputs",
            "organs",
            "annotators",
            "global",
            "statapp_compat"
        ]
    );
    assert_eq!(doc["case"], "no_ct_no_prediction");
    assert_eq!(doc["statapp_compat"].as_object().unwrap().len(), 33);

    let mut csv_args = args.clone();
    csv_args.extend(
        [
            "--format",
            "csv",
            "--patient-id",
            "007",
            "--model",
            "ensemble_all",
        ]
        .map(String::from),
    );
    let o = run_owned(&csv_args);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2);
    let header: Vec<&str> = lines[0].split(',').collect();
    let row: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(header.len(), 69);
    assert_eq!(row.len(), 69);
    assert_eq!(&header[..3], ["Patient_ID", "CT", "DICE_panc"]);
    assert_eq!(&row[..2], ["007", "ensemble_all"]);
    let col = |name: &str| {
        row[header.iter().position(|h| *h == name).unwrap()]
            .parse::<f64>()
            .unwrap()
    };
    assert_eq!(
        col("dice_livr"),
        doc["organs"]["3"]["dice"].as_f64().unwrap()
    );
    assert_eq!(
        col("ECE_2"),
        doc["annotators"]["2"]["ece"].as_f64().unwrap()
    );
    assert_eq!(
        col("hd95_mm_kidn"),
        doc["organs"]["2"]["hausdorff"]["mean_hd95_mm"]
            .as_f64()
            .unwrap()
    );
}

#[test]
fn metrics_case_rejects_mismatched_inputs() {
    let mut args = fixture_case("no_ct_no_prediction");
    // an annotation of another shape
    let other = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/volume/tests/fixtures/labels_u8.nii.gz");
    args[7] = other.to_string_lossy().into_owned();
    let o = run_owned(&args);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("labels_u8.nii.gz") && t.contains("shape"), "{t}");
    // --roi ct without a CT
    let mut args = fixture_case("no_ct_no_prediction");
    args.extend(["--roi".to_string(), "ct".to_string()]);
    let o = run_owned(&args);
    assert!(
        !o.status.success() && text(&o).contains("--ct"),
        "{}",
        text(&o)
    );
}

#[test]
fn metrics_merge_upserts_and_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let rows = dir.path().join("rows");
    for (patient, model, sub) in [
        ("001", "anno1", "a"),
        ("001", "ensemble_all", "b"),
        ("002", "anno1", "a"),
    ] {
        let mut args = fixture_case("coarse_grid_ties");
        args.extend(
            ["--format", "csv", "--patient-id", patient, "--model", model].map(String::from),
        );
        let o = run_owned(&args);
        assert!(o.status.success(), "{}", text(&o));
        std::fs::create_dir_all(rows.join(sub)).unwrap();
        std::fs::write(
            rows.join(sub).join(format!("{patient}_{model}.csv")),
            o.stdout,
        )
        .unwrap();
    }
    let out = dir.path().join("combined.csv");
    let merge = |o: &Path| {
        statapp(&[
            "metrics",
            "merge",
            &rows.to_string_lossy(),
            "-o",
            &o.to_string_lossy(),
        ])
    };
    let o = merge(&out);
    assert!(o.status.success(), "{}", text(&o));
    let first = std::fs::read(&out).unwrap();
    let text1 = String::from_utf8(first.clone()).unwrap();
    let keys: Vec<String> = text1
        .lines()
        .skip(1)
        .map(|l| l.split(',').take(2).collect::<Vec<_>>().join(","))
        .collect();
    assert_eq!(keys, ["001,anno1", "001,ensemble_all", "002,anno1"]);
    // merging again (and merging into a fresh file) gives the same bytes
    assert!(merge(&out).status.success());
    assert_eq!(std::fs::read(&out).unwrap(), first);
    let out2 = dir.path().join("other.csv");
    assert!(merge(&out2).status.success());
    assert_eq!(std::fs::read(&out2).unwrap(), first);
    // rows already in the combined file survive a merge of other rows
    std::fs::remove_dir_all(rows.join("b")).unwrap();
    assert!(merge(&out).status.success());
    assert_eq!(std::fs::read(&out).unwrap(), first);
    // a file with the wrong header is a clear error and leaves the output untouched
    std::fs::write(
        rows.join("a").join("bad.csv"),
        "Patient_ID,CT,DICE\n1,2,3\n",
    )
    .unwrap();
    let o = merge(&out);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("bad.csv") && text(&o).contains("header"),
        "{}",
        text(&o)
    );
    assert_eq!(std::fs::read(&out).unwrap(), first);
}

/// prepare -> init-model -> predict -> ensemble -> metrics, on local directories. The networks
/// are untrained (training is `statapp train`), so only shapes, geometry and plumbing are checked.
#[test]
fn prepare_predict_ensemble_metrics_chain() {
    let dir = tempfile::tempdir().unwrap();
    let p = |s: &str| dir.path().join(s).to_string_lossy().into_owned();
    let ok = |args: &[&str]| {
        let o = statapp(args);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        o
    };
    ok(&[
        "synth",
        "--cases",
        "2",
        "--size",
        "small",
        "--seed",
        "9",
        "--out",
        &p("bucket"),
    ]);
    ok(&[
        "prepare",
        &p("bucket"),
        "--out",
        &p("prep"),
        "--annotator",
        "2",
    ]);
    let plans: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("prep/nnUNetPlans.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        plans["configurations"]["3d_fullres"]["architecture"]["network_class_name"],
        "dynamic_network_architectures.architectures.unet.PlainConvUNet"
    );
    assert!(
        dir.path()
            .join("prep/nnUNetPlans_3d_fullres/case_001_data.nii.gz")
            .is_file()
    );
    // member 1: an untrained seeded network; member 2: one short training run
    ok(&[
        "init-model",
        "--plans",
        &p("prep/nnUNetPlans.json"),
        "--annotator",
        "2",
        "--seed",
        "1",
        "--out",
        &p("models"),
    ]);
    let trained = ok(&[
        "train",
        "--data",
        &p("prep"),
        "--out",
        &p("models"),
        "--annotator",
        "2",
        "--seed",
        "2",
        "--epochs",
        "1",
        "--iterations",
        "1",
        "--val-iterations",
        "1",
        "--no-final-validation",
    ]);
    assert!(
        text(&trained).contains("anno2_init2_foldall: 1 epoch(s)"),
        "{}",
        text(&trained)
    );
    for f in [
        "training_log.json",
        "training_curve.png",
        "checkpoint_best.bpk",
        "dataset.json",
    ] {
        assert!(
            dir.path()
                .join("models/anno2_init2_foldall")
                .join(f)
                .is_file(),
            "{f}"
        );
    }
    let image = p("bucket/incoming/case_000/image.nii.gz");
    for (seed, out, checkpoint) in [
        ("1", "pred/a", "checkpoint_final.bpk"),
        ("2", "pred/b", "checkpoint_best.bpk"),
    ] {
        let model = p(&format!("models/anno2_init{seed}_foldall"));
        let o = ok(&[
            "predict",
            "--model",
            &model,
            "--image",
            &image,
            "--out",
            &p(out),
            "--tile-batch",
            "2",
        ]);
        // a trained model predicts with its best checkpoint, as the original trainer does
        assert!(text(&o).contains(checkpoint), "{}", text(&o));
    }
    ok(&["ensemble", &p("pred/a"), &p("pred/b"), "-o", &p("pred/ens")]);
    let seg = ok(&["inspect", &p("pred/ens/segmentation.nii.gz")]);
    let img = ok(&["inspect", &image]);
    let geometry = |o: &Output| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.starts_with("shape") || l.starts_with("spacing") || l.starts_with("  ["))
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        geometry(&seg),
        geometry(&img),
        "predictions keep the image geometry"
    );
    let c = p("bucket/incoming/case_000");
    let o = ok(&[
        "metrics",
        "case",
        "--annotation",
        &format!("{c}/annotation_1.nii.gz"),
        "--annotation",
        &format!("{c}/annotation_2.nii.gz"),
        "--annotation",
        &format!("{c}/annotation_3.nii.gz"),
        "--probabilities",
        &p("pred/ens/prob_panc.nii.gz"),
        &p("pred/ens/prob_kidn.nii.gz"),
        &p("pred/ens/prob_livr.nii.gz"),
        "--prediction",
        &p("pred/ens/segmentation.nii.gz"),
    ]);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["inputs"]["pred_source"], "segmentation.nii.gz");
}

#[test]
fn demo_runs_the_event_driven_pipeline_to_the_combined_csv() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let o = statapp(&[
        "demo",
        "--out",
        &out.to_string_lossy(),
        "--train-cases",
        "3",
        "--test-cases",
        "2",
        "--epochs",
        "1",
        "--iterations",
        "1",
        "--seeds",
        "1,2",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let csv = std::fs::read_to_string(out.join("bucket/metrics/combined.csv")).unwrap();
    // 2 test cases x (6 models + ensemble_anno1..3 + ensemble_all)
    assert_eq!(csv.lines().count(), 1 + 2 * 10, "{csv}");
    assert!(csv.starts_with("Patient_ID,CT,DICE_panc"));
    for name in ["anno3_init2_foldall", "ensemble_anno2", "ensemble_all"] {
        assert!(csv.contains(&format!("case_003,{name},")), "{name}");
    }
    let summary = text(&o);
    assert!(
        summary.contains("ensemble_all") && summary.contains("0 dead-lettered"),
        "{summary}"
    );
    // the training cases never enter the pipeline; nothing failed
    assert!(!out.join("bucket/cases/case_000").exists());
    assert!(!out.join("bucket/errors").exists());
    // it ends with the report: its path, the headline, figures from the rows' curves
    let report = out.join("report/report.html");
    assert!(
        summary.contains(&format!("report: {}", report.display())),
        "{summary}"
    );
    assert!(
        summary.contains("headline:") && summary.contains("ECE"),
        "{summary}"
    );
    assert!(out.join("report/figures/reliability.png").is_file());
    assert!(out.join("report/figures/risk_coverage.svg").is_file());
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report/stats.json")).unwrap()).unwrap();
    assert_eq!(stats["patients"], 2);
    assert_eq!(stats["curves"]["rows_with_curves"], 20);
    assert!(
        out.join("bucket/ensembles/ensemble_all/case_003/mutual_information.nii.gz")
            .is_file()
    );
}

#[test]
fn serve_once_runs_what_was_copied_into_the_bucket() {
    let bucket = tempfile::tempdir().unwrap();
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/hostile");
    for case in ["valid", "constant_image", "bomb_over_budget"] {
        let dir = bucket.path().join("incoming").join(case);
        std::fs::create_dir_all(&dir).unwrap();
        for f in std::fs::read_dir(corpus.join(case)).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, dir.join(f.file_name().unwrap())).unwrap();
        }
    }
    let o = statapp(&[
        "serve",
        "--bucket",
        bucket.path().to_str().unwrap(),
        "--once",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("12 upload(s) found"), "{}", text(&o));
    let error = |case: &str| {
        let p = bucket.path().join(format!("errors/{case}.json"));
        let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
        doc["kind"].as_str().unwrap().to_string()
    };
    assert_eq!(error("constant_image"), "ConstantImage");
    assert_eq!(error("bomb_over_budget"), "OverBudget");
    assert!(bucket.path().join("cases/valid/ingested.json").exists());
    assert!(!bucket.path().join("errors/valid.json").exists());
}

#[test]
fn fuzzed_nifti_files_never_panic_the_reader() {
    let o = statapp(&["bench", "fuzz-nifti", "--iterations", "3000", "--seed", "7"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("3000 inputs") && out.contains(", 0 panic(s)"),
        "{out}"
    );
    // the mutations reach both outcomes: typed errors and volumes that still read
    assert!(
        out.contains("InvalidHeader") && out.contains("ok ("),
        "{out}"
    );
}

#[test]
fn serve_picks_up_files_copied_while_it_runs() {
    let bucket = tempfile::tempdir().unwrap();
    // a timer scan only every 10 minutes: the copies are seen through file-system notifications
    let mut serve = Command::new(env!("CARGO_BIN_EXE_statapp"))
        .args(["serve", "--bucket", bucket.path().to_str().unwrap()])
        .args(["--poll-ms", "600000", "--settle-ms", "300"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("statapp serve starts");
    // past the scan on start, which finds an empty bucket
    std::thread::sleep(std::time::Duration::from_secs(1));
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/hostile");
    for case in ["valid", "label_negative"] {
        let dir = bucket.path().join("incoming").join(case);
        std::fs::create_dir_all(&dir).unwrap();
        for f in std::fs::read_dir(corpus.join(case)).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, dir.join(f.file_name().unwrap())).unwrap();
        }
    }
    let ingested = bucket.path().join("cases/valid/ingested.json");
    let error = bucket.path().join("errors/label_negative.json");
    let start = std::time::Instant::now();
    while !(ingested.exists() && error.exists()) && start.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    serve.kill().unwrap();
    serve.wait().unwrap();
    assert!(ingested.exists(), "the valid case was not ingested");
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&error).unwrap()).unwrap();
    assert_eq!(doc["kind"], "InvalidLabel");
}

#[test]
fn serve_scores_the_originals_layout_copied_while_it_runs_and_status_reports_it() {
    let bucket = tempfile::tempdir().unwrap();
    let root = bucket.path();
    // the original's variables: cases under data/, nnU-Net models under artifacts/models/
    let mut serve = Command::new(env!("CARGO_BIN_EXE_statapp"))
        .args(["serve", "--bucket", root.to_str().unwrap()])
        .args(["--poll-ms", "100", "--settle-ms", "300"])
        .env("S3_DATA_DIR", "data")
        .env("S3_ARTIFACTS_DIR", "artifacts")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("statapp serve starts");
    let folder = "nnUNetTrainer_5epochs__nnUNetPlans__3d_tiny";
    copy_tree(
        &fixtures().join("nnunet_model/model").join(folder),
        &root
            .join("artifacts/models/anno1_init112233_foldall")
            .join(folder),
    );
    let hostile = fixtures().join("hostile");
    copy_tree(&hostile.join("valid"), &root.join("data/UKCHLL010"));
    copy_tree(
        &hostile.join("label_negative"),
        &root.join("data/UKCHLL011"),
    );
    let combined = root.join("metrics/combined.csv");
    let start = std::time::Instant::now();
    while !combined.exists() && start.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    serve.kill().unwrap();
    serve.wait().unwrap();
    let csv = std::fs::read_to_string(&combined).expect("combined.csv written");
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{csv}");
    assert!(
        rows[0].starts_with("UKCHLL010,anno1_init112233_foldall,"),
        "{csv}"
    );
    // the model's files were copied to their canonical place and registered
    let model = root.join("models/anno1_init112233_foldall");
    assert!(model.join("model.json").is_file());
    assert!(
        model
            .join(folder)
            .join("fold_all/checkpoint_final.pth")
            .is_file()
    );

    let o = statapp(&["status", "--bucket", root.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["ingested"], 1, "{doc}");
    assert_eq!(
        doc["models"],
        serde_json::json!(["anno1_init112233_foldall"])
    );
    assert_eq!(doc["predicted"]["anno1_init112233_foldall"], 1, "{doc}");
    assert_eq!(doc["scored"], 1, "{doc}");
    assert!(doc["combined_modified"].is_u64(), "{doc}");
    assert_eq!(doc["errors"][0]["case"], "UKCHLL011", "{doc}");
    assert_eq!(doc["errors"][0]["kind"], "InvalidLabel", "{doc}");
    assert!(doc["queues_as_of"].is_u64(), "{doc}");
    assert_eq!(doc["queues"]["ingest"]["dead_letters"], 0, "{doc}");
    let human = statapp(&["status", "--bucket", root.to_str().unwrap()]);
    assert!(
        text(&human).contains("error UKCHLL011 [InvalidLabel]"),
        "{}",
        text(&human)
    );
}

#[test]
fn serve_reads_nnunet_raw_datasets_one_per_annotator() {
    let bucket = tempfile::tempdir().unwrap();
    let root = bucket.path().join("incoming/nnUNet_raw");
    let valid = fixtures().join("hostile/valid");
    for k in 1..=3 {
        let ds = root.join(format!("Dataset475_CURVAS_ANNO{k}_all"));
        std::fs::create_dir_all(ds.join("imagesTr")).unwrap();
        std::fs::create_dir_all(ds.join("labelsTr")).unwrap();
        std::fs::write(ds.join("dataset.json"), "{}").unwrap();
        std::fs::copy(
            valid.join("image.nii.gz"),
            ds.join("imagesTr/CURVAS_001_0000.nii.gz"),
        )
        .unwrap();
        std::fs::copy(
            valid.join(format!("annotation_{k}.nii.gz")),
            ds.join("labelsTr/CURVAS_001.nii.gz"),
        )
        .unwrap();
    }
    let o = statapp(&[
        "serve",
        "--bucket",
        bucket.path().to_str().unwrap(),
        "--once",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let case = bucket.path().join("cases/CURVAS_001");
    assert!(case.join("ingested.json").is_file(), "{}", text(&o));
    for k in 1..=3 {
        let name = format!("annotation_{k}.nii.gz");
        assert_eq!(
            std::fs::read(case.join(&name)).unwrap(),
            std::fs::read(valid.join(&name)).unwrap()
        );
    }
    assert!(!bucket.path().join("errors").exists(), "{}", text(&o));
}

#[test]
fn serve_trains_queued_jobs_on_a_local_cpu_worker_and_scores_with_the_new_model() {
    let dir = tempfile::tempdir().unwrap();
    let p = |s: &str| dir.path().join(s).to_string_lossy().into_owned();
    let ok = |args: &[&str]| {
        let o = statapp(args);
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        text(&o)
    };
    ok(&[
        "synth",
        "--cases",
        "3",
        "--size",
        "small",
        "--seed",
        "5",
        "--out",
        &p("raw"),
    ]);
    ok(&[
        "prepare",
        &p("raw"),
        "--out",
        &p("bucket/prepared/anno1"),
        "--annotator",
        "1",
        "--cases",
        "case_000,case_001",
        "--cpu-patch",
        "16",
        "32",
        "32",
    ]);
    let queued = ok(&[
        "queue-training",
        "--bucket",
        &p("bucket"),
        "--data",
        "prepared/anno{annotator}",
        "--annotators",
        "1",
        "--seeds",
        "7",
        "--epochs",
        "1",
        "--iterations",
        "2",
        "--val-iterations",
        "1",
    ]);
    assert!(queued.contains("queued 1 train job(s)"), "{queued}");
    copy_tree(
        &dir.path().join("raw/incoming/case_002"),
        &dir.path().join("bucket/incoming/case_002"),
    );
    let served = ok(&["serve", "--bucket", &p("bucket"), "--once"]);
    assert!(
        served.contains("trained anno1_init7_foldall (1 epoch(s))"),
        "{served}"
    );
    let csv = std::fs::read_to_string(dir.path().join("bucket/metrics/combined.csv")).unwrap();
    assert!(csv.contains("\ncase_002,anno1_init7_foldall,"), "{csv}");
    let status: serde_json::Value =
        serde_json::from_str(&ok(&["status", "--bucket", &p("bucket"), "--json"])).unwrap();
    assert_eq!(status["queues"]["train"]["waiting"], 0, "{status}");
    assert_eq!(status["queues"]["train"]["dead_letters"], 0, "{status}");
    // a second run finds the model trained and the job gone: nothing is trained again
    let again = ok(&["serve", "--bucket", &p("bucket"), "--once"]);
    assert!(!again.contains("trained"), "{again}");
}
