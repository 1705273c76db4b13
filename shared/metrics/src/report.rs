//! The output document of `statapp metrics case` (METRICS.md §18) and its CSV row.

use crate::Roi;
use crate::real::Real;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize)]
pub struct Inputs {
    pub shape_zyx: [usize; 3],
    pub spacing_zyx_mm: [f64; 3],
    pub voxel_volume_mm3: f64,
    pub pred_source: String,
    pub roi: Roi,
    pub background_prob_negative_voxels: u64,
    pub all_class_probs_in_unit_interval: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Crps {
    pub gt_volumes_vox: [u64; 3],
    pub mu_vox: Real,
    pub sigma_vox: Real,
    pub pred_volume_vox: Real,
    pub gt_volumes_mm3: [Real; 3],
    pub mu_mm3: Real,
    pub sigma_mm3: Real,
    pub pred_volume_mm3: Real,
    pub crps_mm3: Real,
    pub crps_vox: Real,
    pub crps_empirical_mm3: Real,
    pub crps_curvas_numeric_vox: Real,
    pub crps_statapp_numeric_vox: Real,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct HausdorffPair {
    pub hd_mm: Real,
    pub hd_vox: Real,
    pub hd95_mm: Real,
    pub hd_surface_mm: Real,
}

#[derive(Debug, Clone, Serialize)]
pub struct Hausdorff {
    pub per_annotator: BTreeMap<String, HausdorffPair>,
    pub mean_hd_mm: Real,
    pub mean_hd_vox: Real,
    pub mean_hd95_mm: Real,
    pub mean_hd_surface_mm: Real,
}

#[derive(Debug, Clone, Serialize)]
pub struct Auroc {
    pub per_annotator: BTreeMap<String, Real>,
    pub mean: Real,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct RiskCoveragePair {
    pub aurc: Real,
    pub eaurc: Real,
    pub aurc_optimal: Real,
    pub aurc_values_loop: Real,
    pub eaurc_values_loop: Real,
    pub error_rate: Real,
}

#[derive(Debug, Clone, Serialize)]
pub struct RiskCoverage {
    pub per_annotator: BTreeMap<String, RiskCoveragePair>,
    pub mean_aurc: Real,
    pub mean_eaurc: Real,
    /// Per annotator, the selective risk on the coverage grid (for the report's curves; not
    /// part of the JSON document).
    #[serde(skip)]
    pub grid: Vec<Vec<f64>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Organ {
    pub name: String,
    pub consensus_voxels: u64,
    pub consensus_background_voxels: u64,
    pub dissensus_voxels: u64,
    pub dice: Real,
    pub dice_monai_linewise: Real,
    pub confidence: Real,
    pub confidence_mean_prob_consensus_organ: Real,
    pub confidence_mean_prob_consensus_background: Real,
    pub crps: Crps,
    pub hausdorff: Hausdorff,
    pub auroc: Auroc,
    pub risk_coverage: RiskCoverage,
    pub ncc: Real,
    /// CURVAS-PDACVI's thresholded Dice: `p_k > t` against the annotators' mean `> t`, averaged
    /// over `t` in `linspace(0.1, 0.8, 6)` (1 where both are empty).
    pub thresholded_dice: Real,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Annotator {
    pub ece: Real,
    pub ece_softmax_fallback_applied: bool,
    pub ace: Real,
    pub accuracy_vs_pred: Real,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Global {
    pub entropy_gt_labels: Real,
    pub entropy_pred_labels: Real,
    pub mean_predictive_entropy: Real,
    pub mean_ncc_organs: Real,
}

/// The 35 columns of the original `metrics.csv`, in order.
pub const COMPAT_COLUMNS: [&str; 35] = [
    "Patient_ID",
    "CT",
    "DICE_panc",
    "DICE_kidn",
    "DICE_livr",
    "CONF_panc",
    "CONF_kidn",
    "CONF_livr",
    "Entropy_GT",
    "Entropy_Pred",
    "Hausdorff_1",
    "Hausdorff_2",
    "Hausdorff_3",
    "ECE_1",
    "ECE_2",
    "ECE_3",
    "ACE_1",
    "ACE_2",
    "ACE_3",
    "AUROC_panc",
    "AUROC_kidn",
    "AUROC_livr",
    "AURC_panc",
    "AURC_kidn",
    "AURC_livr",
    "EAURC_panc",
    "EAURC_kidn",
    "EAURC_livr",
    "CRPS_panc",
    "CRPS_kidn",
    "CRPS_livr",
    "NCC_GT1-2",
    "NCC_GT1-3",
    "NCC_GT2-3",
    "NCC_mean",
];

/// The 34 corrected columns appended after the original ones (§18.4, then the thresholded Dice).
pub fn corrected_columns() -> Vec<String> {
    let organs = ["panc", "kidn", "livr"];
    let mut cols = Vec::new();
    for m in [
        "dice", "conf", "crps_mm3", "hd95_mm", "auroc", "aurc", "eaurc", "ncc",
    ] {
        for o in organs {
            cols.push(format!("{m}_{o}"));
        }
    }
    for m in ["ece", "ace"] {
        for a in 1..=3 {
            cols.push(format!("{m}_a{a}"));
        }
    }
    cols.push("mean_predictive_entropy".into());
    for o in organs {
        cols.push(format!("tdice_{o}"));
    }
    cols
}

/// Every CSV column: the original 35, then the corrected 34.
pub fn csv_header() -> Vec<String> {
    COMPAT_COLUMNS
        .iter()
        .map(|s| s.to_string())
        .chain(corrected_columns())
        .collect()
}

/// One scored prediction of one case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseMetrics {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub case: Option<String>,
    pub inputs: Inputs,
    pub organs: BTreeMap<String, Organ>,
    pub annotators: BTreeMap<String, Annotator>,
    pub global: Global,
    /// The 33 original metric columns, in CSV order.
    pub statapp_compat: serde_json::Map<String, serde_json::Value>,
    /// Calibration bins and risk-coverage curves, written beside the row (not in this document).
    #[serde(skip)]
    pub curves: crate::curves::Curves,
}

impl CaseMetrics {
    fn organ(&self, k: usize) -> &Organ {
        &self.organs[&k.to_string()]
    }

    /// The CSV data row (`Patient_ID` and `CT` as given), aligned with [`csv_header`].
    pub fn csv_row(&self, patient_id: &str, ct: &str) -> Vec<String> {
        let mut row = vec![patient_id.to_string(), ct.to_string()];
        for col in &COMPAT_COLUMNS[2..] {
            let v = self.statapp_compat.get(*col);
            let real = match v {
                Some(serde_json::Value::Number(n)) => Real(n.as_f64().unwrap_or(f64::NAN)),
                Some(serde_json::Value::String(s)) => Real::from_csv_cell(s).unwrap_or(Real::NAN),
                _ => Real::NAN,
            };
            row.push(real.csv_cell());
        }
        let per_organ: [fn(&Organ) -> Real; 8] = [
            |o| o.dice,
            |o| o.confidence,
            |o| o.crps.crps_mm3,
            |o| o.hausdorff.mean_hd95_mm,
            |o| o.auroc.mean,
            |o| o.risk_coverage.mean_aurc,
            |o| o.risk_coverage.mean_eaurc,
            |o| o.ncc,
        ];
        for get in per_organ {
            for k in 1..=3 {
                row.push(get(self.organ(k)).csv_cell());
            }
        }
        for a in 1..=3 {
            row.push(self.annotators[&a.to_string()].ece.csv_cell());
        }
        for a in 1..=3 {
            row.push(self.annotators[&a.to_string()].ace.csv_cell());
        }
        row.push(self.global.mean_predictive_entropy.csv_cell());
        for k in 1..=3 {
            row.push(self.organ(k).thresholded_dice.csv_cell());
        }
        row
    }
}

/// JSON value of a real with the report encoding.
pub fn real_value(v: f64) -> serde_json::Value {
    serde_json::to_value(Real(v)).unwrap_or(serde_json::Value::Null)
}
