//! Interoperability with nibabel, the reference NIfTI implementation, in both directions.
//!
//! * Files nibabel wrote (`tools/make_nifti_fixtures.py`) must read with identical values and affine.
//! * Files we write must read back in nibabel with identical values, affine and pixdim
//!   (`tools/check_nibabel_read.py`). That half needs Python with nibabel: it is skipped with a
//!   message when none is found, unless `STATAPP_REQUIRE_PYTHON=1` (set by `tools/test.sh` and CI).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ndarray::Array3;
use serde_json::{Value, json};
use statapp_volume::{
    Geometry, ReadOptions, Scaling, Volume, VolumeError, WriteOptions, read_nifti, write_nifti,
    write_nifti_with,
};
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn as_f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn reads_what_nibabel_wrote() {
    let exp = expected();
    let good = exp["good"].as_object().unwrap();
    assert!(good.len() >= 10);
    for (name, want) in good {
        let img = read_nifti(fixtures().join(name), &ReadOptions::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let g = &img.geometry;
        let shape: Vec<usize> = want["shape_zyx"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(g.shape_zyx().to_vec(), shape, "{name} shape");
        assert_eq!(
            img.data.type_name(),
            want["dtype"].as_str().unwrap(),
            "{name} dtype"
        );
        // Values: nibabel computes stored * slope + inter in f64; we round that once to f32.
        let values = img.to_f32();
        let want_values = as_f64s(&want["values_zyx"]);
        assert_eq!(values.data().len(), want_values.len());
        for (got, w) in values.data().iter().zip(&want_values) {
            assert_eq!(*got, *w as f32, "{name} value");
        }
        // Affine: nibabel's choice (sform, else qform) from the same f32 fields; the qform path
        // goes through the quaternion, so allow f32 round-off.
        let affine = g.affine();
        let want_affine: Vec<Vec<f64>> = want["affine"]
            .as_array()
            .unwrap()
            .iter()
            .map(as_f64s)
            .collect();
        for r in 0..4 {
            for c in 0..4 {
                assert!(
                    (affine[r][c] - want_affine[r][c]).abs() < 1e-5,
                    "{name} affine[{r}][{c}] {} vs {}",
                    affine[r][c],
                    want_affine[r][c]
                );
            }
        }
        let pixdim = as_f64s(&want["pixdim"]);
        assert_eq!(f64::from(g.pixdim_ijk[0]), pixdim[1], "{name} pixdim");
        assert_eq!(
            g.spacing_zyx(),
            [pixdim[3], pixdim[2], pixdim[1]],
            "{name} spacing"
        );
        let slope = want["scl_slope"].as_f64();
        match img.scaling {
            Some(Scaling { slope: s, inter }) => {
                assert_eq!(Some(f64::from(s)), slope, "{name} slope");
                assert_eq!(want["scl_inter"].as_f64(), Some(f64::from(inter)));
            }
            None => assert!(slope.is_none() || slope == Some(1.0), "{name} scaling"),
        }
    }
}

#[test]
fn bad_files_give_typed_errors_naming_the_file() {
    let exp = expected();
    for (name, kind) in exp["bad"].as_object().unwrap() {
        let err = read_nifti(fixtures().join(name), &ReadOptions::default())
            .err()
            .unwrap_or_else(|| panic!("{name} should fail"));
        let got = match &err {
            VolumeError::Truncated { .. } => "Truncated",
            VolumeError::NotNifti { .. } => "NotNifti",
            VolumeError::NotThreeDimensional { .. } => "NotThreeDimensional",
            VolumeError::NonFinite { .. } => "NonFinite",
            VolumeError::UnsupportedDatatype { .. } => "UnsupportedDatatype",
            VolumeError::InvalidHeader { .. } => "InvalidHeader",
            other => panic!("{name}: unexpected {other:?}"),
        };
        assert_eq!(got, kind.as_str().unwrap(), "{name}: {err}");
        assert!(err.to_string().contains(name.as_str()), "{err}");
    }
}

#[test]
fn size_limit_is_enforced_before_reading_data() {
    let opts = ReadOptions {
        max_voxels: 100,
        ..ReadOptions::default()
    };
    let err = read_nifti(fixtures().join("ct_i16.nii.gz"), &opts).unwrap_err();
    assert!(
        matches!(err, VolumeError::TooLarge { voxels: 210, .. }),
        "{err}"
    );
}

#[test]
fn labels_are_validated() {
    let img = read_nifti(fixtures().join("labels_u8.nii.gz"), &ReadOptions::default()).unwrap();
    let labels = img.to_labels(3).unwrap();
    assert!(labels.data().iter().any(|v| *v == 3));
    let err = img.to_labels(2).unwrap_err();
    assert!(matches!(err, VolumeError::InvalidLabel { value, .. } if value == 3.0));
    let ct = read_nifti(fixtures().join("ct_i16.nii.gz"), &ReadOptions::default()).unwrap();
    assert!(ct.to_labels(3).is_err());
}

/// Looks for a Python interpreter with nibabel; `None` means "skip".
fn python_with_nibabel() -> Option<String> {
    let python = std::env::var("STATAPP_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&python)
        .args(["-c", "import nibabel"])
        .status()
        .is_ok_and(|s| s.success());
    let required = std::env::var("STATAPP_REQUIRE_PYTHON").is_ok_and(|v| v == "1");
    match (ok, required) {
        (true, _) => Some(python),
        (false, true) => panic!("STATAPP_REQUIRE_PYTHON=1 but {python} cannot import nibabel"),
        (false, false) => {
            eprintln!("SKIPPED: {python} cannot import nibabel (run tools/test.sh)");
            None
        }
    }
}

fn oblique_geometry(shape_zyx: [usize; 3]) -> Geometry {
    let mut g = Geometry::axis_aligned(shape_zyx, [2.5, 0.85, 0.7], [-120.5, 33.25, -410.0]);
    // A rotation about an oblique axis, written consistently into qform and sform.
    g.quatern_bcd = [0.1, -0.05, 0.2];
    g.qfac = -1.0;
    let q = g.qform_affine();
    for r in 0..3 {
        for c in 0..4 {
            g.srow[r][c] = q[r][c] as f32;
        }
    }
    g.sform_code = 2;
    g
}

#[test]
fn nibabel_reads_what_we_wrote() {
    let Some(python) = python_with_nibabel() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let shape = [5, 6, 7];
    let mut manifest = serde_json::Map::new();
    let mut record = |name: &str, real: Vec<f64>, g: &Geometry, dtype: &str| {
        let affine: Vec<Vec<f64>> = g.affine().iter().map(|r| r.to_vec()).collect();
        let p = g.pixdim_ijk;
        manifest.insert(
            name.to_string(),
            json!({
                "shape_zyx": g.shape_zyx(),
                "values_zyx": real,
                "affine": affine,
                "pixdim": [g.qfac, p[0], p[1], p[2]],
                "dtype": dtype,
                "codes": [g.qform_code, g.sform_code],
            }),
        );
    };
    let aligned = Geometry::axis_aligned(shape, [3.0, 0.8, 0.75], [10.0, -5.0, 2.0]);
    let oblique = oblique_geometry(shape);
    let idx = |z: usize, y: usize, x: usize| (z * 42 + y * 7 + x) as i64;

    let labels = Array3::from_shape_fn((5, 6, 7), |(z, y, x)| (idx(z, y, x) % 4) as u8);
    let ct = Array3::from_shape_fn((5, 6, 7), |(z, y, x)| (idx(z, y, x) * 37 - 1024) as i16);
    let real = Array3::from_shape_fn((5, 6, 7), |(z, y, x)| (idx(z, y, x) as f32).sin() * 123.4);
    let prob = Array3::from_shape_fn((5, 6, 7), |(z, y, x)| (idx(z, y, x) * 311 % 65536) as u16);

    for ext in ["nii", "nii.gz"] {
        let name = format!("labels_u8.{ext}");
        let v = Volume::new(labels.clone(), aligned.clone()).unwrap();
        write_nifti(dir.path().join(&name), &v).unwrap();
        record(
            &name,
            labels.iter().map(|v| f64::from(*v)).collect(),
            &aligned,
            "uint8",
        );

        let name = format!("ct_i16.{ext}");
        let v = Volume::new(ct.clone(), oblique.clone()).unwrap();
        write_nifti(dir.path().join(&name), &v).unwrap();
        record(
            &name,
            ct.iter().map(|v| f64::from(*v)).collect(),
            &oblique,
            "int16",
        );

        let name = format!("real_f32.{ext}");
        let v = Volume::new(real.clone(), oblique.clone()).unwrap();
        write_nifti(dir.path().join(&name), &v).unwrap();
        record(
            &name,
            real.iter().map(|v| f64::from(*v)).collect(),
            &oblique,
            "float32",
        );

        let name = format!("prob_u16_scaled.{ext}");
        let scaling = Scaling {
            slope: 1.0 / 65535.0,
            inter: 0.0,
        };
        let v = Volume::new(prob.clone(), aligned.clone()).unwrap();
        let opts = WriteOptions {
            scaling: Some(scaling),
            ..WriteOptions::default()
        };
        write_nifti_with(dir.path().join(&name), &v, &opts).unwrap();
        let slope = f64::from(scaling.slope);
        record(
            &name,
            prob.iter().map(|v| f64::from(*v) * slope).collect(),
            &aligned,
            "uint16",
        );
        // and we read our own file back with the same values and geometry
        let back = read_nifti(dir.path().join(&name), &ReadOptions::default()).unwrap();
        assert_eq!(back.geometry, aligned);
        assert_eq!(back.scaling, Some(scaling));
    }
    std::fs::write(
        dir.path().join("manifest.json"),
        serde_json::to_string(&Value::Object(manifest)).unwrap(),
    )
    .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/check_nibabel_read.py");
    let out = Command::new(python)
        .arg(script)
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nibabel disagrees:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 8);
}

#[test]
fn round_trip_preserves_geometry_and_values() {
    let dir = tempfile::tempdir().unwrap();
    let g = oblique_geometry([3, 4, 5]);
    let data = Array3::from_shape_fn((3, 4, 5), |(z, y, x)| (z * 100 + y * 10 + x) as f32 - 0.5);
    let v = Volume::new(data, g).unwrap();
    for name in ["a.nii", "a.nii.gz"] {
        let path = dir.path().join(name);
        write_nifti(&path, &v).unwrap();
        let back = read_nifti(&path, &ReadOptions::default()).unwrap();
        assert_eq!(back.to_f32(), v);
    }
    // no temporary files are left behind
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[cfg(unix)]
#[test]
fn written_files_are_world_readable() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let g = Geometry::axis_aligned([1, 1, 2], [1.0; 3], [0.0; 3]);
    let v = Volume::new(Array3::<u8>::zeros((1, 1, 2)), g).unwrap();
    let path = dir.path().join("x.nii.gz");
    write_nifti(&path, &v).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o644);
}
