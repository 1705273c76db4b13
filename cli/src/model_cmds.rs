//! `statapp init-model`, `predict`, `import-model` and `export-model`: model directories,
//! whole-case inference, and nnU-Net v2 trained-model folders in both directions.

use anyhow::{Context, Result};
use burn::tensor::Device;
use statapp_model::checkpoint::{
    CHECKPOINT_FINAL, ModelInfo, load_weights, read_info, save_weights, write_info,
};
use statapp_model::infer::predict_case;
use statapp_model::nnunet_format::{export_model, import_model};
use statapp_model::outputs::{PredictionRecord, encode_prediction};
use statapp_model::predict::{Accumulation, PredictOptions};
use statapp_model::{PlainConvUNet, UNetConfig};
use statapp_nnunet::model_dir::{CURVAS_CLASSES, Mirroring};
use statapp_nnunet::plans_file::Plans;
use statapp_nnunet::results::Which;
use statapp_volume::{ReadOptions, read_nifti, write_atomic};
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// nnUNetPlans.json (from `statapp prepare`, or nnU-Net's own).
    #[arg(long)]
    plans: PathBuf,
    /// Plan configuration: 3d_fullres or 3d_cpu.
    #[arg(long, default_value = "3d_cpu")]
    configuration: String,
    #[arg(long, default_value_t = 1)]
    annotator: u8,
    /// Initialisation seed (the original's seeds: 112233, 445566, 778899).
    #[arg(long, default_value_t = 112233)]
    seed: u64,
    #[arg(long, default_value = "all")]
    fold: String,
    /// Directory that receives models/<model_id>/.
    #[arg(long)]
    out: PathBuf,
}

/// Writes an untrained, seeded network as a model directory (training fills it later).
pub fn init(args: InitArgs) -> Result<()> {
    let plans = read_plans(&args.plans)?;
    let config = plans.configuration(&args.configuration)?;
    let network = UNetConfig::from_configuration(config, CURVAS_CLASSES.len());
    let model_id = format!("anno{}_init{}_fold{}", args.annotator, args.seed, args.fold);
    let dir = args.out.join(&model_id);
    let net = PlainConvUNet::new(&network, args.seed, &Device::flex());
    save_weights(&net, &dir, CHECKPOINT_FINAL)?;
    std::fs::copy(&args.plans, dir.join("plans.json"))?;
    write_info(
        &dir,
        &ModelInfo::native(
            model_id.clone(),
            args.configuration.clone(),
            args.seed,
            network,
            vec![CHECKPOINT_FINAL.into()],
        ),
    )?;
    println!(
        "untrained {} network -> {}",
        args.configuration,
        dir.display()
    );
    Ok(())
}

fn read_plans(path: &Path) -> Result<Plans> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Plans::from_json(&serde_json::from_str(&text)?)?)
}

#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    /// Model directory (model.json, plans.json, weights: checkpoint_*.bpk or an nnU-Net .pth).
    #[arg(long)]
    model: PathBuf,
    /// CT image (NIfTI).
    #[arg(long)]
    image: PathBuf,
    /// Output directory: prob_<class>.nii.gz (prob_panc/kidn/livr for CURVAS), prediction.json
    /// and segmentation.nii.gz on the image's grid.
    #[arg(long, short)]
    out: PathBuf,
    /// Weights file inside the model directory [default: checkpoint_best.bpk when the model has
    /// one, as the original trainer predicts with its best checkpoint, else checkpoint_final].
    #[arg(long)]
    checkpoint: Option<String>,
    /// Tile step as a fraction of the patch.
    #[arg(long, default_value_t = 0.5)]
    step: f64,
    /// Test-time mirroring: `model` (the model's default, nnU-Net's: on, over the checkpoint's
    /// allowed axes), `on` or `off`.
    #[arg(long, default_value = "model")]
    mirroring: Mirroring,
    /// How tiles add up: `fixed` (exact integer sums, the default: the same bits however the
    /// prediction is split), `f32` (float32 sums in tile order) or `f16` (nnU-Net's float16).
    #[arg(long, default_value = "fixed")]
    accumulation: Accumulation,
    /// Tiles per forward pass.
    #[arg(long, default_value_t = 1)]
    tile_batch: usize,
}

pub fn predict(args: PredictArgs) -> Result<()> {
    let info = read_info(&args.model)?;
    let plans_bytes = std::fs::read(args.model.join("plans.json"))
        .with_context(|| format!("reading {}", args.model.join("plans.json").display()))?;
    let plans = Plans::from_json(&serde_json::from_slice(&plans_bytes)?)?;
    let config = plans.configuration(&info.configuration)?;
    let device = Device::flex();
    let checkpoint = args
        .checkpoint
        .clone()
        .unwrap_or_else(|| info.prediction_checkpoint().to_string());
    let net = load_weights(&info.network, &args.model.join(&checkpoint), &device)?;
    let image = read_nifti(&args.image, &ReadOptions::default())?.into_f32();
    let axes = info.mirror_axes(args.mirroring);
    let opts = PredictOptions {
        tile_batch: args.tile_batch,
        step: args.step,
        accumulation: args.accumulation,
        ..PredictOptions::default()
    }
    .mirror(&axes);
    let out = predict_case(&net, &plans, config, &image, opts, &device)?;
    std::fs::create_dir_all(&args.out)?;
    let record = PredictionRecord::new(&info, &checkpoint, &plans_bytes, &opts);
    for (file, bytes) in encode_prediction(&info, out, image.geometry(), &record)? {
        let path = args.out.join(file);
        write_atomic(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "{} ({checkpoint}, mirroring {:?}) on {} -> {}",
        info.model_id,
        record.mirroring_axes,
        args.image.display(),
        args.out.display()
    );
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// nnU-Net v2 trained-model folder: <Trainer>__<Plans>__<configuration>/ with plans.json,
    /// dataset.json and fold_<f>/checkpoint_{final,best}.pth.
    dir: PathBuf,
    /// Model id (e.g. anno1_init112233_foldall).
    #[arg(long)]
    id: String,
    /// Directory that receives <id>/.
    #[arg(long)]
    out: PathBuf,
    /// Fold to import [default: all when present, else the only fold].
    #[arg(long)]
    fold: Option<String>,
    /// Which checkpoint of the fold.
    #[arg(long, default_value = "final", value_parser = ["final", "best"])]
    checkpoint: String,
}

pub fn import(args: ImportArgs) -> Result<()> {
    let which = if args.checkpoint == "best" {
        Which::Best
    } else {
        Which::Final
    };
    let dir = import_model(&args.dir, &args.id, &args.out, args.fold.as_deref(), which)?;
    let info = read_info(&dir)?;
    println!(
        "{} ({} classes, {} stages, mirroring {:?}) -> {}",
        info.model_id,
        info.classes.len(),
        info.network.n_stages(),
        info.mirror_axes(Mirroring::Model),
        dir.display()
    );
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Model id under --models, or a model directory.
    id: String,
    /// Output: an nnU-Net v2 trained-model folder (plans.json, dataset.json,
    /// fold_all/checkpoint_final.pth) for nnUNetPredictor.
    out: PathBuf,
    /// Directory holding the models.
    #[arg(long, default_value = "models")]
    models: PathBuf,
}

pub fn export(args: ExportArgs) -> Result<()> {
    let as_dir = PathBuf::from(&args.id);
    let model = if as_dir.join("model.json").is_file() {
        as_dir
    } else {
        args.models.join(&args.id)
    };
    export_model(&model, &args.out)?;
    println!(
        "{} -> {} (nnU-Net v2, fold_all)",
        model.display(),
        args.out.display()
    );
    Ok(())
}
