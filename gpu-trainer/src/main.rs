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
    #[arg(
        long,
        env = "STATAPP_TRAIN_QUEUE",
        required_unless_present = "bench_steps"
    )]
    queue: Option<PathBuf>,
    /// `cuda` (needs the `cuda` feature), `cuda:N`, or `cpu`.
    #[arg(long, env = "STATAPP_TRAIN_DEVICE", default_value = "cuda")]
    device: String,
    /// Keep polling for new jobs every N seconds instead of exiting when the queue is empty.
    #[arg(long)]
    poll_seconds: Option<u64>,
    /// Benchmark instead of training: time this many training steps of `--configuration` of
    /// `--plans` on a synthetic batch (the plan's patch and batch size) and print them.
    #[arg(long, requires = "plans")]
    bench_steps: Option<usize>,
    /// nnUNetPlans.json for `--bench-steps` (e.g. ../shared/curvas/nnUNetPlans.json).
    #[arg(long)]
    plans: Option<PathBuf>,
    #[arg(long, default_value = "3d_fullres")]
    configuration: String,
}

/// `--bench-steps`: one line per step, then the median of all steps but the first.
fn bench(args: &Args, steps: usize, device: &Device) -> Result<()> {
    use statapp_model::train::{NUM_CLASSES, bench::time_steps};
    use statapp_model::unet::UNetConfig;
    let Some(path) = &args.plans else {
        bail!("--bench-steps needs --plans");
    };
    let text = std::fs::read_to_string(path)?;
    let plans = statapp_nnunet::plans_file::Plans::from_json(&serde_json::from_str(&text)?)?;
    let config = plans.configuration(&args.configuration)?;
    let network = UNetConfig::from_configuration(config, NUM_CLASSES);
    let (patch, batch) = (config.patch_size, config.batch_size.max(1));
    let times = time_steps(&network, patch, batch, config.batch_dice, steps, device);
    for (i, t) in times.iter().enumerate() {
        println!("step {i}: {:.1} ms", t * 1000.0);
    }
    let mut rest: Vec<f64> = times.iter().skip(1).copied().collect();
    rest.sort_by(f64::total_cmp);
    if let Some(median) = rest.get(rest.len() / 2) {
        println!(
            "statapp {} on {}: {} patch {patch:?} batch {batch}, median {:.1} ms per step over {} steps after the first",
            env!("CARGO_PKG_VERSION"),
            args.device,
            args.configuration,
            median * 1000.0,
            rest.len()
        );
    }
    Ok(())
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
    if let Some(steps) = args.bench_steps {
        return bench(&args, steps, &device);
    }
    let Some(queue) = &args.queue else {
        bail!("--queue (or STATAPP_TRAIN_QUEUE) is required");
    };
    let queue = DirQueue::open(queue)?;
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
