//! `statapp plan-inference`: tiles, parts, wall time and cost of one prediction before anything
//! runs, for a fan-out over N functions, one function, and one GPU instance
//! (`statapp_nnunet::cost`; the infer stage splits with the same figures).

use anyhow::{Context, Result, bail};
use statapp_nnunet::cost::{Assumptions, Workload, estimate, split_bounded, tile_flops};
use statapp_nnunet::model_dir::UNetConfig;
use statapp_nnunet::plans::compute_new_shape;
use statapp_nnunet::plans_file::Plans;
use statapp_stages::infer::DEFAULT_GFLOPS;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// nnUNetPlans.json (nnU-Net's or statapp's).
    #[arg(long)]
    plans: PathBuf,
    #[arg(long, default_value = "3d_fullres")]
    configuration: String,
    /// The CT's shape `Z,Y,X` (as stored).
    #[arg(long, value_parser = triple::<usize>)]
    shape: [usize; 3],
    /// The CT's spacing `Z,Y,X` in mm; without it the shape is taken as the network's grid.
    #[arg(long, value_parser = triple::<f64>)]
    spacing: Option<[f64; 3]>,
    /// Functions the fan-out may use at once.
    #[arg(long, default_value_t = 1000)]
    workers: usize,
    /// Output classes, background included (CURVAS: 4).
    #[arg(long, default_value_t = 4)]
    classes: usize,
    /// Mirrored axes (nnU-Net's default for 3-D: all three, 8 forward passes per tile).
    #[arg(long, default_value_t = 3)]
    mirror_axes: u32,
    /// Sustained GFLOP/s of one function (`statapp bench tile` measures it).
    #[arg(long, default_value_t = DEFAULT_GFLOPS)]
    gflops: f64,
    /// Function memory (MB): 10,240 MB is Lambda's largest, with 6 vCPUs.
    #[arg(long, default_value_t = 10240.0)]
    memory_mb: f64,
    /// Per-part overhead in seconds (start, image rows and weights in, sums out).
    #[arg(long, default_value_t = 4.0)]
    part_overhead_s: f64,
    /// The gather's S3 read throughput, MB/s.
    #[arg(long, default_value_t = 100.0)]
    gather_mb_per_s: f64,
    /// Export (resampling, softmax, gzip) seconds per million voxels.
    #[arg(long, default_value_t = 0.25)]
    export_s_per_mvoxel: f64,
    /// One GPU's seconds per tile, every mirrored view included.
    #[arg(long, default_value_t = 0.15)]
    gpu_seconds_per_tile: f64,
    /// Seconds a single job may compute before the infer stage splits (STATAPP_INFER_BUDGET_S).
    #[arg(long, default_value_t = 600.0)]
    budget_s: f64,
    /// The most memory one part's sums may take, MB (STATAPP_PART_SUMS_MB).
    #[arg(long, default_value_t = 2048.0)]
    part_sums_mb: f64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

fn triple<T: std::str::FromStr>(s: &str) -> Result<[T; 3], String> {
    let v: Vec<T> = s
        .split(',')
        .map(|p| p.trim().parse().map_err(|_| format!("{p:?} in {s:?}")))
        .collect::<Result<_, _>>()?;
    <[T; 3]>::try_from(v).map_err(|_| format!("{s:?}: three comma-separated values"))
}

pub fn run(args: Args) -> Result<()> {
    let text = std::fs::read(&args.plans).with_context(|| args.plans.display().to_string())?;
    let plans = Plans::from_json(&serde_json::from_slice(&text)?)?;
    let config = plans.configuration(&args.configuration)?;
    if args.mirror_axes > 3 {
        bail!("--mirror-axes {}: at most 3", args.mirror_axes);
    }
    let f = plans.transpose_forward;
    let shape = f.map(|a| args.shape[a]);
    let grid = match args.spacing {
        Some(sp) => compute_new_shape(shape, f.map(|a| sp[a]), config.spacing),
        None => shape,
    };
    let net = UNetConfig::from_configuration(config, args.classes);
    let w = Workload {
        shape: grid,
        patch: config.patch_size,
        step: 0.5,
        views: 1 << args.mirror_axes,
        flops_per_view: tile_flops(&net, config.patch_size),
    };
    let a = Assumptions {
        function_gflops: args.gflops,
        function_memory_mb: args.memory_mb,
        part_overhead_s: args.part_overhead_s,
        gather_mb_per_s: args.gather_mb_per_s,
        export_s_per_mvoxel: args.export_s_per_mvoxel,
        gpu_seconds_per_tile: args.gpu_seconds_per_tile,
        max_function_s: 900.0,
    };
    let options = estimate(&w, &a, args.workers);
    let stage_parts = split_bounded(
        &w.tile_starts(),
        w.patch,
        args.classes + 1,
        (w.seconds_per_tile(a.function_gflops), args.budget_s),
        1,
        args.part_sums_mb * 1024.0 * 1024.0,
    )
    .len();
    if args.json {
        let out = serde_json::json!({
            "network_grid": grid, "patch": w.patch, "tiles": w.tiles(), "views_per_tile": w.views,
            "gflop_per_view": w.flops_per_view / 1e9,
            "seconds_per_tile": w.seconds_per_tile(a.function_gflops),
            "infer_stage_parts_at_budget": stage_parts, "budget_s": args.budget_s,
            "part_sums_mb": args.part_sums_mb,
            "assumptions": a, "options": options,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "network grid {grid:?}, patch {:?}: {} tiles x {} views, {:.1} GFLOP per view, {:.1} s per tile at {} GFLOP/s",
        w.patch,
        w.tiles(),
        w.views,
        w.flops_per_view / 1e9,
        w.seconds_per_tile(a.function_gflops),
        a.function_gflops
    );
    println!(
        "the infer stage splits this into {stage_parts} parts at a {} s budget and {} MB of sums per part (more if its first tile runs slower than estimated)",
        args.budget_s, args.part_sums_mb
    );
    println!(
        "{:<32} {:>6} {:>6} {:>10} {:>12} {:>9} {:>5}",
        "option", "tiles", "parts", "wall s", "GB-s", "USD", "fits"
    );
    for o in &options {
        println!(
            "{:<32} {:>6} {:>6} {:>10.1} {:>12.0} {:>9.4} {:>5}",
            o.name, o.tiles, o.parts, o.wall_seconds, o.gb_seconds, o.usd, o.fits
        );
    }
    println!("assumptions: {}", serde_json::to_string(&a)?);
    Ok(())
}
