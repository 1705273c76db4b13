//! Reading a combined metrics CSV: statapp's (the original's 35 columns, then the corrected
//! ones) or the original project's published `metrics.csv` (35 columns in any order, patient ids
//! `UKCHLL077` or bare numbers such as `75`). Columns are found by name.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a CSV file: {source}")]
    Csv {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
    #[error("{path}: no column {column}: not a combined metrics CSV")]
    MissingColumn { path: PathBuf, column: &'static str },
    #[error("{path}, line {line}, column {column}: {value:?} is not a number")]
    NotANumber {
        path: PathBuf,
        line: u64,
        column: String,
        value: String,
    },
    #[error("{path}, line {line}: a second row for patient {patient}, model {model}")]
    Duplicate {
        path: PathBuf,
        line: u64,
        patient: String,
        model: String,
    },
    #[error("{path}: no data rows")]
    Empty { path: PathBuf },
}

/// Who wrote the CSV, which decides the metrics the report reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// statapp: the corrected columns (`dice_panc`, ...) are there.
    Statapp,
    /// Only the original project's 35 columns.
    Original,
}

/// One scored prediction: a patient and a model or ensemble (`CT` in the CSV).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub patient: String,
    pub model: String,
    /// Every numeric column by name; an empty cell is NaN.
    pub values: BTreeMap<String, f64>,
}

/// The rows of one CSV file.
#[derive(Debug, Clone)]
pub struct Study {
    pub path: PathBuf,
    pub source: Source,
    pub rows: Vec<Row>,
}

impl Study {
    pub fn patients(&self) -> BTreeSet<&str> {
        self.rows.iter().map(|r| r.patient.as_str()).collect()
    }
}

/// The original project's patient ids: `UKCHLL` and three digits; its published file also has
/// bare numbers (`75` for `UKCHLL075`), which are the same patients.
pub fn patient_id(raw: &str) -> String {
    let raw = raw.trim();
    match raw.parse::<u32>() {
        Ok(n) if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) => {
            format!("UKCHLL{n:03}")
        }
        _ => raw.to_string(),
    }
}

/// A cell: empty is NaN (an undefined metric), `inf`/`-inf` as statapp writes them.
fn number(cell: &str) -> Option<f64> {
    let cell = cell.trim();
    if cell.is_empty() || cell.eq_ignore_ascii_case("nan") {
        return Some(f64::NAN);
    }
    cell.parse().ok()
}

pub fn read_csv(path: &Path) -> Result<Study, TableError> {
    let text = std::fs::read(path).map_err(|source| TableError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let csv_err = |source| TableError::Csv {
        path: path.to_path_buf(),
        source,
    };
    let mut reader = csv::Reader::from_reader(text.as_slice());
    let header = reader.headers().map_err(csv_err)?.clone();
    let find = |column: &'static str| {
        header
            .iter()
            .position(|h| h.trim() == column)
            .ok_or(TableError::MissingColumn {
                path: path.to_path_buf(),
                column,
            })
    };
    let (patient_col, model_col) = (find("Patient_ID")?, find("CT")?);
    let source = if header.iter().any(|h| h.trim() == "dice_panc") {
        Source::Statapp
    } else {
        Source::Original
    };
    let mut rows = Vec::new();
    let mut seen = BTreeSet::new();
    for record in reader.records() {
        let record = record.map_err(csv_err)?;
        let line = record.position().map_or(0, |p| p.line());
        let patient = patient_id(record.get(patient_col).unwrap_or(""));
        let model = record.get(model_col).unwrap_or("").trim().to_string();
        if !seen.insert((patient.clone(), model.clone())) {
            return Err(TableError::Duplicate {
                path: path.to_path_buf(),
                line,
                patient,
                model,
            });
        }
        let mut values = BTreeMap::new();
        for (i, (name, cell)) in header.iter().zip(record.iter()).enumerate() {
            if i == patient_col || i == model_col {
                continue;
            }
            let v = number(cell).ok_or_else(|| TableError::NotANumber {
                path: path.to_path_buf(),
                line,
                column: name.to_string(),
                value: cell.to_string(),
            })?;
            values.insert(name.trim().to_string(), v);
        }
        rows.push(Row {
            patient,
            model,
            values,
        });
    }
    if rows.is_empty() {
        return Err(TableError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(Study {
        path: path.to_path_buf(),
        source,
        rows,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn patient_ids_of_the_original() {
        assert_eq!(patient_id("75"), "UKCHLL075");
        assert_eq!(patient_id("110"), "UKCHLL110");
        assert_eq!(patient_id("UKCHLL003"), "UKCHLL003");
        assert_eq!(patient_id("case_a"), "case_a");
        assert_eq!(patient_id("+5"), "+5");
    }

    #[test]
    fn columns_by_name_in_any_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.csv");
        std::fs::write(
            &p,
            "CT,ECE_1,Patient_ID\nanno1_init1_foldall,0.5,75\nensemble_all,,UKCHLL075\n",
        )
        .unwrap();
        let s = read_csv(&p).unwrap();
        assert_eq!(s.source, Source::Original);
        assert_eq!(s.rows[0].patient, "UKCHLL075");
        assert_eq!(s.rows[0].values["ECE_1"], 0.5);
        assert!(s.rows[1].values["ECE_1"].is_nan());
        std::fs::write(&p, "Patient_ID,CT,ECE_1\n1,a,x\n").unwrap();
        let e = read_csv(&p).unwrap_err().to_string();
        assert!(e.contains("line 2, column ECE_1: \"x\""), "{e}");
        std::fs::write(&p, "Patient_ID,CT\n1,a\n001,a\n").unwrap();
        assert!(matches!(read_csv(&p), Err(TableError::Duplicate { .. })));
        std::fs::write(&p, "CT,x\n").unwrap();
        assert!(matches!(
            read_csv(&p),
            Err(TableError::MissingColumn { .. })
        ));
    }
}
