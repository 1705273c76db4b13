//! What the report plots beside the numbers: per scored prediction, the ECE's calibration bins
//! and the risk-coverage curves, written beside its metrics row (not in the CSV), so that a report
//! can pool them over cases.

use crate::real::Real;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One prediction's curves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Curves {
    pub calibration: Calibration,
    pub risk_coverage: RiskCoverageCurves,
}

/// The ECE's bins (METRICS.md §8): torchmetrics' 50 bins `[b/50, (b+1)/50)` over the top-label
/// confidence, then its bin of confidences exactly 1. Sums, not means, so that cases pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// The lower edge of each bin (float32 boundaries, as torchmetrics), 1 for the last.
    pub lower_edges: Vec<f64>,
    /// ROI voxels in the bin.
    pub count: Vec<u64>,
    /// Sum of their confidences.
    pub confidence_sum: Vec<f64>,
    /// Per annotator, the voxels of the bin whose top label is that annotator's label.
    pub correct: Vec<Vec<u64>>,
}

/// Selective classification per organ (METRICS.md §11, the tie-aware curve): the risk when only
/// the most confident fraction `coverage` of the ROI voxels is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskCoverageCurves {
    /// `0, 0.01, .., 1`.
    pub coverage: Vec<f64>,
    /// Per organ (`pancreas`, `kidney`, `liver`), per annotator: the risk at each coverage.
    pub organs: BTreeMap<String, Vec<Vec<Real>>>,
}
