//! The study's report (issue 18): per-organ tables, paired tests of the single models against
//! each ensemble, figures and a self-contained HTML page, from a combined metrics CSV written by
//! statapp or by the original project.

pub mod analysis;
pub mod catalog;
pub mod figures;
pub mod html;
pub mod pooled;
pub mod stats;
pub mod table;

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Table(#[from] table::TableError),
    #[error(transparent)]
    Curves(#[from] pooled::CurvesError),
    #[error(transparent)]
    Figure(#[from] figures::FigureError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("stats.json: {0}")]
    Json(#[from] serde_json::Error),
}

/// What `write_report` produced.
#[derive(Debug)]
pub struct Written {
    pub html: PathBuf,
    pub stats: PathBuf,
    pub analysis: analysis::Analysis,
    pub pooled: pooled::Pooled,
    pub figures: Vec<PathBuf>,
}

/// Writes `bytes` whole: a temporary file beside `path`, renamed over it.
fn write_whole(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    let io = |source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    };
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{name}.partial"));
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// The curves beside a bucket's combined CSV: `metrics/combined.csv` -> `metrics/curves/`.
pub fn default_curves_dir(csv: &Path) -> PathBuf {
    csv.parent().unwrap_or(Path::new(".")).join("curves")
}

/// Reads `csv` (and the curves under `curves`, where there are any) and writes into `out`:
/// `report.html`, `stats.json` and `figures/*.png|svg`.
pub fn write_report(csv: &Path, out: &Path, curves: &Path) -> Result<Written, ReportError> {
    let study = table::read_csv(csv)?;
    let analysis = analysis::analyse(&study);
    let pooled = pooled::pool(&study, curves)?;
    let mut figures = figures::box_plots(&analysis)?;
    figures.extend(figures::curve_figures(&analysis, &pooled)?);
    let fig_dir = out.join("figures");
    std::fs::create_dir_all(&fig_dir).map_err(|source| ReportError::Io {
        path: fig_dir.clone(),
        source,
    })?;
    let mut files = Vec::new();
    for f in &figures {
        for (ext, bytes) in [("png", f.png.as_slice()), ("svg", f.svg.as_bytes())] {
            let path = fig_dir.join(format!("{}.{ext}", f.name));
            write_whole(&path, bytes)?;
            files.push(path);
        }
    }
    let stats = out.join("stats.json");
    let doc = serde_json::json!({
        "csv": analysis.csv,
        "source": analysis.source,
        "patients": analysis.patients,
        "rows": analysis.rows,
        "groups": analysis.groups,
        "tests": analysis.tests().collect::<Vec<_>>(),
        "summaries": analysis.parts.iter().map(|p| serde_json::json!({
            "metric": p.metric, "organ": p.organ, "columns": p.columns,
            "groups": p.groups,
        })).collect::<Vec<_>>(),
        "curves": {
            "rows_with_curves": pooled.rows_with_curves,
            "rows_without_curves": pooled.rows_without_curves,
        },
    });
    let mut json = serde_json::to_vec_pretty(&doc)?;
    json.push(b'\n');
    write_whole(&stats, &json)?;
    let html = out.join("report.html");
    write_whole(&html, html::page(&analysis, &pooled, &figures).as_bytes())?;
    Ok(Written {
        html,
        stats,
        analysis,
        pooled,
        figures: files,
    })
}
