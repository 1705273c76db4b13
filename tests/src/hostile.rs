//! The hostile-upload corpus (`tests/fixtures/hostile`, written by
//! `tools/make_hostile_corpus.py`): cases that each break one rule of an upload, beside valid
//! controls, and the check that a bucket the pipeline ran on says what each case expects.

use serde_json::Value;
use statapp_pipeline::{Key, ObjectStore};
use std::path::PathBuf;

/// One case of the corpus: its files as uploaded, and the error it must give (`None`: accepted).
#[derive(Debug, Clone)]
pub struct HostileCase {
    pub name: String,
    pub files: Vec<(String, Vec<u8>)>,
    pub expected: Option<Expected>,
}

/// What `errors/<case>.json` must say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub kind: String,
    pub file: String,
    pub field: Option<String>,
}

pub fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/hostile")
}

/// Every case of the corpus, by name.
pub fn corpus() -> Vec<HostileCase> {
    let dir = corpus_dir();
    let text = std::fs::read_to_string(dir.join("expected.json")).expect("expected.json");
    let expected: serde_json::Map<String, Value> = serde_json::from_str(&text).expect("json");
    expected
        .into_iter()
        .map(|(name, e)| {
            let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir.join(&name))
                .expect("case directory")
                .map(|f| {
                    let path = f.expect("entry").path();
                    let file = path.file_name().unwrap().to_string_lossy().to_string();
                    (file, std::fs::read(&path).expect("file"))
                })
                .collect();
            files.sort();
            let text = |k: &str| e[k].as_str().map(str::to_string);
            let expected = text("kind").map(|kind| Expected {
                kind,
                file: format!("incoming/{name}/{}", text("file").expect("file")),
                field: text("field"),
            });
            HostileCase {
                name,
                files,
                expected,
            }
        })
        .collect()
}

/// Every way the bucket disagrees with the corpus: a hostile case without its typed error, with
/// any output under `cases/` or `preprocessed/`; a valid case rejected or not ingested.
pub fn mismatches(store: &dyn ObjectStore, cases: &[HostileCase]) -> Vec<String> {
    let mut out = Vec::new();
    let preprocessed = store.list("preprocessed/").expect("list");
    for c in cases {
        let error = store
            .get(&Key::new(format!("errors/{}.json", c.name)).unwrap())
            .expect("get");
        let ingested = store
            .exists(&Key::new(format!("cases/{}/ingested.json", c.name)).unwrap())
            .expect("exists");
        match (&c.expected, error) {
            (None, Some(e)) => out.push(format!("{}: rejected: {}", c.name, lossy(&e))),
            (None, None) if !ingested => out.push(format!("{}: not ingested", c.name)),
            (None, None) => {}
            (Some(want), None) => out.push(format!("{}: no errors/ entry, want {want:?}", c.name)),
            (Some(want), Some(e)) => out.extend(compare(&c.name, want, &e)),
        }
        if c.expected.is_some() {
            let copied = store.list(&format!("cases/{}/", c.name)).expect("list");
            let pre = preprocessed
                .iter()
                .filter(|k| k.segments().nth(2) == Some(c.name.as_str()));
            if let Some(k) = copied.iter().chain(pre).next() {
                out.push(format!("{}: rejected but {k} was written", c.name));
            }
        }
    }
    out
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

/// The recorded error against the expected one; the message must name the file.
fn compare(case: &str, want: &Expected, got: &[u8]) -> Vec<String> {
    let doc: Value = match serde_json::from_slice(got) {
        Ok(v) => v,
        Err(e) => return vec![format!("{case}: errors/ entry is not JSON: {e}")],
    };
    let s = |k: &str| doc[k].as_str().map(str::to_string);
    let mut out = Vec::new();
    if s("case").as_deref() != Some(case) {
        out.push(format!("{case}: case {:?}", s("case")));
    }
    if s("kind").as_deref() != Some(want.kind.as_str()) {
        out.push(format!("{case}: kind {:?}, want {}", s("kind"), want.kind));
    }
    if s("file").as_deref() != Some(want.file.as_str()) {
        out.push(format!("{case}: file {:?}, want {}", s("file"), want.file));
    }
    if want.field.is_some() && s("field") != want.field {
        out.push(format!(
            "{case}: field {:?}, want {:?}",
            s("field"),
            want.field
        ));
    }
    let message = s("message").unwrap_or_default();
    if !message.contains(&want.file) {
        out.push(format!("{case}: message does not name the file: {message}"));
    }
    out
}
