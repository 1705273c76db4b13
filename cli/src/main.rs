//! `statapp`: the command line of the statapp project.

mod bench;
mod bench_merge;
mod bucket;
mod cloud;
mod demo;
mod ensemble;
mod fuzz;
mod inspect;
mod metrics;
mod model_cmds;
mod original;
mod patients;
mod plan_inference;
mod prepare;
mod preview;
mod progress;
mod report;
mod serve;
mod status;
mod synth;
mod train;

use clap::{Parser, Subcommand};

/// Multi-rater CT segmentation: synthetic data, nnU-Net ensembles and uncertainty metrics.
#[derive(Debug, Parser)]
#[command(name = "statapp", version, about, long_about = None)]
struct Cli {
    /// Log progress (`info`); the original's `-v`. `RUST_LOG` overrides it.
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The main job: phantoms, 3 x 3 models trained on the CPU, the event-driven pipeline on a
    /// directory bucket, and the combined metrics CSV with a summary.
    Demo(demo::Args),
    /// Generate synthetic CURVAS-like CT phantoms with three annotators.
    Synth(synth::Args),
    /// Print a NIfTI file's header, geometry, value range and label counts.
    Inspect(inspect::Args),
    /// Render a slice of a case with the three annotators' contours to a PNG.
    Preview(preview::Args),
    /// The study's report from a combined metrics CSV: report.html, stats.json, figures.
    Report(report::Args),
    /// Score predictions (METRICS.md) and merge metric rows.
    #[command(subcommand)]
    Metrics(metrics::Command),
    /// nnU-Net fingerprint, plans (3d_fullres and 3d_cpu) and preprocessing of a dataset.
    Prepare(prepare::Args),
    /// Create a model directory with a seeded, untrained PlainConvUNet from a plan.
    InitModel(model_cmds::InitArgs),
    /// Train one model (annotator, seed, fold) on the CPU: nnU-Net's trainer with early stopping.
    Train(train::Args),
    /// Predict a CT with a model as nnU-Net does: probabilities and segmentation on the image's grid.
    Predict(model_cmds::PredictArgs),
    /// Tiles, parts, wall time and cost of one prediction (fan-out, one function, one GPU).
    PlanInference(plan_inference::Args),
    /// Import an nnU-Net v2 trained-model folder (plans.json, dataset.json, fold_<f>/*.pth).
    ImportModel(model_cmds::ImportArgs),
    /// Export a model as an nnU-Net v2 trained-model folder that nnUNetPredictor loads.
    ExportModel(model_cmds::ExportArgs),
    /// Average member predictions into an ensemble (mean probabilities, argmax labels).
    Ensemble(ensemble::Args),
    /// Create the bucket, queues (with dead-letter queues) and S3 notification on an endpoint.
    Setup(cloud::SetupArgs),
    /// Upload a case or a trained model into the configured bucket.
    #[command(subcommand)]
    Upload(cloud::UploadCommand),
    /// The embedded pipeline on a directory bucket that files are copied into (`--once`: process
    /// what is there and exit when idle).
    Serve(serve::Args),
    /// Queue training jobs (annotators x seeds) for `serve`'s local CPU worker.
    QueueTraining(serve::QueueTrainingArgs),
    /// Run the pipeline against the configured S3/SQS endpoint (plays the Lambda triggers).
    Run(cloud::RunArgs),
    /// Download metrics/combined.csv (default `metrics.csv`).
    DlMetrics(original::DlMetricsArgs),
    /// Cases by stage, queue depths, dead letters, the latest errors/ entries.
    Status(status::Args),
    /// What statapp is.
    About,
    /// Upload a folder of cases (the original's `UKCHLL<NNN>/` folders, statapp's, or nnU-Net
    /// raw datasets) to the data prefix.
    UploadData(original::UploadDataArgs),
    /// Upload a model folder (statapp's, or an nnU-Net results folder) as MODEL.
    UploadModelArtifacts(original::UploadModelArgs),
    /// Delete the uploaded cases and statapp's copies of them (asks first unless --confirm).
    EmptyData(original::EmptyArgs),
    /// Delete the models (asks first unless --confirm).
    EmptyArtifacts(original::EmptyArgs),
    /// Write the original project's train/validation/test patient sets as splits.json.
    OriginalSplits(patients::SplitsArgs),
    /// Queue the metric jobs of the selected patients (all|train|validation|test|ids).
    ComputeMetrics(original::ComputeMetricsArgs),
    /// Benchmarks that print wall time and peak memory.
    #[command(subcommand)]
    Bench(bench::Command),
}

/// `statapp inspect x | head` closes stdout early: end quietly, as a SIGPIPE would, instead of
/// printing a panic.
fn quiet_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info
            .payload_as_str()
            .is_some_and(|m| m.contains("Broken pipe"))
        {
            std::process::exit(141);
        }
        default(info);
    }));
}

/// `.env` of the working directory (or a parent), as the original's `load_dotenv()`: variables
/// already set win. Read once, before any thread starts.
fn load_dotenv() -> anyhow::Result<()> {
    match dotenvy::dotenv() {
        Ok(_) => Ok(()),
        Err(e) if e.not_found() => Ok(()),
        Err(e) => Err(anyhow::anyhow!(".env: {e}")),
    }
}

fn main() -> anyhow::Result<()> {
    quiet_broken_pipe();
    load_dotenv()?;
    let cli = Cli::parse();
    let level = if cli.verbose { "info" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Synth(args) => synth::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Preview(args) => preview::run(args),
        Command::Report(args) => report::run(args),
        Command::Metrics(cmd) => metrics::run(cmd),
        Command::Ensemble(args) => ensemble::run(args),
        Command::Prepare(args) => prepare::run(args),
        Command::InitModel(args) => model_cmds::init(args),
        Command::Train(args) => train::run(args),
        Command::Predict(args) => model_cmds::predict(args),
        Command::PlanInference(args) => plan_inference::run(args),
        Command::ImportModel(args) => model_cmds::import(args),
        Command::ExportModel(args) => model_cmds::export(args),
        Command::Setup(args) => cloud::setup(args),
        Command::Upload(cmd) => cloud::upload(cmd),
        Command::Serve(args) => serve::run(args),
        Command::QueueTraining(args) => serve::queue_training(args),
        Command::Run(args) => cloud::run(args),
        Command::DlMetrics(args) => original::dl_metrics(args),
        Command::Status(args) => status::run(args),
        Command::About => original::about(),
        Command::UploadData(args) => original::upload_data(args),
        Command::UploadModelArtifacts(args) => original::upload_model_artifacts(args),
        Command::EmptyData(args) => original::empty_data(args),
        Command::EmptyArtifacts(args) => original::empty_artifacts(args),
        Command::ComputeMetrics(args) => original::compute_metrics(args),
        Command::OriginalSplits(args) => patients::write_original_splits(args),
        Command::Bench(cmd) => bench::run(cmd),
    }
}
