//! `statapp init-model` and `statapp predict`: model directories and whole-case inference.

use anyhow::{Context, Result};
use burn::tensor::Device;
use statapp_model::checkpoint::{
    CHECKPOINT_FINAL, ModelInfo, load_weights, read_info, save_weights, write_info,
};
use statapp_model::infer::predict_case;
use statapp_model::predict::PredictOptions;
use statapp_model::{PlainConvUNet, UNetConfig};
use statapp_nnunet::ensemble::{PROB_FILES, SEGMENTATION_FILE};
use statapp_nnunet::plans_file::Plans;
use statapp_volume::{ReadOptions, Volume, read_nifti, write_nifti};
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
    let network = UNetConfig::from_configuration(config, 4);
    let model_id = format!("anno{}_init{}_fold{}", args.annotator, args.seed, args.fold);
    let dir = args.out.join(&model_id);
    let net = PlainConvUNet::new(&network, args.seed, &Device::flex());
    save_weights(&net, &dir, CHECKPOINT_FINAL)?;
    std::fs::copy(&args.plans, dir.join("plans.json"))?;
    write_info(
        &dir,
        &ModelInfo {
            model_id: model_id.clone(),
            configuration: args.configuration.clone(),
            seed: args.seed,
            network,
            checkpoints: vec![CHECKPOINT_FINAL.into()],
        },
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
    /// Model directory (model.json, plans.json, checkpoint_*.bpk).
    #[arg(long)]
    model: PathBuf,
    /// CT image (NIfTI).
    #[arg(long)]
    image: PathBuf,
    /// Output directory: prob_panc/kidn/livr.nii.gz and segmentation.nii.gz on the image's grid.
    #[arg(long, short)]
    out: PathBuf,
    /// Weights file inside the model directory [default: checkpoint_best.bpk when the model has
    /// one, as the original trainer predicts with its best checkpoint, else checkpoint_final.bpk].
    #[arg(long)]
    checkpoint: Option<String>,
    /// Tile step as a fraction of the patch.
    #[arg(long, default_value_t = 0.5)]
    step: f64,
    /// Test-time augmentation over all 8 axis mirrorings.
    #[arg(long)]
    mirror: bool,
    /// Tiles per forward pass.
    #[arg(long, default_value_t = 1)]
    tile_batch: usize,
}

pub fn predict(args: PredictArgs) -> Result<()> {
    let info = read_info(&args.model)?;
    let plans = read_plans(&args.model.join("plans.json"))?;
    let config = plans.configuration(&info.configuration)?;
    let device = Device::flex();
    let checkpoint = args
        .checkpoint
        .clone()
        .unwrap_or_else(|| info.prediction_checkpoint().to_string());
    let net = load_weights(&info.network, &args.model.join(&checkpoint), &device)?;
    let image = read_nifti(&args.image, &ReadOptions::default())?.into_f32();
    let opts = PredictOptions {
        mirror: args.mirror,
        tile_batch: args.tile_batch,
        step: args.step,
    };
    let out = predict_case(
        &net,
        &plans,
        config,
        image.data(),
        image.geometry().spacing_zyx(),
        opts,
        &device,
    );
    std::fs::create_dir_all(&args.out)?;
    let g = image.geometry().clone();
    for (file, p) in PROB_FILES.iter().zip(&out.probabilities[1..]) {
        write_nifti(args.out.join(file), &Volume::new(p.clone(), g.clone())?)?;
    }
    write_nifti(
        args.out.join(SEGMENTATION_FILE),
        &Volume::new(out.labels, g)?,
    )?;
    println!(
        "{} ({checkpoint}) on {} -> {}",
        info.model_id,
        args.image.display(),
        args.out.display()
    );
    Ok(())
}
