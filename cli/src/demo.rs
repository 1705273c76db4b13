//! `statapp demo`: the whole system on the embedded default. Synthetic multi-rater phantoms,
//! 3 annotators x 3 seeds trained on the CPU with quick settings, the test cases dropped into
//! `incoming/` of a directory bucket, and the event-driven pipeline (ingest, infer, ensemble,
//! metrics, merge) run until its queues are empty; then a summary of `metrics/combined.csv`.

use crate::progress;
use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use statapp_model::train::{TrainSettings, train};
use statapp_nnunet::dataset::CaseSet;
use statapp_nnunet::prepare::{PrepareRequest, prepare_dataset};
use statapp_pipeline::{Key, ObjectStore};
use statapp_stages::local::LocalPipeline;
use statapp_stages::score::COMBINED;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Working directory: raw/ (phantoms), prepared/, models/, bucket/ (the pipeline's bucket),
    /// report/ (the study's report).
    #[arg(long, default_value = "demo")]
    out: PathBuf,
    /// The study preset: 20 training and 8 test cases, 32 epochs of 100 iterations per model, so
    /// that the nine models segment the kidneys and liver and most find the pancreas, and the
    /// report can answer the study's question; about 2 hours on 2 cores (docs/study/). Explicit
    /// options below override it (`--epochs 60`, about 3.5 hours, finds the pancreas more reliably).
    #[arg(long)]
    study: bool,
    /// Training cases (phantoms drawn per annotator's labels) [quick: 12, study: 20].
    #[arg(long)]
    train_cases: Option<usize>,
    /// Test cases dropped into the bucket [quick: 4, study: 8].
    #[arg(long)]
    test_cases: Option<usize>,
    /// Epochs per model [quick: 10, study: 32].
    #[arg(long)]
    epochs: Option<usize>,
    /// Iterations per epoch [quick: 50, study: 100].
    #[arg(long)]
    iterations: Option<usize>,
    /// Initialisation seeds, one model per annotator and seed.
    #[arg(long, value_delimiter = ',', default_value = "112233,445566,778899")]
    seeds: Vec<u64>,
    /// Dataset seed of the phantoms.
    #[arg(long, default_value_t = 2025)]
    data_seed: u64,
}

/// The demo's sizes: the quick defaults or the study preset, then explicit options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Budget {
    train_cases: usize,
    test_cases: usize,
    epochs: usize,
    iterations: usize,
}

impl Budget {
    const QUICK: Budget = Budget {
        train_cases: 12,
        test_cases: 4,
        epochs: 10,
        iterations: 50,
    };
    const STUDY: Budget = Budget {
        train_cases: 20,
        test_cases: 8,
        epochs: 32,
        iterations: 100,
    };

    fn of(args: &Args) -> Self {
        let base = if args.study { Self::STUDY } else { Self::QUICK };
        Budget {
            train_cases: args.train_cases.unwrap_or(base.train_cases),
            test_cases: args.test_cases.unwrap_or(base.test_cases),
            epochs: args.epochs.unwrap_or(base.epochs),
            iterations: args.iterations.unwrap_or(base.iterations),
        }
    }
}

pub fn run(args: Args) -> Result<()> {
    let budget = Budget::of(&args);
    if budget.train_cases == 0 || budget.test_cases == 0 || args.seeds.is_empty() {
        bail!("need at least one training case, one test case and one seed");
    }
    let start = std::time::Instant::now();
    let raw = args.out.join("raw");
    let n = budget.train_cases + budget.test_cases;
    let bar = progress::bar(n as u64, "phantoms");
    let mut ids = Vec::new();
    for i in 0..n {
        let p = statapp_synth::generate(args.data_seed, i, statapp_synth::Size::Small);
        statapp_synth::write_bucket_case(&raw, &p)?;
        ids.push(p.case_id);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let (train_ids, test_ids) = ids.split_at(budget.train_cases);
    let splits = serde_json::json!({"train": train_ids, "validation": [], "test": test_ids});
    std::fs::write(
        raw.join("splits.json"),
        serde_json::to_string_pretty(&splits)?,
    )?;

    let device = Device::flex();
    let models_dir = args.out.join("models");
    let total = 3 * args.seeds.len();
    let bar = progress::bar(total as u64, "training");
    for k in 1..=3u8 {
        let prepared = args.out.join("prepared").join(format!("anno{k}"));
        let req = PrepareRequest {
            annotator: usize::from(k),
            cases: CaseSet::Train,
            cpu_patch: [16, 32, 32],
            cpu_spacing_factor: 2.0,
            dataset_name: statapp_synth::nnunet_dataset_name(usize::from(k)),
        };
        if !prepared.join("nnUNetPlans.json").exists() {
            prepare_dataset(&raw, &prepared, &req, &mut |_, _, _| {})?;
        }
        for &seed in &args.seeds {
            let settings = TrainSettings {
                configuration: "3d_cpu".into(),
                annotator: k,
                seed,
                fold: "all".into(),
                max_epochs: budget.epochs,
                iterations: budget.iterations,
                val_iterations: 4,
                // quick models: the pipeline's own scoring of the test cases says how they do
                final_validation: false,
                ..TrainSettings::default()
            };
            bar.set_message(settings.model_id());
            train(&prepared, &models_dir, &settings, &device, &mut |_| {})?;
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    println!(
        "trained {total} models in {:.0} s",
        start.elapsed().as_secs_f64()
    );

    let pipeline = LocalPipeline::open(&args.out.join("bucket"))?;
    let store = &pipeline.store;
    for entry in std::fs::read_dir(&models_dir)? {
        let dir = entry?.path();
        let Some(id) = dir.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
            continue;
        };
        if id.starts_with('.') {
            continue;
        }
        upload_model(store, &dir, &id)?;
    }
    for case in test_ids {
        let dir = raw.join("incoming").join(case);
        for f in [
            "annotation_1.nii.gz",
            "annotation_2.nii.gz",
            "annotation_3.nii.gz",
            "image.nii.gz",
        ] {
            let key = Key::new(format!("incoming/{case}/{f}"))?;
            store.put(&key, &std::fs::read(dir.join(f))?)?;
        }
    }
    let spinner = progress::spinner("pipeline");
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    let stats = pipeline.run_until_idle(&device, &mut |stage, _| {
        *counts.entry(stage.name()).or_default() += 1;
        spinner.set_message(format!("pipeline {counts:?}"));
    })?;
    spinner.finish_and_clear();
    let dead = pipeline.dead_letters.bodies().len();
    println!(
        "pipeline: {} job(s) handled, {} failed attempt(s), {dead} dead-lettered",
        stats.handled, stats.failed
    );
    let csv = store
        .get(&Key::new(COMBINED)?)?
        .context("the pipeline wrote no metrics/combined.csv")?;
    print_summary(&String::from_utf8_lossy(&csv))?;
    let bucket = args.out.join("bucket");
    println!(
        "\noutputs: {} (predictions/, ensembles/ with uncertainty maps, metrics/rows/, \
         metrics/curves/, errors/); models: {}",
        bucket.join(COMBINED).display(),
        models_dir.display(),
    );
    crate::report::write(
        &bucket.join(COMBINED),
        &args.out.join("report"),
        None,
        false,
    )?;
    println!("total {:.0} s", start.elapsed().as_secs_f64());
    Ok(())
}

/// Uploads a model directory, `model.json` last: its event registers the complete model. An id
/// the pipeline would refuse is refused here, before anything is uploaded.
pub(crate) fn upload_model(store: &dyn ObjectStore, dir: &Path, id: &str) -> Result<()> {
    statapp_pipeline::check_model_id(id)?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort_by_key(|p| p.file_name().is_some_and(|n| n == "model.json"));
    for f in files {
        let name = f
            .file_name()
            .and_then(|n| n.to_str())
            .context("file name")?;
        store.put(
            &Key::new(format!("models/{id}/{name}"))?,
            &std::fs::read(&f)?,
        )?;
    }
    Ok(())
}

/// Per model and ensemble: mean Dice per organ, ECE, ACE and CRPS over the cases.
fn print_summary(csv_text: &str) -> Result<()> {
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let header = reader.headers()?.clone();
    let col = |name: &str| header.iter().position(|h| h == name);
    let groups: [(&str, Vec<&str>); 6] = [
        ("Dice panc", vec!["DICE_panc"]),
        ("Dice kidn", vec!["DICE_kidn"]),
        ("Dice livr", vec!["DICE_livr"]),
        ("ECE", vec!["ECE_1", "ECE_2", "ECE_3"]),
        ("ACE", vec!["ACE_1", "ACE_2", "ACE_3"]),
        ("CRPS", vec!["CRPS_panc", "CRPS_kidn", "CRPS_livr"]),
    ];
    let mut sums: BTreeMap<String, Vec<(f64, usize)>> = BTreeMap::new();
    for rec in reader.records() {
        let rec = rec?;
        let name = rec.get(1).unwrap_or("").to_string();
        let acc = sums
            .entry(name)
            .or_insert_with(|| vec![(0.0, 0); groups.len()]);
        for (g, (_, cols)) in groups.iter().enumerate() {
            for c in cols {
                if let Some(v) = col(c)
                    .and_then(|i| rec.get(i))
                    .and_then(|s| s.parse::<f64>().ok())
                    .filter(|v| v.is_finite())
                {
                    acc[g].0 += v;
                    acc[g].1 += 1;
                }
            }
        }
    }
    print!("\n{:<30}", "model / ensemble");
    for (title, _) in &groups {
        print!("{title:>11}");
    }
    println!();
    for (name, acc) in &sums {
        print!("{name:<30}");
        for (s, n) in acc {
            if *n == 0 {
                print!("{:>11}", "-");
            } else {
                print!("{:>11.4}", s / *n as f64);
            }
        }
        println!();
    }
    println!(
        "(means over cases; ECE and ACE over the three annotators; CRPS (the original's, voxels) over organs)"
    );
    Ok(())
}
