//! `statapp metrics`: score one prediction of one case (METRICS.md §18), merge metric rows.

use anyhow::{Context, Result, bail};
use statapp_metrics::{CasePaths, RoiMode, csv_header, merge, score_files};
use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Score one prediction against the three annotations: JSON (default) or one CSV row.
    Case(CaseArgs),
    /// Merge per-case metric rows (*.csv under DIR) into one combined CSV keyed by (Patient_ID, CT).
    Merge(MergeArgs),
}

#[derive(Debug, clap::Args)]
pub struct CaseArgs {
    /// Annotator label maps, in order 1, 2, 3 (repeat the option three times).
    #[arg(long = "annotation", required = true, num_args = 1)]
    annotations: Vec<PathBuf>,
    /// Pancreas, kidney and liver probability maps.
    #[arg(long, num_args = 3, required = true, value_names = ["P1", "P2", "P3"])]
    probabilities: Vec<PathBuf>,
    /// Hard label map; default: argmax of (1 - sum p, p1, p2, p3).
    #[arg(long)]
    prediction: Option<PathBuf>,
    /// CT image (needed by --roi ct).
    #[arg(long)]
    ct: Option<PathBuf>,
    /// Region of interest: annotations (the original's rule), ct (CURVAS) or none.
    #[arg(long, default_value = "annotations")]
    roi: RoiMode,
    /// json: the full document; csv: header and one row.
    #[arg(long, default_value = "json", value_parser = ["json", "csv"])]
    format: String,
    /// Patient_ID cell of the CSV row.
    #[arg(long, default_value = "")]
    patient_id: String,
    /// CT cell of the CSV row (the model or ensemble name, as in the original).
    #[arg(long, default_value = "")]
    model: String,
    /// Also write the calibration bins and risk-coverage curves (what `statapp report` plots)
    /// to this JSON file.
    #[arg(long)]
    curves: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// Directory searched recursively for row files (*.csv).
    dir: PathBuf,
    /// Combined CSV; existing rows are kept unless a row with the same key replaces them.
    #[arg(long, short, default_value = "combined.csv")]
    output: PathBuf,
}

pub fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Case(args) => case(args),
        Command::Merge(args) => {
            let rows = merge::merge_dir(&args.dir, &args.output)?;
            println!("{} rows in {}", rows, args.output.display());
            Ok(())
        }
    }
}

fn case(args: CaseArgs) -> Result<()> {
    if args.annotations.len() != 3 {
        bail!(
            "give exactly three --annotation files (got {})",
            args.annotations.len()
        );
    }
    let a = &args.annotations;
    let p = &args.probabilities;
    let paths = CasePaths {
        annotations: [a[0].clone(), a[1].clone(), a[2].clone()],
        probabilities: [p[0].clone(), p[1].clone(), p[2].clone()],
        prediction: args.prediction.clone(),
        ct: args.ct.clone(),
    };
    let metrics = score_files(&paths, args.roi).context("scoring the case")?;
    if let Some(path) = &args.curves {
        std::fs::write(path, serde_json::to_vec(&metrics.curves)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if args.format == "csv" {
        let mut w = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(std::io::stdout());
        w.write_record(csv_header())?;
        w.write_record(metrics.csv_row(&args.patient_id, &args.model))?;
        w.flush()?;
    } else {
        println!("{}", serde_json::to_string_pretty(&metrics)?);
    }
    Ok(())
}
