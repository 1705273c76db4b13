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
use statapp_metrics::{CasePaths, RoiMode, score_files};
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
        let got = serde_json::to_value(score_files(&paths, roi).unwrap()).unwrap();
        let want: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap())
                .unwrap();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
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
