//! The `statapp` binary as a user runs it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

fn statapp(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_statapp"))
        .args(args)
        .output()
        .expect("statapp runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn every_command_has_help() {
    for cmd in [
        vec![],
        vec!["synth"],
        vec!["inspect"],
        vec!["preview"],
        vec!["bench"],
        vec!["bench", "nifti"],
    ] {
        let mut args = cmd.clone();
        args.push("--help");
        let o = statapp(&args);
        assert!(o.status.success(), "{cmd:?}: {}", text(&o));
        assert!(text(&o).contains("Usage"), "{cmd:?}");
    }
}

#[test]
fn synth_writes_both_layouts_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    let out = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let run = |o: &str, extra: &[&str]| {
        let mut args = vec![
            "synth", "--cases", "2", "--size", "small", "--seed", "3", "--out", o,
        ];
        args.extend_from_slice(extra);
        let r = statapp(&args);
        assert!(r.status.success(), "{}", text(&r));
        r
    };
    let r = run(&out("a"), &["--report"]);
    assert!(text(&r).contains("pairwise Dice"), "{}", text(&r));
    run(&out("b"), &[]);
    for case in ["case_000", "case_001"] {
        for f in ["image", "annotation_1", "annotation_2", "annotation_3"] {
            let rel = format!("incoming/{case}/{f}.nii.gz");
            let a = std::fs::read(dir.path().join("a").join(&rel)).unwrap();
            let b = std::fs::read(dir.path().join("b").join(&rel)).unwrap();
            assert_eq!(a, b, "{rel} differs between two runs with the same seed");
        }
    }
    run(&out("nn"), &["--layout", "nnunet", "--annotator", "2"]);
    let ds = dir.path().join("nn/Dataset475_CURVAS_ANNO2");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ds.join("dataset.json")).unwrap()).unwrap();
    assert_eq!(json["numTraining"], 2);
    assert_eq!(json["labels"]["pancreas"], 1);
    assert_eq!(json["channel_names"]["0"], "CT");
    let read = |p: &Path| statapp_volume_read(p);
    assert_eq!(
        read(&ds.join("labelsTr/case_001.nii.gz")),
        read(&dir.path().join("a/incoming/case_001/annotation_2.nii.gz"))
    );
    assert!(ds.join("imagesTr/case_001_0000.nii.gz").is_file());
}

/// Decompressed bytes of a file (headers and data), to compare contents across layouts.
fn statapp_volume_read(p: &Path) -> Vec<u8> {
    let o = statapp(&["inspect", &p.to_string_lossy()]);
    assert!(o.status.success(), "{}", text(&o));
    // the label counts and geometry lines identify the content; drop the file name line
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.starts_with("file"))
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes()
}

#[test]
fn inspect_reports_geometry_and_labels() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/volume/tests/fixtures");
    let o = statapp(&[
        "inspect",
        &fixture.join("labels_u8.nii.gz").to_string_lossy(),
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("shape zyx    [5, 6, 7]"), "{t}");
    assert!(t.contains("labels"), "{t}");
    assert!(t.contains("uint8"), "{t}");
}

#[test]
fn corrupt_files_fail_cleanly_naming_the_file() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/volume/tests/fixtures");
    for (name, words) in [
        ("truncated.nii.gz", "truncated"),
        ("random_bytes.nii", "not a NIfTI"),
        ("four_d.nii.gz", "3-D"),
    ] {
        let o = statapp(&["inspect", &fixture.join(name).to_string_lossy()]);
        let t = text(&o);
        assert!(!o.status.success(), "{name}: {t}");
        assert!(t.contains(name) && t.contains(words), "{name}: {t}");
        assert!(!t.contains("panicked"), "{name}: {t}");
    }
}
