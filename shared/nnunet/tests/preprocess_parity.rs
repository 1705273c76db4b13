//! Fingerprint, plans and preprocessing against nnunetv2 2.8.1 run on the same synthetic dataset
//! (`statapp synth --cases 4 --size small --seed 475 --layout nnunet --annotator 1`, then
//! nnUNetv2_extract_fingerprint / plan_experiment / preprocess; `tools/nnunet_reference.py dataset`).
//!
//! Tolerances, and why:
//! * spacings, shapes, crop box: exact.
//! * foreground mean and std: nnU-Net draws 10^8 random samples (sampling error about 0.005 HU);
//!   we use the exact per-case-weighted values: within 0.05 HU.
//! * min, max, median, 0.5/99.5 percentiles: integer HU, exact.
//! * preprocessed intensities: the cubic spline is scipy's up to the prefilter boundary
//!   initialisation on 12 padded samples and float summation order: within 1e-4 (z-score units).
//! * preprocessed labels: linear per-label interpolation and argmax: identical voxels >= 99.9%.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ndarray::Array3;
use serde_json::Value;
use statapp_nnunet::plans::plan_from_fingerprint;
use statapp_nnunet::preprocess::{
    IntensityProperties, case_fingerprint, dataset_fingerprint, preprocess,
};
use statapp_synth::{Size, generate};
use statapp_volume::{ReadOptions, read_nifti};
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/phantoms")
}

fn json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join(name)).unwrap()).unwrap()
}

struct Case {
    image: Array3<f32>,
    labels: Array3<u8>,
    spacing: [f64; 3],
}

fn cases() -> Vec<Case> {
    (0..4)
        .map(|i| {
            let p = generate(475, i, Size::Small);
            Case {
                image: p.ct.data().mapv(f32::from),
                labels: p.annotations[0].data().clone(),
                spacing: p.ct.geometry().spacing_zyx(),
            }
        })
        .collect()
}

#[test]
fn fingerprint_and_plans_match_nnunet() {
    let cases = cases();
    let fps: Vec<_> = cases
        .iter()
        .map(|c| case_fingerprint(&c.image, &c.labels, c.spacing))
        .collect();
    let fp = dataset_fingerprint(&fps);
    let want = json("dataset_fingerprint.json");
    let spacings: Vec<[f64; 3]> = serde_json::from_value(want["spacings"].clone()).unwrap();
    let shapes: Vec<[usize; 3]> =
        serde_json::from_value(want["shapes_after_crop"].clone()).unwrap();
    assert_eq!(fp.spacings, spacings);
    assert_eq!(fp.shapes_after_crop, shapes);
    assert_eq!(
        fp.median_relative_size_after_cropping,
        want["median_relative_size_after_cropping"]
            .as_f64()
            .unwrap()
    );
    let got = &fp.foreground_intensity_properties_per_channel["0"];
    let w: IntensityProperties =
        serde_json::from_value(want["foreground_intensity_properties_per_channel"]["0"].clone())
            .unwrap();
    eprintln!("ours {got:?}\nnnU-Net {w:?}");
    assert!(
        (got.mean - w.mean).abs() < 0.05,
        "mean {} vs {}",
        got.mean,
        w.mean
    );
    assert!(
        (got.std - w.std).abs() < 0.05,
        "std {} vs {}",
        got.std,
        w.std
    );
    assert_eq!((got.min, got.max), (w.min, w.max));
    assert_eq!(got.median, w.median);
    assert_eq!(
        (got.percentile_00_5, got.percentile_99_5),
        (w.percentile_00_5, w.percentile_99_5)
    );

    let plans = json("nnUNetPlans.json");
    let cfg = &plans["configurations"]["3d_fullres"];
    let (plan, forward, _) = plan_from_fingerprint(&fp.spacings, &fp.shapes_after_crop, 4, 4);
    assert_eq!(
        forward.to_vec(),
        serde_json::from_value::<Vec<usize>>(plans["transpose_forward"].clone()).unwrap()
    );
    assert_eq!(
        plan.spacing.to_vec(),
        serde_json::from_value::<Vec<f64>>(cfg["spacing"].clone()).unwrap()
    );
    assert_eq!(
        plan.patch_size.to_vec(),
        serde_json::from_value::<Vec<usize>>(cfg["patch_size"].clone()).unwrap()
    );
    assert_eq!(plan.batch_size as u64, cfg["batch_size"].as_u64().unwrap());
    let strides: Vec<[usize; 3]> =
        serde_json::from_value(cfg["architecture"]["arch_kwargs"]["strides"].clone()).unwrap();
    assert_eq!(plan.topology.strides, strides);
}

#[test]
fn preprocessed_case_matches_nnunet() {
    let c = &cases()[0];
    let plans = json("nnUNetPlans.json");
    let target: [f64; 3] =
        serde_json::from_value(plans["configurations"]["3d_fullres"]["spacing"].clone()).unwrap();
    let props: IntensityProperties =
        serde_json::from_value(plans["foreground_intensity_properties_per_channel"]["0"].clone())
            .unwrap();
    let out = preprocess(&c.image, Some(&c.labels), c.spacing, target, &props);
    let meta = json("case_000_properties.json");
    let bbox: [[usize; 2]; 3] =
        serde_json::from_value(meta["bbox_used_for_cropping"].clone()).unwrap();
    assert_eq!(out.properties.bbox_used_for_cropping, bbox);
    let data = read_nifti(dir().join("case_000_data.nii.gz"), &ReadOptions::default())
        .unwrap()
        .into_f32();
    assert_eq!(out.data.dim(), data.data().dim(), "preprocessed shape");
    let max_diff = out
        .data
        .iter()
        .zip(data.data().iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    eprintln!("max |ours - nnU-Net| = {max_diff}");
    assert!(max_diff < 1e-4, "max difference {max_diff}");
    let seg = read_nifti(dir().join("case_000_seg.nii.gz"), &ReadOptions::default())
        .unwrap()
        .to_f32();
    let ours = out.seg.unwrap();
    let same = ours
        .iter()
        .zip(seg.data().iter())
        .filter(|(a, b)| f32::from(**a) == **b)
        .count();
    let frac = same as f64 / ours.len() as f64;
    eprintln!("label agreement {frac}");
    assert!(frac >= 0.999, "label agreement {frac}");
}

#[test]
fn nnunet_plans_read_and_round_trip() {
    use statapp_nnunet::plans_file::Plans;
    let theirs = Plans::from_json(&json("nnUNetPlans.json")).unwrap();
    let cfg = theirs.configuration("3d_fullres").unwrap();
    assert_eq!(cfg.patch_size, [64, 96, 96]);
    assert_eq!(cfg.strides.len(), 5);
    assert!(!theirs.configurations.contains_key("2d"));
    // the 2-D configuration is kept aside with its reason, and not written back
    assert!(theirs.unsupported["2d"].contains("Conv2d"));
    let back = Plans::from_json(&theirs.to_json()).unwrap();
    assert!(back.unsupported.is_empty());
    let runnable = Plans {
        unsupported: Default::default(),
        ..theirs
    };
    assert_eq!(back, runnable);
}

/// A network that outputs the one-hot preprocessed labels, mapped back onto the original grid,
/// must reproduce the original labels up to resampling.
#[test]
fn inverse_transform_restores_the_original_labels() {
    use statapp_nnunet::preprocess::probabilities_to_original;
    for (i, c) in cases().iter().enumerate().take(2) {
        let plans = json("nnUNetPlans.json");
        let target: [f64; 3] =
            serde_json::from_value(plans["configurations"]["3d_fullres"]["spacing"].clone())
                .unwrap();
        let props: IntensityProperties = serde_json::from_value(
            plans["foreground_intensity_properties_per_channel"]["0"].clone(),
        )
        .unwrap();
        let pre = preprocess(&c.image, Some(&c.labels), c.spacing, target, &props);
        let seg = pre.seg.unwrap();
        let onehot: Vec<Array3<f32>> = (0..4)
            .map(|k| seg.mapv(|v| if v == k { 1.0 } else { 0.0 }))
            .collect();
        let back = probabilities_to_original(&onehot, &pre.properties, target);
        assert_eq!(back[0].dim(), c.labels.dim());
        let labels = Array3::from_shape_fn(c.labels.dim(), |idx| {
            (0..4)
                .max_by(|a, b| back[*a][idx].total_cmp(&back[*b][idx]).then(b.cmp(a)))
                .unwrap() as u8
        });
        for k in 1..=3u8 {
            let (mut inter, mut total) = (0usize, 0usize);
            for (a, b) in labels.iter().zip(c.labels.iter()) {
                inter += usize::from(*a == k && *b == k);
                total += usize::from(*a == k) + usize::from(*b == k);
            }
            let dice = 2.0 * inter as f64 / total as f64;
            eprintln!("case {i} label {k}: Dice {dice:.4}");
            assert!(dice > 0.93, "case {i} label {k}: Dice {dice}");
        }
    }
}
