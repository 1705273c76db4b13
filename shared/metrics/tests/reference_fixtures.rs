//! Every field of `statapp metrics case` against the independent Python reference
//! (`tools/metrics_reference.py`: scikit-learn, properscoring, scipy, numpy loops), on fixture
//! cases that cover the edge cases of METRICS.md.
//!
//! Tolerance: counts, strings, flags and nulls exactly; reals to 1e-9 relative (1e-12 absolute
//! near zero). Looser, with the reason:
//! * `crps_curvas_numeric_vox`: the reference integrates with `scipy.integrate.quad` per piece
//!   (epsrel 1e-13), we integrate the piecewise quadratic exactly: 1e-9 relative still holds, but
//!   near-zero values get 1e-10 absolute.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use statapp_metrics::{CaseMetrics, CasePaths, RoiMode, score_files};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn close(path: &str, got: f64, want: f64) -> bool {
    let scale = got.abs().max(want.abs());
    let abs = if path.ends_with("crps_curvas_numeric_vox") {
        1e-10
    } else {
        1e-12
    };
    (got - want).abs() <= (1e-9 * scale).max(abs)
}

fn compare(path: &str, got: &Value, want: &Value, errors: &mut Vec<String>, fields: &mut usize) {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            for (k, wv) in w {
                match g.get(k) {
                    Some(gv) => compare(&format!("{path}.{k}"), gv, wv, errors, fields),
                    None => errors.push(format!("{path}.{k}: missing")),
                }
            }
            for k in g.keys().filter(|k| !w.contains_key(*k)) {
                errors.push(format!("{path}.{k}: not in the reference"));
            }
        }
        (Value::Array(g), Value::Array(w)) if g.len() == w.len() => {
            for (i, (gv, wv)) in g.iter().zip(w).enumerate() {
                compare(&format!("{path}[{i}]"), gv, wv, errors, fields);
            }
        }
        (Value::Number(g), Value::Number(w)) => {
            *fields += 1;
            let exact = w.is_u64() || w.is_i64();
            let ok = if exact && (g.is_u64() || g.is_i64()) {
                g == w
            } else {
                close(path, g.as_f64().unwrap(), w.as_f64().unwrap())
            };
            if !ok {
                errors.push(format!("{path}: {g} vs reference {w}"));
            }
        }
        (g, w) => {
            *fields += 1;
            if g != w {
                errors.push(format!("{path}: {g} vs reference {w}"));
            }
        }
    }
}

/// The curves written beside a row agree with the row: the ECE recomputed from the calibration
/// bins, the risk at full coverage is the error rate, the area under the sampled curve is the
/// AURC up to the grid's resolution.
fn check_curves(name: &str, m: &CaseMetrics, errors: &mut Vec<String>) {
    let cal = &m.curves.calibration;
    let total: u64 = cal.count.iter().sum();
    for a in 0..3 {
        let ece: f64 = (0..cal.count.len())
            .filter(|b| cal.count[*b] > 0)
            .map(|b| {
                let c = cal.count[b] as f64;
                (cal.correct[a][b] as f64 / c - cal.confidence_sum[b] / c).abs() * c / total as f64
            })
            .sum();
        let want = m.annotators[&(a + 1).to_string()].ece.0;
        if !close("ece from bins", ece, want) {
            errors.push(format!("{name}: ECE from the bins {ece} vs {want}"));
        }
    }
    let rc = &m.curves.risk_coverage;
    for organ in m.organs.values() {
        let grid = &rc.organs[&organ.name];
        for (a, risks) in grid.iter().enumerate() {
            let pair = &organ.risk_coverage.per_annotator[&(a + 1).to_string()];
            let full = risks[risks.len() - 1].0;
            if !close("risk at coverage 1", full, pair.error_rate.0) {
                errors.push(format!("{name} {}: risk at coverage 1 {full}", organ.name));
            }
            let area: f64 = risks
                .windows(2)
                .zip(rc.coverage.windows(2))
                .map(|(r, c)| (r[0].0 + r[1].0) / 2.0 * (c[1] - c[0]))
                .sum();
            if (area - pair.aurc.0).abs() > 0.01 {
                errors.push(format!(
                    "{name} {}: area under the sampled curve {area} vs AURC {}",
                    organ.name, pair.aurc.0
                ));
            }
        }
    }
}

#[test]
fn every_field_matches_the_reference() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("expected.json").is_file())
        .collect();
    cases.sort();
    assert!(cases.len() >= 8, "{} fixture cases", cases.len());
    let mut errors = Vec::new();
    let mut fields = 0;
    for dir in &cases {
        let args: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("args.json")).unwrap()).unwrap();
        let list = |k: &str| -> Vec<PathBuf> {
            args[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| dir.join(v.as_str().unwrap()))
                .collect()
        };
        let (ann, prob) = (list("annotation"), list("probabilities"));
        let paths = CasePaths {
            annotations: [ann[0].clone(), ann[1].clone(), ann[2].clone()],
            probabilities: [prob[0].clone(), prob[1].clone(), prob[2].clone()],
            prediction: args["prediction"].as_str().map(|p| dir.join(p)),
            ct: args["ct"].as_str().map(|p| dir.join(p)),
        };
        let roi: RoiMode = args["roi"].as_str().unwrap().parse().unwrap();
        let metrics = score_files(&paths, roi).unwrap();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        check_curves(&name, &metrics, &mut errors);
        let got = serde_json::to_value(&metrics).unwrap();
        let want: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap())
                .unwrap();
        compare(&name, &got, &want, &mut errors, &mut fields);
    }
    assert!(
        errors.is_empty(),
        "{} of {fields} fields differ:\n{}",
        errors.len(),
        errors.join("\n")
    );
    eprintln!(
        "{fields} fields in {} cases match the reference",
        cases.len()
    );
}
