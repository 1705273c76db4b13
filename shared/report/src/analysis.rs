//! The numbers of the report: per group and metric a summary, and per ensemble a paired test of
//! the single models' mean per patient against the ensemble (Wilcoxon signed-rank, Holm over the
//! ensembles compared on the same metric and organ).

use crate::catalog::{Better, Metric, Part, metrics};
use crate::stats::{Method, Summary, holm, numpy_mean, wilcoxon};
use crate::table::{Source, Study};
use serde::Serialize;
use std::collections::BTreeMap;

/// The single models, as one group.
pub const SINGLE: &str = "single models";

/// The group of a row: its ensemble's name, or the single models.
pub fn group_of(model: &str) -> &str {
    if model.starts_with("ensemble") {
        model
    } else {
        SINGLE
    }
}

/// Groups in the report's order: single models, per-annotator ensembles, `ensemble_all` last.
pub fn groups(study: &Study) -> Vec<String> {
    let mut names: Vec<String> = study
        .rows
        .iter()
        .map(|r| group_of(&r.model).to_string())
        .collect();
    names.sort_by_key(|g| (g != SINGLE, g == "ensemble_all", g.clone()));
    names.dedup();
    names
}

/// One metric of one organ in one group.
#[derive(Debug, Clone, Serialize)]
pub struct GroupSummary {
    pub group: String,
    /// Rows of the group (defined or not).
    pub rows: usize,
    /// `None` when the metric is undefined in every row of the group.
    pub summary: Option<Summary>,
    /// The values, for the box plots.
    #[serde(skip)]
    pub values: Vec<f64>,
}

/// A paired test, as written to `stats.json`.
#[derive(Debug, Clone, Serialize)]
pub struct PairedTest {
    pub metric: String,
    pub label: String,
    pub organ: String,
    pub columns: Vec<String>,
    /// The ensemble tested.
    pub group: String,
    /// What it is compared with.
    pub versus: String,
    pub better: Better,
    /// Patients with both values defined (zero differences included).
    pub n: usize,
    pub n_nonzero: usize,
    /// scipy's statistic `min(R+, R-)`.
    pub statistic: f64,
    pub p: f64,
    pub p_holm: f64,
    pub method: Method,
    /// Matched-pairs rank-biserial correlation of `ensemble - single mean`: positive when the
    /// ensemble's values tend to be higher.
    pub effect_size: f64,
    pub median_single: f64,
    pub median_ensemble: f64,
    pub median_difference: f64,
    pub mean_single: f64,
    pub mean_ensemble: f64,
    pub holm_family: String,
}

/// Everything about one metric of one organ.
#[derive(Debug, Clone, Serialize)]
pub struct PartResult {
    pub metric: String,
    pub label: String,
    pub unit: String,
    pub organ: String,
    pub columns: Vec<String>,
    pub better: Better,
    pub groups: Vec<GroupSummary>,
    pub tests: Vec<PairedTest>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    pub csv: String,
    pub source: Source,
    pub patients: usize,
    pub rows: usize,
    pub groups: Vec<String>,
    pub parts: Vec<PartResult>,
}

impl Analysis {
    pub fn tests(&self) -> impl Iterator<Item = &PairedTest> {
        self.parts.iter().flat_map(|p| p.tests.iter())
    }

    pub fn part(&self, metric: &str, organ: &str) -> Option<&PartResult> {
        self.parts
            .iter()
            .find(|p| p.metric == metric && p.organ == organ)
    }
}

fn median(v: &[f64]) -> f64 {
    Summary::of(v).map_or(f64::NAN, |s| s.median)
}

fn mean(v: &[f64]) -> f64 {
    Summary::of(v).map_or(f64::NAN, |s| s.mean)
}

/// Per patient: the single models' mean (over those with the value defined).
fn single_means<'a>(study: &'a Study, part: &Part) -> BTreeMap<&'a str, f64> {
    let mut acc: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for r in study.rows.iter().filter(|r| group_of(&r.model) == SINGLE) {
        let v = part.value(&r.values);
        if v.is_finite() {
            acc.entry(r.patient.as_str()).or_default().push(v);
        }
    }
    acc.into_iter().map(|(p, v)| (p, numpy_mean(&v))).collect()
}

fn paired_tests(study: &Study, metric: &Metric, part: &Part, groups: &[String]) -> Vec<PairedTest> {
    let singles = single_means(study, part);
    let family = format!(
        "{} / {}: every ensemble vs the single models",
        metric.key, part.organ
    );
    let mut tests = Vec::new();
    for g in groups.iter().filter(|g| g.as_str() != SINGLE) {
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for r in study.rows.iter().filter(|r| &r.model == g) {
            let v = part.value(&r.values);
            if let (true, Some(s)) = (v.is_finite(), singles.get(r.patient.as_str())) {
                x.push(v);
                y.push(*s);
            }
        }
        let w = wilcoxon(&x, &y);
        let diffs: Vec<f64> = x.iter().zip(&y).map(|(a, b)| a - b).collect();
        tests.push(PairedTest {
            metric: metric.key.to_string(),
            label: metric.label.to_string(),
            organ: part.organ.to_string(),
            columns: part.columns.clone(),
            group: g.clone(),
            versus: format!("{SINGLE} (mean per patient)"),
            better: metric.better,
            n: w.n,
            n_nonzero: w.n_nonzero,
            statistic: w.statistic,
            p: w.p_value,
            p_holm: f64::NAN,
            method: w.method,
            effect_size: w.effect_size,
            median_single: median(&y),
            median_ensemble: median(&x),
            median_difference: median(&diffs),
            mean_single: mean(&y),
            mean_ensemble: mean(&x),
            holm_family: family.clone(),
        });
    }
    let adjusted = holm(&tests.iter().map(|t| t.p).collect::<Vec<_>>());
    for (t, p) in tests.iter_mut().zip(adjusted) {
        t.p_holm = p;
    }
    tests
}

/// The report's numbers for `study`. Metrics with no defined value anywhere (a column the CSV
/// does not have) are left out.
pub fn analyse(study: &Study) -> Analysis {
    let groups = groups(study);
    let mut parts = Vec::new();
    for metric in metrics(study.source) {
        for part in &metric.parts {
            let summaries: Vec<GroupSummary> = groups
                .iter()
                .map(|g| {
                    let rows: Vec<_> = study
                        .rows
                        .iter()
                        .filter(|r| group_of(&r.model) == g)
                        .collect();
                    let values: Vec<f64> = rows
                        .iter()
                        .map(|r| part.value(&r.values))
                        .filter(|v| v.is_finite())
                        .collect();
                    GroupSummary {
                        group: g.clone(),
                        rows: rows.len(),
                        summary: Summary::of(&values),
                        values,
                    }
                })
                .collect();
            if summaries.iter().all(|s| s.summary.is_none()) {
                continue;
            }
            parts.push(PartResult {
                metric: metric.key.to_string(),
                label: metric.label.to_string(),
                unit: metric.unit.to_string(),
                organ: part.organ.to_string(),
                columns: part.columns.clone(),
                better: metric.better,
                tests: paired_tests(study, &metric, part, &groups),
                groups: summaries,
            });
        }
    }
    Analysis {
        csv: study.path.display().to_string(),
        source: study.source,
        patients: study.patients().len(),
        rows: study.rows.len(),
        groups,
        parts,
    }
}
