//! The pipeline against a real S3/SQS endpoint (AWS, or moto's server): `setup` creates the
//! bucket, queues and notification on a local server, `upload` puts a case or a model into the
//! bucket, `run` plays Lambda's event source mappings with the functions' own handlers, and
//! `dl-metrics` downloads the combined CSV. Configuration: environment variables, then `.env`
//! (statapp's names, or the original project's: `S3_ENDPOINT`, `S3_BUCKET`, ...).

use crate::demo::upload_model;
use anyhow::{Context, Result};
use burn::tensor::Device;
use statapp_aws::{Aws, AwsConfig, provision};
use statapp_lambda::{Handler, Services, drain};
use statapp_pipeline::{Key, ObjectStore};
use statapp_stages::dispatch;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Clients and configuration; the runtime lives as long as the command.
pub(crate) struct Cloud {
    pub(crate) runtime: tokio::runtime::Runtime,
    pub(crate) aws: Aws,
    pub(crate) config: AwsConfig,
}

impl Cloud {
    /// From the environment, where `main` has loaded `.env` (statapp's names or the original's).
    pub(crate) fn connect() -> Result<Self> {
        let config = AwsConfig::from_env()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let aws = runtime.block_on(Aws::connect(&config));
        Ok(Self {
            runtime,
            aws,
            config,
        })
    }

    pub(crate) fn store(&self) -> statapp_aws::S3Store {
        statapp_aws::S3Store::new(self.aws.clone(), self.config.bucket.clone())
    }

    pub(crate) fn services(&self) -> Result<Services> {
        Services::resolve(&self.aws, &self.config).with_context(|| {
            format!(
                "queues {}-*: run `statapp setup` on a local server, or set STATAPP_<STAGE>_QUEUE_URL",
                self.config.queue_prefix
            )
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct SetupArgs {
    /// Visibility timeout of every queue (a job must finish within it).
    #[arg(long, default_value_t = 900)]
    visibility_seconds: u64,
    /// Receives before a message moves to its dead-letter queue.
    #[arg(long, default_value_t = 3)]
    max_receives: u32,
}

/// `statapp setup`: what `infra/template.yaml` creates, for a local server or a scratch account.
pub fn setup(args: SetupArgs) -> Result<()> {
    let cloud = Cloud::connect()?;
    let p = provision(
        &cloud.aws,
        &cloud.config,
        Duration::from_secs(args.visibility_seconds),
        args.max_receives,
    )?;
    println!("bucket {}", cloud.config.bucket);
    for (stage, q) in &p.queues {
        println!("queue {stage}: {}", q.url());
    }
    Ok(())
}

#[derive(Debug, clap::Subcommand)]
pub enum UploadCommand {
    /// A case folder (image.nii.gz, annotation_{1,2,3}.nii.gz) to incoming/<case>/.
    Case {
        dir: PathBuf,
        /// Case id; default: the folder's name.
        #[arg(long)]
        case: Option<String>,
    },
    /// A trained model folder to models/<id>/ (model.json last: its event registers the model).
    Model { dir: PathBuf },
}

pub fn upload(cmd: UploadCommand) -> Result<()> {
    let cloud = Cloud::connect()?;
    let store = statapp_aws::S3Store::new(cloud.aws.clone(), cloud.config.bucket.clone());
    let name_of = |dir: &Path| -> Result<String> {
        dir.file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
            .with_context(|| format!("{}: no folder name", dir.display()))
    };
    match cmd {
        UploadCommand::Case { dir, case } => {
            let case = match case {
                Some(c) => c,
                None => name_of(&dir)?,
            };
            let mut n = 0;
            for entry in std::fs::read_dir(&dir).with_context(|| dir.display().to_string())? {
                let path = entry?.path();
                let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
                    continue;
                };
                if path.is_file() && (file.ends_with(".nii.gz") || file.ends_with(".nii")) {
                    let key = Key::new(format!("incoming/{case}/{file}"))?;
                    store.put(&key, &std::fs::read(&path)?)?;
                    n += 1;
                }
            }
            println!(
                "uploaded {n} file(s) to s3://{}/incoming/{case}/",
                store.bucket()
            );
        }
        UploadCommand::Model { dir } => {
            let id = name_of(&dir)?;
            upload_model(&store, &dir, &id)?;
            println!("uploaded model {id}");
        }
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Stop once every queue is empty (nothing visible, nothing in flight) instead of polling on.
    #[arg(long)]
    until_idle: bool,
    /// Visibility timeout for received messages (failed ones come back after it).
    #[arg(long, default_value_t = 900)]
    visibility_seconds: u64,
    /// Give up after this many seconds (0: never).
    #[arg(long, default_value_t = 0)]
    timeout_seconds: u64,
}

/// `statapp run`: polls the five queues upstream first and hands each batch to the same handler
/// the corresponding Lambda function runs.
pub fn run(args: RunArgs) -> Result<()> {
    let cloud = Cloud::connect()?;
    let services = Arc::new(cloud.services()?);
    let device = Device::flex();
    let s = services.clone();
    let preprocess: Handler = Arc::new(move |b| dispatch::preprocess(b, &s.store, s.outputs()));
    let s = services.clone();
    let settings = statapp_stages::infer::InferSettings::from_env()?;
    let infer: Handler =
        Arc::new(move |b| dispatch::infer(b, &s.store, s.outputs(), &device, &settings));
    let s = services.clone();
    let aggregate: Handler = Arc::new(move |b| dispatch::aggregate(b, &s.store, s.outputs()));
    let s = services.clone();
    let metrics: Handler = Arc::new(move |b| dispatch::metrics(b, &s.store, s.outputs()));
    let mappings = services.mappings(preprocess, infer, aggregate, metrics);
    let start = Instant::now();
    let timeout = (args.timeout_seconds > 0).then(|| Duration::from_secs(args.timeout_seconds));
    let done = drain(
        cloud.runtime.handle(),
        &mappings,
        Duration::from_secs(args.visibility_seconds),
        timeout,
        !args.until_idle,
    )?;
    println!(
        "{} message(s) handled, {} failed attempt(s) in {:.1} s",
        done.handled,
        done.failed,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
