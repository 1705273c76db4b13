//! `statapp bench`: benchmarks that print wall time and peak memory (resident set high-water mark).
//! Run each in its own process so that the peak belongs to that workload alone; see
//! `tools/bench_foundation.sh` for the side-by-side run with nibabel.

use anyhow::Result;
use ndarray::Array3;
use rayon::prelude::*;
use statapp_synth::Size;
use statapp_synth::noise;
use statapp_volume::{ReadOptions, Volume, read_nifti, write_nifti, write_nifti_image};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Generate one case and write it in the bucket layout.
    Synth {
        #[arg(long, default_value = "large")]
        size: Size,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Read a NIfTI file, then write it back (same type and compression) to OUT.
    Nifti { file: PathBuf, out: PathBuf },
    /// Preprocess one case with the 3d_fullres configuration of a plan (read, crop, normalise,
    /// resample), as tools/bench_nnunet.py does with nnunetv2.
    Preprocess {
        #[arg(long)]
        image: PathBuf,
        #[arg(long)]
        labels: PathBuf,
        #[arg(long)]
        plans: PathBuf,
    },
    /// Forward passes of a plan configuration's network on random patches (CPU): voxels/s.
    Infer {
        #[arg(long)]
        plans: PathBuf,
        #[arg(long, default_value = "3d_fullres")]
        configuration: String,
        #[arg(long, default_value_t = 2)]
        tiles: usize,
    },
    /// Seconds per tile of a model's sliding-window pass (one patch-sized image, so exactly one
    /// tile, with nnU-Net's mirroring over the model's allowed axes when `--mirroring on`).
    Tile {
        #[arg(long)]
        model: PathBuf,
        #[arg(long, default_value = "off", value_parser = ["on", "off"])]
        mirroring: String,
        #[arg(long, default_value_t = 3)]
        repeats: usize,
    },
    /// Write `members` prediction directories of one phantom (model-like probabilities with
    /// different noise), for measuring `statapp ensemble`.
    EnsembleData {
        #[arg(long, default_value = "large")]
        size: Size,
        #[arg(long, default_value_t = 9)]
        members: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Run one pipeline stage's handler on a directory bucket, for its wall time and peak memory:
    /// `ingest` needs `incoming/<case>/`, `infer` an ingested case and `models/<model>/`,
    /// `metrics` the model's prediction (see tools/bench_stages.sh).
    Stage {
        #[arg(value_parser = ["ingest", "infer", "metrics"])]
        stage: String,
        #[arg(long)]
        bucket: PathBuf,
        #[arg(long)]
        case: String,
        #[arg(long)]
        model: Option<String>,
    },
    /// Metric rows arriving as events (each row followed by a merge request), folded into the
    /// combined CSV by one merge worker: rows, commits, merge work and wall time per size.
    Merge {
        /// Numbers of rows (the pipeline writes 13 per case).
        #[arg(long, value_delimiter = ',', default_values_t = [100, 1_000, 10_000, 13_000])]
        rows: Vec<usize>,
        /// `STATAPP_MERGE_WINDOW_S` of the merges (default: the template's).
        #[arg(long, default_value_t = 10.0)]
        window_s: f64,
    },
    /// Mutation fuzzing of the NIfTI reader: mutated headers and data of valid files, decoded
    /// under a byte budget; fails on any panic (replay one with the same --seed).
    FuzzNifti {
        #[arg(long, default_value_t = 100_000)]
        iterations: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The decode budget (`ReadOptions::max_bytes`), in MiB.
        #[arg(long, default_value_t = 256)]
        budget_mib: u64,
    },
    /// Write one phantom case plus model-like probability maps (prob_panc/kidn/livr.nii.gz, f32)
    /// for benchmarking `statapp metrics case` against tools/metrics_reference.py.
    MetricsData {
        #[arg(long, default_value = "large")]
        size: Size,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
}

/// One handler call through `dispatch`, as a Lambda function makes it; the queues it sends to are
/// in-process and dropped.
fn run_stage(stage: &str, bucket: &std::path::Path, case: &str, model: Option<&str>) -> Result<()> {
    use statapp_pipeline::jobs::{InferJob, Job, MetricsJob};
    use statapp_pipeline::queue::SystemClock;
    use statapp_pipeline::{DirStore, JobQueue, Key, MemQueue};
    use statapp_stages::dispatch::{self, Outputs};
    let store = DirStore::open(bucket, "bench")?;
    let q = MemQueue::new("sink", std::sync::Arc::new(SystemClock));
    let out = Outputs {
        infer: &q,
        aggregate: &q,
        metrics: &q,
        merge: &q,
    };
    let model = || anyhow::Context::context(model, "--model is required for this stage");
    match stage {
        "ingest" => {
            let key = Key::new(format!("incoming/{case}/image.nii.gz"))?;
            let event = statapp_pipeline::events::object_created_event("bench", &key, 0, "", "");
            dispatch::preprocess(&event.to_string(), &store, out)?;
        }
        "infer" => {
            // the job, then (when it fans out) its parts and gather, in this process: each
            // handler call resets the peak, so run.json holds every part's own peak
            let job = Job::Infer(InferJob::new(case, model()?, None));
            let settings = statapp_stages::infer::InferSettings::from_env()?;
            let device = burn::tensor::Device::flex();
            dispatch::infer(&job.to_json(), &store, out, &device, &settings)?;
            loop {
                let batch = q.receive(100, std::time::Duration::from_secs(3600))?;
                if batch.is_empty() {
                    break;
                }
                for d in batch {
                    if matches!(Job::from_json(&d.body), Ok(Job::Infer(_) | Job::Gather(_))) {
                        dispatch::infer(&d.body, &store, out, &device, &settings)?;
                    }
                    q.delete(&d.receipt)?;
                }
            }
        }
        _ => {
            let m = model()?;
            let job = Job::Metrics(MetricsJob {
                case: case.into(),
                name: m.into(),
                source: format!("predictions/{m}"),
            });
            dispatch::metrics(&job.to_json(), &store, out)?;
        }
    }
    Ok(())
}

/// Softmax of rater votes plus per-voxel noise: a plausible, imperfect model output.
fn fake_probabilities(annotations: &[Volume<u8>; 3], seed: u64) -> [Vec<f32>; 3] {
    let n = annotations[0].data().len();
    let flat: Vec<&[u8]> = annotations
        .iter()
        .map(|a| a.data().as_slice().unwrap_or(&[]))
        .collect();
    let per_voxel: Vec<[f32; 3]> = (0..n)
        .into_par_iter()
        .map(|i| {
            let logits: [f64; 4] = std::array::from_fn(|k| {
                let votes = flat.iter().filter(|a| usize::from(a[i]) == k).count() as f64;
                let u = noise::unit(noise::hash(seed, &[i as i64, k as i64]));
                6.0 * votes / 3.0 + 2.0 * (u - 0.5)
            });
            let m = logits.iter().fold(f64::NEG_INFINITY, |a, b| a.max(*b));
            let e = logits.map(|l| (l - m).exp());
            let s: f64 = e.iter().sum();
            [(e[1] / s) as f32, (e[2] / s) as f32, (e[3] / s) as f32]
        })
        .collect();
    std::array::from_fn(|k| per_voxel.iter().map(|p| p[k]).collect())
}

/// Peak resident memory of this process in MiB (Linux `VmHWM`), if known.
pub fn peak_rss_mib() -> Option<f64> {
    statapp_stages::memory::peak_rss_bytes().map(|b| b as f64 / 1024.0 / 1024.0)
}

fn report(what: &str, seconds: f64) {
    println!("{what:<28} {seconds:>8.2} s");
}

pub fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::FuzzNifti {
            iterations,
            seed,
            budget_mib,
        } => crate::fuzz::run(iterations, seed, budget_mib)?,
        Command::Merge { rows, window_s } => crate::bench_merge::run(&rows, window_s)?,
        Command::Synth { size, seed, out } => {
            let t = Instant::now();
            let phantom = statapp_synth::generate(seed, 0, size);
            report(
                &format!("generate {size:?} {:?}", phantom.ct.shape_zyx()),
                t.elapsed().as_secs_f64(),
            );
            let t = Instant::now();
            statapp_synth::write_bucket_case(&out, &phantom)?;
            report("write 4 .nii.gz", t.elapsed().as_secs_f64());
        }
        Command::Nifti { file, out } => {
            let t = Instant::now();
            let img = read_nifti(&file, &ReadOptions::default())?;
            report(
                &format!(
                    "read {} {:?}",
                    img.data.type_name(),
                    img.geometry.shape_zyx()
                ),
                t.elapsed().as_secs_f64(),
            );
            let t = Instant::now();
            write_nifti_image(&out, &img)?;
            report("write", t.elapsed().as_secs_f64());
        }
        Command::Preprocess {
            image,
            labels,
            plans,
        } => {
            let t = Instant::now();
            let img = read_nifti(&image, &ReadOptions::default())?.into_f32();
            let lab = read_nifti(&labels, &ReadOptions::default())?.to_labels(3)?;
            let text = std::fs::read_to_string(&plans)?;
            let plans =
                statapp_nnunet::plans_file::Plans::from_json(&serde_json::from_str(&text)?)?;
            let cfg = plans.configuration("3d_fullres")?;
            report("read", t.elapsed().as_secs_f64());
            let t = Instant::now();
            let pre = statapp_nnunet::preprocess::preprocess(
                img.data(),
                Some(lab.data()),
                img.geometry().spacing_zyx(),
                cfg.spacing,
                &plans.intensity,
            );
            report(
                &format!("preprocess -> {:?}", pre.data.dim()),
                t.elapsed().as_secs_f64(),
            );
        }
        Command::Infer {
            plans,
            configuration,
            tiles,
        } => {
            use burn::tensor::{Device, Tensor, TensorData};
            let text = std::fs::read_to_string(&plans)?;
            let plans =
                statapp_nnunet::plans_file::Plans::from_json(&serde_json::from_str(&text)?)?;
            let cfg = plans.configuration(&configuration)?;
            let device = Device::flex();
            let net = statapp_model::PlainConvUNet::new(
                &statapp_model::UNetConfig::from_configuration(cfg, 4),
                1,
                &device,
            );
            let p = cfg.patch_size;
            let n = p.iter().product::<usize>();
            let values: Vec<f32> = (0..n)
                .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
                .collect();
            let x =
                Tensor::<5>::from_data(TensorData::new(values, [1, 1, p[0], p[1], p[2]]), &device);
            let _ = net.predict(x.clone()).into_data(); // warm-up
            let t = Instant::now();
            for _ in 0..tiles {
                let _ = net.predict(x.clone()).into_data();
            }
            let dt = t.elapsed().as_secs_f64();
            report(
                &format!("{configuration} patch {p:?} per tile"),
                dt / tiles as f64,
            );
            println!(
                "{:<28} {:>8.0} voxels/s",
                "throughput",
                (tiles * n) as f64 / dt
            );
        }
        Command::Tile {
            model,
            mirroring,
            repeats,
        } => bench_tile(&model, mirroring == "on", repeats)?,
        Command::EnsembleData { size, members, out } => {
            let phantom = statapp_synth::generate(1, 0, size);
            let g = phantom.ct.geometry().clone();
            let dims = phantom.ct.data().dim();
            for m in 0..members {
                let probs = fake_probabilities(&phantom.annotations, 100 + m as u64);
                let dir = out.join(format!("member_{m}"));
                let vols: Vec<Volume<f32>> = probs
                    .into_iter()
                    .map(|p| {
                        Volume::new(
                            Array3::from_shape_vec(dims, p).unwrap_or_default(),
                            g.clone(),
                        )
                    })
                    .collect::<Result<_, _>>()?;
                let labels = statapp_nnunet::ensemble::argmax_labels([
                    vols[0].data(),
                    vols[1].data(),
                    vols[2].data(),
                ]);
                let probs = [vols[0].clone(), vols[1].clone(), vols[2].clone()];
                statapp_nnunet::ensemble::write_prediction(
                    &dir,
                    &probs,
                    &Volume::new(labels, g.clone())?,
                )?;
                println!("{}", dir.display());
            }
        }
        Command::Stage {
            stage,
            bucket,
            case,
            model,
        } => {
            let t = Instant::now();
            run_stage(&stage, &bucket, &case, model.as_deref())?;
            report(&format!("stage {stage} {case}"), t.elapsed().as_secs_f64());
        }
        Command::MetricsData { size, seed, out } => {
            let phantom = statapp_synth::generate(seed, 0, size);
            let dir = statapp_synth::write_bucket_case(&out, &phantom)?;
            let probs = fake_probabilities(&phantom.annotations, seed);
            let g = phantom.ct.geometry().clone();
            let dims = phantom.ct.data().dim();
            for (name, p) in ["prob_panc", "prob_kidn", "prob_livr"].iter().zip(probs) {
                let v = Volume::new(Array3::from_shape_vec(dims, p)?, g.clone())?;
                write_nifti(dir.join(format!("{name}.nii.gz")), &v)?;
            }
            println!("{}", dir.display());
        }
    }
    if let Some(peak) = peak_rss_mib() {
        println!("{:<28} {peak:>8.0} MiB", "peak RSS");
    }
    Ok(())
}

fn bench_tile(model: &std::path::Path, mirroring: bool, repeats: usize) -> Result<()> {
    use statapp_model::checkpoint::{load_weights, read_info};
    use statapp_model::predict::{PredictOptions, predict_logits};
    let info = read_info(model)?;
    let text = std::fs::read_to_string(model.join("plans.json"))?;
    let plans = statapp_nnunet::plans_file::Plans::from_json(&serde_json::from_str(&text)?)?;
    let cfg = plans.configuration(&info.configuration)?;
    let device = burn::tensor::Device::flex();
    let t = Instant::now();
    let net = load_weights(
        &info.network,
        &model.join(info.prediction_checkpoint()),
        &device,
    )?;
    report("load weights", t.elapsed().as_secs_f64());
    let p = cfg.patch_size;
    let image = ndarray::Array3::from_shape_fn((p[0], p[1], p[2]), |(z, y, x)| {
        ((z * 31 + y * 7 + x) % 97) as f32 / 48.0 - 1.0
    });
    let axes = if mirroring {
        info.mirroring_axes.clone()
    } else {
        Vec::new()
    };
    let opts = PredictOptions::default().mirror(&axes);
    let classes = info.network.num_classes;
    if repeats > 1 {
        let _ = predict_logits(&net, &image, p, opts, classes, &device)?; // warm-up
    }
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        let _ = predict_logits(&net, &image, p, opts, classes, &device)?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    report(
        &format!("tile {p:?} mirroring {axes:?} (median of {})", times.len()),
        times[times.len() / 2],
    );
    Ok(())
}
