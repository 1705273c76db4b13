//! `statapp report combined.csv --out report/`: the study's report (tables, paired tests,
//! figures, `report.html`, `stats.json`) from a combined metrics CSV of statapp or of the
//! original project.

use anyhow::Result;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The combined metrics CSV (statapp's `metrics/combined.csv`, or the original project's
    /// `metrics.csv`).
    csv: PathBuf,
    /// Output directory: report.html, stats.json, figures/.
    #[arg(long, short, default_value = "report")]
    out: PathBuf,
    /// Calibration bins and risk-coverage curves per row (`<case>/<name>.json`); default: the
    /// `curves/` directory beside the CSV (a bucket's `metrics/curves/`).
    #[arg(long)]
    curves: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    write(&args.csv, &args.out, args.curves.as_deref(), true)
}

/// Writes the report and prints where it is and its headline.
pub fn write(csv: &Path, out: &Path, curves: Option<&Path>, verbose: bool) -> Result<()> {
    let curves = curves.map_or_else(
        || statapp_report::default_curves_dir(csv),
        Path::to_path_buf,
    );
    let w = statapp_report::write_report(csv, out, &curves)?;
    println!(
        "\nreport: {} (stats: {})",
        w.html.display(),
        w.stats.display()
    );
    if verbose {
        println!(
            "{} patients, {} rows, {} figures; curves from {} rows",
            w.analysis.patients,
            w.analysis.rows,
            w.figures.len() / 2,
            w.pooled.rows_with_curves
        );
    }
    let headline = statapp_report::html::headline(&w.analysis);
    if !headline.is_empty() {
        println!("headline:");
        for t in headline {
            println!("  {}", statapp_report::html::headline_line(t));
        }
    }
    Ok(())
}
