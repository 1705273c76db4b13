//! Which metrics the report shows, and from which columns. A statapp CSV is read through its
//! corrected columns (METRICS.md §18.4); the original's file, which has only its 35 columns, through
//! those (with the original's definitions and bugs, METRICS.md §12).

use crate::table::Source;

/// Which way is better, for the reader (tests are two-sided whatever it is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Higher,
    Lower,
    /// A descriptive quantity (confidence, entropy).
    Neither,
}

/// One metric as the report shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub key: &'static str,
    pub label: &'static str,
    /// Shown on axes; empty for unitless metrics.
    pub unit: &'static str,
    pub better: Better,
    /// Per organ (or `"all"`), the columns averaged per row (all must be defined).
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub organ: &'static str,
    pub columns: Vec<String>,
}

pub const ORGANS: [(&str, &str); 3] = [("pancreas", "panc"), ("kidney", "kidn"), ("liver", "livr")];

fn per_organ(
    key: &'static str,
    label: &'static str,
    unit: &'static str,
    better: Better,
    column: impl Fn(&str) -> String,
) -> Metric {
    Metric {
        key,
        label,
        unit,
        better,
        parts: ORGANS
            .iter()
            .map(|(organ, short)| Part {
                organ,
                columns: vec![column(short)],
            })
            .collect(),
    }
}

fn pooled(
    key: &'static str,
    label: &'static str,
    unit: &'static str,
    better: Better,
    columns: &[&str],
) -> Metric {
    Metric {
        key,
        label,
        unit,
        better,
        parts: vec![Part {
            organ: "all",
            columns: columns.iter().map(|c| c.to_string()).collect(),
        }],
    }
}

/// The metrics of a CSV written by `source`, in the report's order.
pub fn metrics(source: Source) -> Vec<Metric> {
    use Better::*;
    match source {
        Source::Statapp => vec![
            per_organ("dice", "Consensus Dice", "", Higher, |o| {
                format!("dice_{o}")
            }),
            per_organ("tdice", "Thresholded Dice", "", Higher, |o| {
                format!("tdice_{o}")
            }),
            pooled(
                "ece",
                "ECE (mean of the 3 annotators)",
                "",
                Lower,
                &["ece_a1", "ece_a2", "ece_a3"],
            ),
            pooled(
                "ace",
                "ACE (mean of the 3 annotators)",
                "",
                Lower,
                &["ace_a1", "ace_a2", "ace_a3"],
            ),
            per_organ(
                "hd95",
                "HD95 (mean of the 3 annotators)",
                "mm",
                Lower,
                |o| format!("hd95_mm_{o}"),
            ),
            per_organ("crps", "Volume CRPS", "mm³", Lower, |o| {
                format!("crps_mm3_{o}")
            }),
            per_organ("auroc", "AUROC", "", Higher, |o| format!("auroc_{o}")),
            per_organ("aurc", "AURC", "", Lower, |o| format!("aurc_{o}")),
            per_organ("eaurc", "EAURC", "", Lower, |o| format!("eaurc_{o}")),
            per_organ("conf", "Confidence", "", Neither, |o| format!("conf_{o}")),
            per_organ("ncc", "NCC", "", Higher, |o| format!("ncc_{o}")),
            pooled(
                "entropy",
                "Mean predictive entropy",
                "nats",
                Neither,
                &["mean_predictive_entropy"],
            ),
        ],
        Source::Original => vec![
            per_organ("dice", "DICE (original, linewise)", "", Higher, |o| {
                format!("DICE_{o}")
            }),
            pooled(
                "ece",
                "ECE (mean of ECE_1..3)",
                "",
                Lower,
                &["ECE_1", "ECE_2", "ECE_3"],
            ),
            pooled(
                "ace",
                "ACE (mean of ACE_1..3, original)",
                "",
                Lower,
                &["ACE_1", "ACE_2", "ACE_3"],
            ),
            pooled(
                "hausdorff",
                "Hausdorff (mean of Hausdorff_1..3, original)",
                "voxels",
                Lower,
                &["Hausdorff_1", "Hausdorff_2", "Hausdorff_3"],
            ),
            per_organ("crps", "CRPS (original)", "voxels", Lower, |o| {
                format!("CRPS_{o}")
            }),
            per_organ("auroc", "AUROC (original)", "", Higher, |o| {
                format!("AUROC_{o}")
            }),
            per_organ("aurc", "AURC (original)", "", Lower, |o| {
                format!("AURC_{o}")
            }),
            per_organ("eaurc", "EAURC (original)", "", Lower, |o| {
                format!("EAURC_{o}")
            }),
            per_organ("conf", "CONF", "", Neither, |o| format!("CONF_{o}")),
            pooled("entropy", "Entropy_Pred", "", Neither, &["Entropy_Pred"]),
        ],
    }
}

impl Part {
    /// The part's value in a row: the mean of its columns, NaN when one is undefined or absent.
    pub fn value(&self, values: &std::collections::BTreeMap<String, f64>) -> f64 {
        let mut sum = 0.0;
        for c in &self.columns {
            match values.get(c) {
                Some(v) if v.is_finite() => sum += v,
                _ => return f64::NAN,
            }
        }
        sum / self.columns.len() as f64
    }
}
