//! `statapp prepare`: nnU-Net's fingerprint, plans and preprocessing for one annotator's view of
//! a dataset (bucket or nnU-Net raw layout).

use crate::progress;
use anyhow::{Context, Result, bail};
use statapp_nnunet::dataset::{CaseSet, list_cases, read_splits, select};
use statapp_nnunet::plans::plan_from_fingerprint;
use statapp_nnunet::plans_file::{Configuration, Plans};
use statapp_nnunet::preprocess::{case_fingerprint, dataset_fingerprint, preprocess};
use statapp_volume::{Geometry, ReadOptions, Volume, read_nifti, write_nifti};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Dataset root: a bucket root (incoming/) or an nnU-Net raw dataset (dataset.json).
    dataset: PathBuf,
    /// Output directory: dataset_fingerprint.json, nnUNetPlans.json, nnUNetPlans_3d_fullres/.
    #[arg(long)]
    out: PathBuf,
    /// Whose labels to use (bucket layout).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=3))]
    annotator: u8,
    /// Cases: train, validation, test, all, or comma-separated ids.
    #[arg(long, default_value = "all")]
    cases: CaseSet,
    /// Largest patch of the small CPU configuration `3d_cpu` (z,y,x).
    #[arg(long, default_value = "32,64,64", value_delimiter = ',', num_args = 3)]
    cpu_patch: Vec<usize>,
}

pub fn run(args: Args) -> Result<()> {
    let all = list_cases(&args.dataset, usize::from(args.annotator))?;
    let splits = read_splits(&args.dataset)?;
    let cases: Vec<_> = select(&all, &splits, &args.cases)?
        .into_iter()
        .filter(|c| c.labels.is_some())
        .collect();
    if cases.is_empty() {
        bail!(
            "no labelled cases in {} for annotator {}",
            args.dataset.display(),
            args.annotator
        );
    }
    let opts = ReadOptions::default();
    let bar = progress::bar(cases.len() as u64, "fingerprint");
    let mut fps = Vec::new();
    for c in &cases {
        let image = read_nifti(&c.image, &opts)?.into_f32();
        let labels_path = c.labels.as_ref().context("labels")?;
        let labels = read_nifti(labels_path, &opts)?.to_labels(3)?;
        image.ensure_same_grid(&c.image, &labels, labels_path)?;
        fps.push(case_fingerprint(
            image.data(),
            labels.data(),
            image.geometry().spacing_zyx(),
        ));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let fp = dataset_fingerprint(&fps);
    let (plan, forward, backward) =
        plan_from_fingerprint(&fp.spacings, &fp.shapes_after_crop, cases.len(), 4);
    let intensity = fp
        .foreground_intensity_properties_per_channel
        .get("0")
        .cloned()
        .context("no foreground voxels in any case")?;
    let mut configurations = std::collections::BTreeMap::new();
    let cpu_patch = [args.cpu_patch[0], args.cpu_patch[1], args.cpu_patch[2]];
    configurations.insert(
        "3d_fullres".to_string(),
        Configuration::from_plan("3d_fullres", &plan),
    );
    configurations.insert("3d_cpu".to_string(), Configuration::cpu(&plan, cpu_patch));
    let median = |k: usize| {
        statapp_nnunet::plans::percentile(
            &fp.spacings.iter().map(|s| s[k]).collect::<Vec<_>>(),
            50.0,
        )
    };
    let median_shape = |k: usize| {
        statapp_nnunet::plans::percentile(
            &fp.shapes_after_crop
                .iter()
                .map(|s| s[k] as f64)
                .collect::<Vec<_>>(),
            50.0,
        )
    };
    let plans = Plans {
        dataset_name: statapp_synth::nnunet_dataset_name(usize::from(args.annotator)),
        transpose_forward: forward,
        transpose_backward: backward,
        original_median_spacing_after_transp: forward.map(median),
        original_median_shape_after_transp: forward.map(median_shape),
        configurations,
        intensity: intensity.clone(),
    };
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(
        args.out.join("dataset_fingerprint.json"),
        serde_json::to_string_pretty(&fp)? + "\n",
    )?;
    std::fs::write(
        args.out.join("nnUNetPlans.json"),
        serde_json::to_string_pretty(&plans.to_json())? + "\n",
    )?;
    let dir = args.out.join("nnUNetPlans_3d_fullres");
    std::fs::create_dir_all(&dir)?;
    let bar = progress::bar(cases.len() as u64, "preprocess");
    for c in &cases {
        let image = read_nifti(&c.image, &opts)?.into_f32();
        let labels = read_nifti(c.labels.as_ref().context("labels")?, &opts)?.to_labels(3)?;
        let pre = preprocess(
            image.data(),
            Some(labels.data()),
            image.geometry().spacing_zyx(),
            plan.spacing,
            &intensity,
        );
        let shape = [pre.data.dim().0, pre.data.dim().1, pre.data.dim().2];
        let sp = plan.spacing.map(|v| v as f32);
        let g = Geometry::axis_aligned(shape, sp, [0.0; 3]);
        write_nifti(
            dir.join(format!("{}_data.nii.gz", c.id)),
            &Volume::new(pre.data, g.clone())?,
        )?;
        if let Some(seg) = pre.seg {
            write_nifti(
                dir.join(format!("{}_seg.nii.gz", c.id)),
                &Volume::new(seg, g)?,
            )?;
        }
        std::fs::write(
            dir.join(format!("{}.json", c.id)),
            serde_json::to_string_pretty(&pre.properties)? + "\n",
        )?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!(
        "{} case(s): target spacing {:?}, 3d_fullres patch {:?} batch {}, 3d_cpu patch {:?} -> {}",
        cases.len(),
        plan.spacing,
        plan.patch_size,
        plan.batch_size,
        plans.configurations["3d_cpu"].patch_size,
        args.out.display()
    );
    Ok(())
}
