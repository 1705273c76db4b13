//! The original project's commands (METRICS.md §14), on a directory bucket (`--bucket DIR`) or
//! the configured S3 bucket. Where the original was right they behave as it did; the fixes are
//! said on each command and in the README's mapping table.

use crate::bucket::{BucketArg, Target};
use crate::patients;
use anyhow::{Context, Result, bail};
use statapp_pipeline::jobs::Job;
use statapp_pipeline::{JobQueue, Key};
use statapp_stages::score::COMBINED;
use statapp_stages::survey::{ingested_cases, scorable};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// `statapp about`.
pub fn about() -> Result<()> {
    println!(
        "statapp {}: ensembles of nnU-Net 3D U-Nets for multi-rater abdominal CT (CURVAS: pancreas, kidney, liver; 3 annotators)",
        env!("CARGO_PKG_VERSION")
    );
    println!(
        "and how much ensembling reduces uncertainty: consensus Dice, confidence, volume CRPS, Hausdorff, NCC, ECE, ACE, AUROC, AURC, EAURC."
    );
    println!(
        "An event-driven rewrite in Rust of the statapp 2025 CURVAS project (Kirscher/statapp_2025_curvas): S3 uploads trigger validation,"
    );
    println!(
        "preprocessing, inference, ensembling and scoring; results in metrics/combined.csv. Locally: `statapp serve --bucket DIR`."
    );
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct UploadDataArgs {
    /// A folder of cases: `<case>/image.nii.gz` and `annotation_{1,2,3}.nii.gz` (the original's
    /// `UKCHLL<NNN>/` folders), or nnU-Net raw datasets.
    dir: PathBuf,
    #[command(flatten)]
    bucket: BucketArg,
}

/// Files under `dir` (recursively, hidden ones skipped), with their paths relative to it.
fn files_under(dir: &Path) -> Result<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| d.display().to_string())? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or(".");
            if name.starts_with('.') {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .with_context(|| path.display().to_string())?
                    .to_str()
                    .with_context(|| format!("{}: not UTF-8", path.display()))?
                    .replace('\\', "/");
                out.push((path, rel));
            }
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

/// `statapp upload-data DIR`: every NIfTI file (and nnU-Net's `dataset.json`) under DIR to the
/// data prefix, the original's `S3_DATA_DIR` where set, else `incoming/`, keeping the folders.
/// Other files are skipped and named (the original uploaded them too; ingest would reject them).
pub fn upload_data(args: UploadDataArgs) -> Result<()> {
    let target = Target::open(&args.bucket)?;
    let prefixes = target.prefixes();
    let prefix = prefixes.cases.last().context("no case prefix")?;
    let mut n = 0;
    for (path, rel) in files_under(&args.dir)? {
        let wanted =
            rel.ends_with(".nii.gz") || rel.ends_with(".nii") || rel.ends_with("dataset.json");
        if !wanted {
            println!("skipped {}: not a NIfTI file", path.display());
            continue;
        }
        let key = Key::new(format!("{prefix}{rel}"))?;
        target.store().put(&key, &std::fs::read(&path)?)?;
        n += 1;
    }
    println!("uploaded {n} file(s) to {}{prefix}", target.url());
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct UploadModelArgs {
    /// A statapp model folder (model.json, weights) or an nnU-Net results folder (holding
    /// `<trainer>__<plans>__<configuration>/`, or that folder itself).
    dir: PathBuf,
    /// The model id, `anno<k>_init<seed>_fold<f>` as in the original.
    model: String,
    #[command(flatten)]
    bucket: BucketArg,
}

/// `statapp upload-model-artifacts DIR MODEL`: to `models/MODEL/`, the canonical place (the
/// original's `S3_ARTIFACTS_DIR/S3_MODEL_ARTIFACTS_SUBDIR` is read too, for uploads by other
/// tools, and copied there). A statapp model's `model.json` goes last: its event registers it.
pub fn upload_model_artifacts(args: UploadModelArgs) -> Result<()> {
    let id = &args.model;
    statapp_pipeline::check_model_id(id)?;
    let target = Target::open(&args.bucket)?;
    if args.dir.join("model.json").is_file() {
        crate::demo::upload_model(target.store(), &args.dir, id)?;
        println!(
            "uploaded statapp model {id} to {}models/{id}/",
            target.url()
        );
        return Ok(());
    }
    let name = args.dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
    // the trainer folder itself: keep its name, which says trainer, plans and configuration
    let lead = if name.contains("__") && args.dir.join("plans.json").is_file() {
        format!("{name}/")
    } else {
        String::new()
    };
    let files = files_under(&args.dir)?;
    if !files.iter().any(|(_, rel)| rel.contains("__")) && lead.is_empty() {
        bail!(
            "{}: neither a statapp model (model.json) nor an nnU-Net results folder (<trainer>__<plans>__<configuration>/)",
            args.dir.display()
        );
    }
    for (path, rel) in &files {
        let key = Key::new(format!("models/{id}/{lead}{rel}"))?;
        target.store().put(&key, &std::fs::read(path)?)?;
    }
    println!(
        "uploaded {} file(s) of nnU-Net model {id} to {}models/{id}/",
        files.len(),
        target.url()
    );
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct EmptyArgs {
    /// Delete without asking.
    #[arg(short, long)]
    confirm: bool,
    #[command(flatten)]
    bucket: BucketArg,
}

/// Asks on stdin; only `y` or `yes` goes on.
fn ask(question: &str) -> Result<bool> {
    print!("{question} [y/N] ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(
        line.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// Deletes everything under `prefixes` after asking (unless `--confirm`), in batches of at most
/// 1,000 keys (the original sent every key in one request, which S3 refuses above 1,000).
fn empty(args: &EmptyArgs, what: &str, prefixes: impl Fn(&Target) -> Vec<String>) -> Result<()> {
    let target = Target::open(&args.bucket)?;
    let prefixes = prefixes(&target);
    let mut keys = Vec::new();
    for p in &prefixes {
        keys.extend(target.store().list(p)?);
    }
    let url = target.url();
    let listed = prefixes
        .iter()
        .map(|p| format!("{url}{p}"))
        .collect::<Vec<_>>()
        .join(", ");
    if keys.is_empty() {
        println!("no {what} under {listed}");
        return Ok(());
    }
    let question = format!("delete {} object(s) of {what} under {listed}?", keys.len());
    if !args.confirm && !ask(&question)? {
        println!("nothing deleted");
        return Ok(());
    }
    let n = target.store().delete_many(&keys)?;
    println!("deleted {n} object(s)");
    Ok(())
}

/// `statapp empty-data`: the uploads (`incoming/`, the original's `S3_DATA_DIR`) and statapp's
/// copies of them (`cases/`, `preprocessed/`, `errors/`). Results are kept.
pub fn empty_data(args: EmptyArgs) -> Result<()> {
    empty(&args, "data", |t| {
        let mut p = t.prefixes().cases;
        p.extend(["cases/", "preprocessed/", "errors/"].map(String::from));
        p
    })
}

/// `statapp empty-artifacts`: the models (`models/`, the original's model artifacts prefix).
pub fn empty_artifacts(args: EmptyArgs) -> Result<()> {
    empty(&args, "artifacts", |t| {
        let mut p = vec!["models/".to_string()];
        p.extend(t.prefixes().model_aliases);
        p
    })
}

#[derive(Debug, clap::Args)]
pub struct ComputeMetricsArgs {
    /// `all`, `train`, `validation`, `test`, or ids (`077`, `UKCHLL077`); default all.
    patients: Vec<String>,
    /// Models and ensembles to score (`anno1_init112233_foldall`, `ensemble_all`; comma
    /// separated or repeated); default all.
    #[arg(short, long, value_delimiter = ',')]
    models: Vec<String>,
    #[command(flatten)]
    bucket: BucketArg,
}

/// `statapp compute-metrics PATIENTS [-m MODELS]`: queues one metric job per selected patient and
/// prediction or ensemble present. Rows are upserted by (case, model) into
/// `metrics/combined.csv`, so scoring a subset keeps the other rows (the original overwrote the
/// patient's file with only the subset's rows). On a directory bucket the jobs run here; on S3
/// they go to the metrics queue, for the deployed functions or `statapp run`.
pub fn compute_metrics(args: ComputeMetricsArgs) -> Result<()> {
    let target = Target::open(&args.bucket)?;
    let store = target.store();
    let cases = ingested_cases(store)?;
    let selected = patients::select(&args.patients, &cases, store)?;
    let wanted = |name: &str| {
        args.models.is_empty() || args.models.iter().any(|m| m == name) || args.models == ["all"]
    };
    let jobs: Vec<String> = scorable(store)?
        .into_iter()
        .filter(|j| selected.contains(&j.case) && wanted(&j.name))
        .map(|j| Job::Metrics(j).to_json())
        .collect();
    if jobs.is_empty() {
        bail!(
            "nothing to score: no prediction of the selected model(s) for the {} selected patient(s)",
            selected.len()
        );
    }
    match &target {
        Target::Dir { root, .. } => {
            let pipeline = statapp_stages::local::LocalPipeline::open(root)?;
            for j in &jobs {
                pipeline.metrics.send(j)?;
            }
            let device = burn::tensor::Device::flex();
            let stats = pipeline.run_until_idle(&device, &mut |_, _| {})?;
            println!(
                "{} metric job(s) for {} patient(s): {} handled, {} failed attempt(s); {}",
                jobs.len(),
                selected.len(),
                stats.handled,
                stats.failed,
                root.join(COMBINED).display()
            );
        }
        Target::S3 { cloud, .. } => {
            let services = cloud.services()?;
            for j in &jobs {
                services.metrics.send(j)?;
            }
            println!(
                "queued {} metric job(s) for {} patient(s) on {}",
                jobs.len(),
                selected.len(),
                services.metrics.name()
            );
        }
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct DlMetricsArgs {
    /// Where to write the combined CSV.
    #[arg(short, long, default_value = "metrics.csv")]
    output: PathBuf,
    #[command(flatten)]
    bucket: BucketArg,
}

/// `statapp dl-metrics [-o FILE]`: `metrics/combined.csv`, already one row per (case, model),
/// sorted, written whole (the original concatenated per-patient files in walk order).
pub fn dl_metrics(args: DlMetricsArgs) -> Result<()> {
    let target = Target::open(&args.bucket)?;
    let body = target.store().get(&Key::new(COMBINED)?)?.with_context(|| {
        format!(
            "{}{COMBINED} does not exist yet: no case has been scored",
            target.url()
        )
    })?;
    statapp_volume::write_atomic(&args.output, &body)
        .with_context(|| args.output.display().to_string())?;
    let rows = body
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        .saturating_sub(1);
    println!("{} ({rows} rows)", args.output.display());
    Ok(())
}
