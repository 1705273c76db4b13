//! The report's statistics against scipy 1.17 (`wilcoxon`), statsmodels (Holm) and numpy
//! (mean, median, quartiles): `tools/stats_reference.py` wrote the fixture. Ties, zero
//! differences, n < 10 and every one of scipy's three p-value methods are covered.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use statapp_report::stats::{Method, Summary, holm, wilcoxon};

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/stats_reference.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// `null` in the fixture is NaN (scipy's undefined values).
fn same(got: f64, want: &Value) -> bool {
    match want.as_f64() {
        None => got.is_nan(),
        Some(w) => (got - w).abs() <= 1e-12 * w.abs().max(1e-300) || got == w,
    }
}

#[test]
fn wilcoxon_equals_scipy() {
    let doc = fixture();
    let mut methods = std::collections::BTreeSet::new();
    let cases = doc["wilcoxon"].as_array().unwrap();
    assert!(cases.len() >= 30);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let w = wilcoxon(&floats(&c["x"]), &floats(&c["y"]));
        methods.insert(format!("{:?}", w.method));
        assert!(
            same(w.statistic, &c["statistic"]),
            "{name}: statistic {} vs {}",
            w.statistic,
            c["statistic"]
        );
        assert!(
            same(w.p_value, &c["pvalue"]),
            "{name}: p {} vs {} ({:?})",
            w.p_value,
            c["pvalue"],
            w.method
        );
        assert!(
            same(w.effect_size, &c["effect_size"]),
            "{name}: effect size {} vs {}",
            w.effect_size,
            c["effect_size"]
        );
    }
    for m in [Method::Exact, Method::Permutation, Method::Asymptotic] {
        assert!(methods.contains(&format!("{m:?}")), "no case for {m:?}");
    }
}

#[test]
fn holm_equals_statsmodels() {
    for c in fixture()["holm"].as_array().unwrap() {
        let got = holm(&floats(&c["p"]));
        for (g, w) in got.iter().zip(c["adjusted"].as_array().unwrap()) {
            assert!(same(*g, w), "{g} vs {w} in {c}");
        }
    }
}

#[test]
fn summaries_equal_numpy() {
    for c in fixture()["describe"].as_array().unwrap() {
        let s = Summary::of(&floats(&c["values"])).unwrap();
        for (got, key) in [
            (s.mean, "mean"),
            (s.median, "median"),
            (s.q1, "q1"),
            (s.q3, "q3"),
        ] {
            assert!(same(got, &c[key]), "{key}: {got} vs {}", c[key]);
        }
    }
}
