//! The report's tests on two committed studies (`tools/stats_reference.py`): a statapp CSV and
//! one in the original project's published layout (35 columns, `CT` first, ids `UKCHLL003` or
//! `75`). Every paired test equals the reference's (scipy's Wilcoxon, statsmodels' Holm, the
//! same per-patient single-model means); `stats.json` and `report.html` carry the same numbers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use statapp_report::analysis::{PairedTest, analyse};
use statapp_report::table::{Source, read_csv};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn close(got: f64, want: &Value) -> bool {
    match want.as_f64() {
        None => got.is_nan(),
        Some(w) => got == w || (got - w).abs() <= 1e-12 * w.abs(),
    }
}

fn check(study: &str, source: Source, patients: usize) {
    let s = read_csv(&fixture(&format!("{study}.csv"))).unwrap();
    assert_eq!(s.source, source);
    let a = analyse(&s);
    assert_eq!(a.patients, patients);
    let expected: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(fixture(&format!("{study}_expected.json"))).unwrap(),
    )
    .unwrap();
    assert!(expected.len() >= 20);
    for e in &expected {
        let find = |t: &&PairedTest| {
            t.metric == e["metric"].as_str().unwrap()
                && t.organ == e["organ"].as_str().unwrap()
                && t.group == e["group"].as_str().unwrap()
        };
        let t = a
            .tests()
            .find(find)
            .unwrap_or_else(|| panic!("{study}: no test {e}"));
        assert_eq!(t.n as u64, e["n"].as_u64().unwrap(), "{study}: n of {e}");
        for (got, key) in [
            (t.statistic, "statistic"),
            (t.p, "p"),
            (t.p_holm, "p_holm"),
            (t.effect_size, "effect_size"),
            (t.median_single, "median_single"),
            (t.median_ensemble, "median_ensemble"),
        ] {
            assert!(
                close(got, &e[key]),
                "{study} {} {} {}: {key} {got} vs {}",
                t.metric,
                t.organ,
                t.group,
                e[key]
            );
        }
    }
}

#[test]
fn paired_tests_equal_scipy_on_a_statapp_study() {
    check("study_statapp", Source::Statapp, 12);
}

#[test]
fn the_originals_layout_reads_by_column_name_with_its_patient_ids() {
    check("study_original", Source::Original, 14);
    let s = read_csv(&fixture("study_original.csv")).unwrap();
    assert!(s.patients().contains("UKCHLL004"), "bare 4 is UKCHLL004");
    assert!(s.patients().contains("UKCHLL003"));
}

#[test]
fn the_written_report_carries_the_same_numbers() {
    let out = tempfile::tempdir().unwrap();
    let csv = fixture("study_statapp.csv");
    let w = statapp_report::write_report(&csv, out.path(), &out.path().join("no-curves")).unwrap();
    let stats: Value = serde_json::from_str(&std::fs::read_to_string(&w.stats).unwrap()).unwrap();
    let tests = stats["tests"].as_array().unwrap();
    assert_eq!(tests.len(), w.analysis.tests().count());
    for (json, t) in tests.iter().zip(w.analysis.tests()) {
        assert_eq!(json["group"], t.group.as_str());
        assert!(close(t.p, &json["p"]) && close(t.p_holm, &json["p_holm"]));
        for key in [
            "metric",
            "organ",
            "n",
            "statistic",
            "effect_size",
            "median_single",
        ] {
            assert!(json.get(key).is_some(), "stats.json lacks {key}");
        }
    }
    let html = std::fs::read_to_string(&w.html).unwrap();
    // self-contained: every image is inline data, nothing is fetched
    assert!(html.contains("data:image/png;base64,"));
    for external in ["http://", "https://", "<script", "<link"] {
        assert!(!html.contains(external), "report.html has {external}");
    }
    // the headline's numbers are the analysis' own
    let ece = w.analysis.part("ece", "all").unwrap();
    let all = ece
        .tests
        .iter()
        .find(|t| t.group == "ensemble_all")
        .unwrap();
    use statapp_report::html::{num, pval, verdict};
    for shown in [
        num(all.median_ensemble),
        num(all.mean_single),
        pval(all.p_holm),
        verdict(all),
    ] {
        assert!(html.contains(&shown), "report.html lacks {shown}");
    }
    for f in &w.figures {
        assert!(
            std::fs::metadata(f).unwrap().len() > 1000,
            "{}",
            f.display()
        );
    }
    assert!(
        w.figures
            .iter()
            .any(|f| f.ends_with("figures/box_dice.svg"))
    );
}
