//! `statapp synth`: write a synthetic dataset in the bucket or nnU-Net layout.

use crate::progress;
use anyhow::{Context, Result};
use statapp_synth::{CaseStats, Layout, Size};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Number of cases.
    #[arg(long, default_value_t = 4)]
    cases: usize,
    /// Grid size: small (64x96x96), medium (128x256x256), large (300x512x512) or xlarge
    /// (950x512x512, 1 mm slices: a full-size CURVAS CT).
    #[arg(long, default_value = "small")]
    size: Size,
    /// Dataset seed: the same seed gives the same files.
    #[arg(long, default_value_t = 2025)]
    seed: u64,
    /// Index of the first case (case ids are case_<index>).
    #[arg(long, default_value_t = 0)]
    first: usize,
    /// Output directory (the bucket root, or the nnU-Net raw folder).
    #[arg(long)]
    out: PathBuf,
    /// bucket: incoming/<case>/{image,annotation_k}.nii.gz; nnunet: Dataset475_CURVAS_ANNO<k>/.
    #[arg(long, default_value = "bucket", value_parser = ["bucket", "nnunet"])]
    layout: String,
    /// Annotator whose labels fill labelsTr (nnunet layout).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=3))]
    annotator: u8,
    /// Print per-organ HU, volumes and inter-rater Dice for every case.
    #[arg(long)]
    report: bool,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    report_json: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let layout = match args.layout.as_str() {
        "nnunet" => Layout::NnUnet {
            annotator: usize::from(args.annotator),
        },
        _ => Layout::Bucket,
    };
    let bar = progress::bar(args.cases as u64, "synth");
    let mut reports = Vec::new();
    for index in args.first..args.first + args.cases {
        let phantom = statapp_synth::generate(args.seed, index, args.size);
        match layout {
            Layout::Bucket => statapp_synth::write_bucket_case(&args.out, &phantom),
            Layout::NnUnet { annotator } => {
                statapp_synth::write_nnunet_case(&args.out, &phantom, annotator)
            }
        }
        .with_context(|| format!("writing {}", phantom.case_id))?;
        if args.report || args.report_json.is_some() {
            reports.push(CaseStats::of(&phantom));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    if let Layout::NnUnet { annotator } = layout {
        statapp_synth::write_nnunet_dataset_json(&args.out, annotator, args.cases)?;
    }
    if args.report {
        print_report(&reports);
    }
    if let Some(path) = &args.report_json {
        std::fs::write(path, serde_json::to_string_pretty(&reports)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "wrote {} {:?} case(s) to {}",
        args.cases,
        args.size,
        args.out.display()
    );
    Ok(())
}

fn print_report(reports: &[CaseStats]) {
    println!(
        "{:<9} {:<9} {:>7} {:>23} {:>20}",
        "case", "organ", "HU", "volume mL (a1 a2 a3)", "Dice 12 13 23"
    );
    for r in reports {
        for o in &r.organs {
            println!(
                "{:<9} {:<9} {:>7.1} {:>7.1} {:>7.1} {:>7.1}   {:.3} {:.3} {:.3}",
                r.case_id,
                o.name,
                o.hu_mean,
                o.volume_ml[0],
                o.volume_ml[1],
                o.volume_ml[2],
                o.dice_pairs[0],
                o.dice_pairs[1],
                o.dice_pairs[2]
            );
        }
    }
    for (i, (_, name)) in statapp_synth::LABELS[1..].iter().enumerate() {
        let dice: Vec<f64> = reports
            .iter()
            .flat_map(|r| r.organs[i].dice_pairs)
            .filter(|d| d.is_finite())
            .collect();
        let hu: Vec<f64> = reports.iter().map(|r| r.organs[i].hu_mean).collect();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let min = dice.iter().copied().fold(f64::INFINITY, f64::min);
        let max = dice.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        println!(
            "mean      {name:<9} {:>7.1} HU, pairwise Dice mean {:.3} (min {min:.3}, max {max:.3})",
            mean(&hu),
            mean(&dice)
        );
    }
}
