//! `statapp-gpu-trainer`: trains the models named by `TrainJob` messages in a queue directory,
//! on CUDA when built with `--features cuda`, else on the CPU.

use anyhow::{Result, bail};
use burn::tensor::Device;
use clap::Parser;
use statapp_gpu_trainer::{Outcome, drain};
use statapp_pipeline::DirQueue;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(name = "statapp-gpu-trainer", version, about)]
struct Args {
    /// Queue directory (pending/, inflight/, failed/) holding TrainJob messages.
    #[arg(long, env = "STATAPP_TRAIN_QUEUE")]
    queue: PathBuf,
    /// `cuda` (needs the `cuda` feature), `cuda:N`, or `cpu`.
    #[arg(long, env = "STATAPP_TRAIN_DEVICE", default_value = "cuda")]
    device: String,
    /// Keep polling for new jobs every N seconds instead of exiting when the queue is empty.
    #[arg(long)]
    poll_seconds: Option<u64>,
}

fn device(spec: &str) -> Result<Device> {
    if spec == "cpu" {
        return Ok(Device::flex());
    }
    let Some(rest) = spec.strip_prefix("cuda") else {
        bail!("unknown device `{spec}`: use cpu, cuda or cuda:N");
    };
    let index: usize = match rest.strip_prefix(':') {
        Some(n) => n.parse()?,
        None if rest.is_empty() => 0,
        None => bail!("unknown device `{spec}`"),
    };
    cuda(index)
}

#[cfg(feature = "cuda")]
fn cuda(index: usize) -> Result<Device> {
    Ok(Device::cuda(index))
}

#[cfg(not(feature = "cuda"))]
fn cuda(_index: usize) -> Result<Device> {
    bail!("this build has no CUDA backend: rebuild with `--features cuda`, or pass --device cpu")
}

fn main() -> Result<()> {
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|v| v == "JSON")
        || std::env::var("STATAPP_LOG_JSON").is_ok();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
    let args = Args::parse();
    let device = device(&args.device)?;
    let queue = DirQueue::open(&args.queue)?;
    loop {
        for o in drain(&queue, &device)? {
            match o {
                Outcome::Trained { model_id, epochs } => {
                    println!("trained {model_id} ({epochs} epochs)")
                }
                Outcome::AlreadyPresent { model_id } => println!("{model_id} already present"),
                Outcome::Failed { id, reason } => println!("job {id} failed: {reason}"),
            }
        }
        match args.poll_seconds {
            Some(s) => std::thread::sleep(Duration::from_secs(s)),
            None => return Ok(()),
        }
    }
}
