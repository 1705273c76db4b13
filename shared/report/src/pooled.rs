//! The per-row curves (`metrics/curves/<case>/<name>.json`, written by the metrics stage)
//! pooled per group: calibration bins summed over cases and annotators, risk-coverage curves
//! averaged over cases and annotators.

use crate::analysis::group_of;
use crate::table::Study;
use statapp_metrics::curves::Curves;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CurvesError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a curves document: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: {detail}")]
    Shape { path: PathBuf, detail: String },
}

/// One group's reliability diagram: per bin with voxels, the mean confidence, the accuracy
/// (pooled over the three annotators) and the voxel count.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Reliability {
    pub confidence: Vec<f64>,
    pub accuracy: Vec<f64>,
    pub count: Vec<u64>,
    /// Lower edge of each bin shown.
    pub lower_edge: Vec<f64>,
}

/// One group's mean risk-coverage curve of one organ.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RiskCurve {
    pub coverage: Vec<f64>,
    pub risk: Vec<f64>,
    /// Curves averaged (cases x annotators).
    pub curves: usize,
}

/// Everything plotted from the curves, per group (and organ).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Pooled {
    /// Rows of the CSV that had a curves file.
    pub rows_with_curves: usize,
    pub rows_without_curves: usize,
    pub reliability: BTreeMap<String, Reliability>,
    /// Group, then organ.
    pub risk_coverage: BTreeMap<String, BTreeMap<String, RiskCurve>>,
}

#[derive(Default)]
struct CalibrationSums {
    edges: Vec<f64>,
    count: Vec<u64>,
    confidence: Vec<f64>,
    correct: Vec<u64>,
    annotators: u64,
}

#[derive(Default)]
struct RiskSums {
    coverage: Vec<f64>,
    sum: Vec<f64>,
    curves: usize,
}

fn read(path: &Path) -> Result<Option<Curves>, CurvesError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CurvesError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| CurvesError::Json {
            path: path.to_path_buf(),
            source,
        })
}

fn shape_error(path: &Path, detail: &str) -> CurvesError {
    CurvesError::Shape {
        path: path.to_path_buf(),
        detail: detail.to_string(),
    }
}

fn add_calibration(sums: &mut CalibrationSums, c: &Curves, path: &Path) -> Result<(), CurvesError> {
    let cal = &c.calibration;
    let bins = cal.count.len();
    if cal.confidence_sum.len() != bins
        || cal.lower_edges.len() != bins
        || cal.correct.iter().any(|a| a.len() != bins)
    {
        return Err(shape_error(path, "calibration arrays of different lengths"));
    }
    if sums.count.is_empty() {
        sums.edges = cal.lower_edges.clone();
        sums.count = vec![0; bins];
        sums.confidence = vec![0.0; bins];
        sums.correct = vec![0; bins];
    } else if sums.edges != cal.lower_edges {
        return Err(shape_error(
            path,
            "calibration bins differ from the other rows'",
        ));
    }
    let annotators = cal.correct.len() as u64;
    for b in 0..bins {
        // each annotator judges every voxel: the pooled accuracy counts a voxel once per annotator
        sums.count[b] += cal.count[b];
        sums.confidence[b] += cal.confidence_sum[b];
        sums.correct[b] += cal.correct.iter().map(|a| a[b]).sum::<u64>();
    }
    sums.annotators = annotators;
    Ok(())
}

fn add_risk(
    sums: &mut BTreeMap<String, RiskSums>,
    c: &Curves,
    path: &Path,
) -> Result<(), CurvesError> {
    let coverage = &c.risk_coverage.coverage;
    for (organ, per_annotator) in &c.risk_coverage.organs {
        let s = sums.entry(organ.clone()).or_default();
        if s.coverage.is_empty() {
            s.coverage = coverage.clone();
            s.sum = vec![0.0; coverage.len()];
        } else if &s.coverage != coverage {
            return Err(shape_error(
                path,
                "coverage grid differs from the other rows'",
            ));
        }
        for risks in per_annotator {
            if risks.len() != coverage.len() {
                return Err(shape_error(path, "a risk curve off the coverage grid"));
            }
            if risks.iter().any(|r| !r.0.is_finite()) {
                continue; // an empty ROI: no curve
            }
            for (acc, r) in s.sum.iter_mut().zip(risks) {
                *acc += r.0;
            }
            s.curves += 1;
        }
    }
    Ok(())
}

/// Reads `dir/<patient>/<model>.json` for every row of `study` (a row without one is counted,
/// not an error: rows of the original project, or written before curves existed, have none).
pub fn pool(study: &Study, dir: &Path) -> Result<Pooled, CurvesError> {
    let mut calibration: BTreeMap<String, CalibrationSums> = BTreeMap::new();
    let mut risk: BTreeMap<String, BTreeMap<String, RiskSums>> = BTreeMap::new();
    let mut out = Pooled::default();
    for row in &study.rows {
        let path = dir.join(&row.patient).join(format!("{}.json", row.model));
        let Some(curves) = read(&path)? else {
            out.rows_without_curves += 1;
            continue;
        };
        out.rows_with_curves += 1;
        let group = group_of(&row.model).to_string();
        add_calibration(
            calibration.entry(group.clone()).or_default(),
            &curves,
            &path,
        )?;
        add_risk(risk.entry(group).or_default(), &curves, &path)?;
    }
    for (group, s) in calibration {
        let mut r = Reliability::default();
        for b in (0..s.count.len()).filter(|b| s.count[*b] > 0) {
            let n = s.count[b] as f64;
            r.confidence.push(s.confidence[b] / n);
            r.accuracy
                .push(s.correct[b] as f64 / (n * s.annotators as f64));
            r.count.push(s.count[b]);
            r.lower_edge.push(s.edges[b]);
        }
        out.reliability.insert(group, r);
    }
    for (group, organs) in risk {
        let curves = organs
            .into_iter()
            .filter(|(_, s)| s.curves > 0)
            .map(|(organ, s)| {
                let risk = s.sum.iter().map(|v| v / s.curves as f64).collect();
                let curve = RiskCurve {
                    coverage: s.coverage,
                    risk,
                    curves: s.curves,
                };
                (organ, curve)
            })
            .collect();
        out.risk_coverage.insert(group, curves);
    }
    Ok(out)
}
