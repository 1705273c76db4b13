//! Merging per-case metric rows into one combined CSV keyed by (`Patient_ID`, `CT`): later rows
//! replace earlier ones with the same key, no other row is ever dropped, and the output is sorted
//! so that the same inputs always give the same bytes.

use crate::report::csv_header;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("{path}: I/O error: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a metrics CSV: {detail}")]
    BadCsv { path: PathBuf, detail: String },
    #[error("{path}: header does not match the metrics columns ({detail})")]
    WrongHeader { path: PathBuf, detail: String },
}

/// Rows keyed by (`Patient_ID`, `CT`).
pub type Table = BTreeMap<(String, String), Vec<String>>;

/// Parses a metrics CSV (header + rows) from text; `path` names it in errors.
pub fn parse_rows(path: &Path, text: &str) -> Result<Vec<Vec<String>>, MergeError> {
    let bad = |detail: String| MergeError::BadCsv {
        path: path.to_path_buf(),
        detail,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| bad(e.to_string()))?
        .iter()
        .map(str::to_string)
        .collect();
    let want = csv_header();
    if header != want {
        let detail = match header.iter().zip(&want).position(|(a, b)| a != b) {
            Some(i) => format!(
                "column {} is {:?}, expected {:?}",
                i + 1,
                header[i],
                want[i]
            ),
            None => format!("{} columns, expected {}", header.len(), want.len()),
        };
        return Err(MergeError::WrongHeader {
            path: path.to_path_buf(),
            detail,
        });
    }
    let mut rows = Vec::new();
    for (line, rec) in reader.records().enumerate() {
        let rec = rec.map_err(|e| bad(format!("row {}: {e}", line + 1)))?;
        let row: Vec<String> = rec.iter().map(str::to_string).collect();
        if row[0].is_empty() || row[1].is_empty() {
            return Err(bad(format!("row {}: empty Patient_ID or CT", line + 1)));
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Inserts rows, replacing any row with the same key.
pub fn upsert(table: &mut Table, rows: Vec<Vec<String>>) {
    for row in rows {
        table.insert((row[0].clone(), row[1].clone()), row);
    }
}

/// The CSV text of a table: header, then rows sorted by key.
pub fn render(table: &Table) -> String {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    let _ = w.write_record(csv_header());
    for row in table.values() {
        let _ = w.write_record(row);
    }
    let bytes = w.into_inner().unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Every `*.csv` under `dir`, in sorted path order (so later files win deterministically).
pub fn csv_files(dir: &Path) -> Result<Vec<PathBuf>, MergeError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|source| MergeError::Io {
            path: d.clone(),
            source,
        })?;
        for e in entries {
            let e = e.map_err(|source| MergeError::Io {
                path: d.clone(),
                source,
            })?;
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "csv") {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Merges every row file under `dir` into `output` (whose existing rows are kept unless replaced),
/// writing it atomically. Returns the number of rows in the result.
pub fn merge_dir(dir: &Path, output: &Path) -> Result<usize, MergeError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| MergeError::Io { path, source }
    };
    let mut table = Table::new();
    if output.exists() {
        let text = std::fs::read_to_string(output).map_err(io(output))?;
        upsert(&mut table, parse_rows(output, &text)?);
    }
    for file in csv_files(dir)? {
        if file == output {
            continue;
        }
        let text = std::fs::read_to_string(&file).map_err(io(&file))?;
        upsert(&mut table, parse_rows(&file, &text)?);
    }
    let parent = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let tmp = tempfile::NamedTempFile::new_in(parent).map_err(io(parent))?;
    std::fs::write(tmp.path(), render(&table)).map_err(io(output))?;
    statapp_volume::publish(tmp, output).map_err(io(output))?;
    Ok(table.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(p: &str, m: &str, v: &str) -> Vec<String> {
        let mut r = vec![p.to_string(), m.to_string()];
        r.extend(std::iter::repeat_n(v.to_string(), csv_header().len() - 2));
        r
    }

    #[test]
    fn upsert_sorts_and_replaces() {
        let mut t = Table::new();
        upsert(&mut t, vec![row("b", "m1", "1"), row("a", "m2", "2")]);
        upsert(&mut t, vec![row("b", "m1", "3")]);
        let text = render(&t);
        let rows = parse_rows(Path::new("x.csv"), &text).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0][0], "a");
        assert_eq!(rows[1][2], "3");
    }

    #[test]
    fn wrong_header_is_named() {
        let err = parse_rows(Path::new("bad.csv"), "Patient_ID,CT,DICE\n").unwrap_err();
        assert!(err.to_string().contains("bad.csv"), "{err}");
        assert!(matches!(err, MergeError::WrongHeader { .. }));
    }
}
