//! A real nnU-Net v2 model (trained by nnU-Net's own `nnUNetTrainer_5epochs` on CPU, with a
//! custom `3d_tiny` plan inheriting from 3d_fullres and a non-identity `transpose_forward`;
//! tools/nnunet_model_reference.py) imported unchanged and run as nnUNetPredictor runs it:
//! one forward pass, then whole images with and without mirroring, in nnU-Net's float16
//! accumulation and in statapp's float32 one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use burn::tensor::{Device, Tensor, TensorData};
use statapp_model::checkpoint::load_weights;
use statapp_model::infer::predict_case;
use statapp_model::predict::{Accumulation, PredictOptions};
use statapp_nnunet::plans_file::Plans;
use statapp_nnunet::results::{Which, read_results_folder};
use statapp_volume::{ReadOptions, read_nifti};
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/nnunet_model")
}

fn model_folder() -> PathBuf {
    fixture().join("model/nnUNetTrainer_5epochs__nnUNetPlans__3d_tiny")
}

/// A `.npy` file (version 1, C order, little-endian f2 / f4 / u1) as f32 values and shape.
fn npy(path: &Path) -> (Vec<f32>, Vec<usize>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + len]).unwrap();
    assert!(header.contains("'fortran_order': False"), "{header}");
    let shape_text = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let shape: Vec<usize> = shape_text
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let data = &bytes[10 + len..];
    let values = if header.contains("'<f2'") {
        data.chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect()
    } else if header.contains("'<f4'") {
        data.chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    } else if header.contains("'|u1'") {
        data.iter().map(|v| f32::from(*v)).collect()
    } else {
        panic!("unexpected dtype in {header}")
    };
    (values, shape)
}

fn network_of(folder: &Path) -> (statapp_model::PlainConvUNet, Plans, String) {
    let found = read_results_folder(folder, "ref", None, Which::Final).unwrap();
    let net = load_weights(&found.info.network, &found.checkpoint_file, &Device::flex()).unwrap();
    let plans_json = serde_json::from_slice(&std::fs::read(&found.plans_file).unwrap()).unwrap();
    (
        net,
        Plans::from_json(&plans_json).unwrap(),
        found.info.configuration,
    )
}

fn network() -> (statapp_model::PlainConvUNet, Plans, String) {
    network_of(&model_folder())
}

#[test]
fn the_checkpoint_describes_itself() {
    let found = read_results_folder(&model_folder(), "ref", None, Which::Final).unwrap();
    let info = found.info;
    assert_eq!(info.configuration, "3d_tiny");
    assert_eq!(info.classes, ["background", "pancreas", "kidney", "liver"]);
    assert_eq!(info.mirroring_axes, [0, 1, 2]);
    assert!(info.mirroring);
    assert_eq!(info.network.features, [8, 16, 32]);
    assert_eq!(info.nnunet.unwrap().trainer, "nnUNetTrainer_5epochs");
    let missing = read_results_folder(&model_folder(), "ref", None, Which::Best).unwrap_err();
    assert!(
        missing.to_string().contains("checkpoint_best.pth"),
        "{missing}"
    );
}

#[test]
fn one_forward_pass_matches_pytorch() {
    let (net, _, _) = network();
    let (x, shape) = npy(&fixture().join("expected/patch_input.npy"));
    let (want, want_shape) = npy(&fixture().join("expected/patch_logits.npy"));
    let dims: [usize; 5] = shape.try_into().unwrap();
    let input = Tensor::<5>::from_data(TensorData::new(x, dims), &Device::flex());
    let out = net.predict(input);
    assert_eq!(out.dims().to_vec(), want_shape);
    let got = out.into_data().try_to_vec::<f32>().unwrap();
    let max = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(max <= 1e-4, "logits differ by {max}");
}

struct Comparison {
    max_abs: f32,
    p9999: f32,
    seg_equal: f64,
}

fn compare(case: &str, mirror: bool, accumulation: Accumulation) -> Comparison {
    let suffix = if mirror { "_mirror" } else { "_nomirror" };
    compare_with(
        &model_folder(),
        "expected",
        suffix,
        case,
        mirror,
        accumulation,
    )
}

/// statapp's prediction of `case` with the model in `folder` against nnU-Net's in
/// `expected/<case>_{probabilities,segmentation}<suffix>.npy`.
fn compare_with(
    folder: &Path,
    expected: &str,
    suffix: &str,
    case: &str,
    mirror: bool,
    accumulation: Accumulation,
) -> Comparison {
    let (net, plans, configuration) = network_of(folder);
    let config = plans.configuration(&configuration).unwrap();
    let image = read_nifti(
        fixture().join(format!("images/{case}_0000.nii.gz")),
        &ReadOptions::default(),
    )
    .unwrap()
    .into_f32();
    let axes: &[usize] = if mirror { &[0, 1, 2] } else { &[] };
    let opts = PredictOptions {
        accumulation,
        ..PredictOptions::default()
    }
    .mirror(axes);
    let pred = predict_case(&net, &plans, config, &image, opts, &Device::flex()).unwrap();
    let dir = fixture().join(expected);
    let (want, shape) = npy(&dir.join(format!("{case}_probabilities{suffix}.npy")));
    let (seg, _) = npy(&dir.join(format!("{case}_segmentation{suffix}.npy")));
    assert_eq!(shape[0], pred.probabilities.len());
    assert_eq!(&shape[1..], pred.labels.shape());
    // the fixture holds float16 probabilities: compare against ours rounded the same way
    let mut diffs: Vec<f32> = pred
        .probabilities
        .iter()
        .flat_map(|p| p.iter().copied())
        .zip(&want)
        .map(|(a, b)| (half::f16::from_f32(a).to_f32() - b).abs())
        .collect();
    diffs.sort_by(f32::total_cmp);
    let n = diffs.len();
    let same = pred
        .labels
        .iter()
        .zip(&seg)
        .filter(|(a, b)| f32::from(**a) == **b)
        .count();
    Comparison {
        max_abs: diffs[n - 1],
        p9999: diffs[((n as f64 * 0.9999) as usize).min(n - 1)],
        seg_equal: same as f64 / seg.len() as f64,
    }
}

#[test]
fn float16_accumulation_reproduces_nnunet() {
    for case in ["case_010", "case_011"] {
        for mirror in [true, false] {
            let c = compare(case, mirror, Accumulation::F16);
            eprintln!(
                "f16 {case} mirror={mirror}: max {} p99.99 {} seg {}",
                c.max_abs, c.p9999, c.seg_equal
            );
            assert!(
                c.max_abs <= 2e-3,
                "{case} mirror={mirror}: max abs {}",
                c.max_abs
            );
            assert!(
                c.seg_equal >= 0.99999,
                "{case} mirror={mirror}: {}",
                c.seg_equal
            );
        }
    }
}

#[test]
fn float32_and_exact_accumulation_stay_close_to_nnunet() {
    for (case, acc) in [
        ("case_010", Accumulation::F32),
        ("case_011", Accumulation::F32),
        ("case_010", Accumulation::Fixed),
        ("case_011", Accumulation::Fixed),
    ] {
        for mirror in [true, false] {
            let c = compare(case, mirror, acc);
            eprintln!(
                "{acc:?} {case} mirror={mirror}: max {} p99.99 {} seg {}",
                c.max_abs, c.p9999, c.seg_equal
            );
            assert!(
                c.p9999 <= 3e-3,
                "{case} mirror={mirror}: p99.99 {}",
                c.p9999
            );
            assert!(
                c.seg_equal >= 0.9999,
                "{case} mirror={mirror}: {}",
                c.seg_equal
            );
        }
    }
}

/// `fold_all/checkpoint_final.pth` written by `statapp export-model` from a statapp network
/// (seeded, untrained, on the fixture's plans), loaded and run by nnunetv2's nnUNetPredictor
/// (tools/nnunet_model_reference.py predict-exported): statapp predicts what nnU-Net does.
#[test]
fn an_exported_model_predicts_in_nnunet_as_in_statapp() {
    let folder = fixture().join("exported");
    for case in ["case_010", "case_011"] {
        let c = compare_with(
            &folder,
            "exported_expected",
            "",
            case,
            false,
            Accumulation::F16,
        );
        eprintln!("exported {case}: max {} seg {}", c.max_abs, c.seg_equal);
        assert!(c.max_abs <= 2e-3, "{case}: max abs {}", c.max_abs);
        assert!(c.seg_equal >= 0.99999, "{case}: {}", c.seg_equal);
    }
}

/// Export then import gives back the same weights, classes and mirroring axes, for a model that
/// is not CURVAS-shaped (three classes, mirroring over two axes only).
#[test]
fn export_then_import_round_trips_any_class_count() {
    use statapp_model::checkpoint::{ModelInfo, read_info, save_weights, write_info};
    use statapp_model::nnunet_format::{export_model, import_model};
    use statapp_model::{PlainConvUNet, UNetConfig};
    let (_, plans, configuration) = network();
    let config = plans.configuration(&configuration).unwrap();
    let d = Device::flex();
    let net = PlainConvUNet::new(&UNetConfig::from_configuration(config, 3), 5, &d);
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("three");
    save_weights(&net, &model, "checkpoint_final.bpk").unwrap();
    std::fs::copy(model_folder().join("plans.json"), model.join("plans.json")).unwrap();
    let mut info = ModelInfo::native(
        "three".into(),
        configuration.clone(),
        5,
        UNetConfig::from_configuration(config, 3),
        vec!["checkpoint_final.bpk".into()],
    );
    info.classes = vec!["background".into(), "tumour".into(), "cyst".into()];
    info.mirroring_axes = vec![1, 2];
    write_info(&model, &info).unwrap();
    let folder = tmp.path().join("nnUNetTrainer__nnUNetPlans__3d_tiny");
    export_model(&model, &folder).unwrap();
    let back = import_model(&folder, "again", tmp.path(), None, Which::Final).unwrap();
    let again = read_info(&back).unwrap();
    assert_eq!(again.classes, info.classes);
    assert_eq!(again.mirroring_axes, [1, 2]);
    assert_eq!(again.network, info.network);
    let reloaded = load_weights(&again.network, &back.join("checkpoint_final.bpk"), &d).unwrap();
    assert!(reloaded.parameters() == net.parameters(), "weights changed");
    let image = read_nifti(
        fixture().join("images/case_011_0000.nii.gz"),
        &ReadOptions::default(),
    )
    .unwrap()
    .into_f32();
    let pred = predict_case(
        &reloaded,
        &plans,
        config,
        &image,
        PredictOptions::default(),
        &d,
    )
    .unwrap();
    assert_eq!(pred.probabilities.len(), 3);
    assert!(pred.labels.iter().all(|l| *l < 3));
}
