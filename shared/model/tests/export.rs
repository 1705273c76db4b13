#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The row-block export (streamed NIfTI, what the gather of a fanned-out prediction uses) writes
//! the bytes of the whole-volume export, in-plane resampling, crop box and argmax included.

use ndarray::Array4;
use statapp_model::export::{RowExport, row_blocks};
use statapp_model::infer::export_logits;
use statapp_model::outputs::{PredictionRecord, encode_prediction};
use statapp_model::predict::{Accumulation, PredictOptions};
use statapp_nnunet::plans_file::Plans;
use statapp_nnunet::preprocess::CaseProperties;
use statapp_nnunet::results::{Which, read_results_folder};
use statapp_volume::Geometry;
use std::path::Path;

/// How the image's grid relates to the network's in one export case.
struct Grid {
    what: &'static str,
    plan_spacing: [f64; 3],
    props: CaseProperties,
    /// Network grid (classes, z, y, x).
    net: [usize; 3],
}

fn grids() -> Vec<Grid> {
    vec![
        Grid {
            what: "rows stay rows (1 mm both), the plane resampled from 1.25 mm to 1 mm",
            plan_spacing: [1.0, 1.25, 1.25],
            props: CaseProperties {
                spacing: [1.0, 1.0, 1.0],
                shape_before_cropping: [14, 34, 30],
                bbox_used_for_cropping: [[2, 12], [1, 31], [2, 29]],
                shape_after_cropping_and_before_resampling: [10, 30, 27],
            },
            net: [10, 24, 22],
        },
        Grid {
            what: "0.6 mm slices on a 1 mm plan: rows interpolated linearly (CURVAS)",
            plan_spacing: [1.0, 1.25, 1.25],
            props: CaseProperties {
                spacing: [0.6, 1.0, 1.0],
                shape_before_cropping: [21, 34, 30],
                bbox_used_for_cropping: [[2, 19], [1, 31], [2, 29]],
                shape_after_cropping_and_before_resampling: [17, 30, 27],
            },
            net: [10, 24, 22],
        },
        Grid {
            what: "5 mm slices on a 1 mm plan: rows the separate axis, nearest along rows",
            plan_spacing: [1.0, 1.0, 1.0],
            props: CaseProperties {
                spacing: [5.0, 1.25, 1.25],
                shape_before_cropping: [6, 22, 20],
                bbox_used_for_cropping: [[1, 5], [1, 21], [0, 20]],
                shape_after_cropping_and_before_resampling: [4, 20, 20],
            },
            net: [9, 25, 25],
        },
    ]
}

#[test]
fn row_blocks_export_the_bytes_of_the_whole_volume() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "../../tests/fixtures/nnunet_model/model/nnUNetTrainer_5epochs__nnUNetPlans__3d_tiny",
    );
    let info = read_results_folder(&folder, "m", None, Which::Final)
        .unwrap()
        .info;
    let bytes = std::fs::read(folder.join("plans.json")).unwrap();
    let mut plans = Plans::from_json(&serde_json::from_slice(&bytes).unwrap()).unwrap();
    plans.transpose_forward = [0, 1, 2];
    plans.transpose_backward = [0, 1, 2];
    for grid in grids() {
        let mut config = plans.configuration(&info.configuration).unwrap().clone();
        config.spacing = grid.plan_spacing;
        let props = grid.props;
        let [nz, ny, nx] = grid.net;
        let logits = Array4::from_shape_fn((4, nz, ny, nx), |(c, z, y, x)| {
            ((c * 7 + z * 5 + y * 3 + x) as f32 * 0.37).sin() * (2.0 + c as f32)
        });
        assert!(
            RowExport::supported(&plans, &config, &props, grid.net),
            "{}",
            grid.what
        );
        let shape = props.shape_before_cropping;
        let geometry = Geometry::axis_aligned(shape, props.spacing.map(|v| v as f32), [0.0; 3]);
        let opts = PredictOptions::default();
        let record = PredictionRecord::new(&info, "c", &bytes, &opts);
        let whole = export_logits(&logits, &plans, &config, &props, Accumulation::Fixed).unwrap();
        let want = encode_prediction(&info, whole, &geometry, &record).unwrap();
        for rows in [1, 3, nz] {
            let mut ex =
                RowExport::new(&info, &config, &props, &geometry, Accumulation::Fixed, nz).unwrap();
            for block in row_blocks(&logits, rows) {
                ex.push(block).unwrap();
            }
            let got = ex.finish(&record).unwrap();
            assert_same(
                &got,
                &want,
                &format!("{}, blocks of {rows} rows", grid.what),
            );
        }
    }
}

fn assert_same(got: &[(String, Vec<u8>)], want: &[(String, Vec<u8>)], what: &str) {
    assert_eq!(got.len(), want.len());
    let gunzip = |b: &[u8]| {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(b), &mut out).unwrap();
        out
    };
    for ((a, x), (b, y)) in got.iter().zip(want) {
        assert_eq!(a, b);
        if a.ends_with(".gz") {
            let (u, v) = (gunzip(x), gunzip(y));
            let first = u.iter().zip(&v).position(|(p, q)| p != q);
            assert!(
                u == v,
                "{a}: content differs ({what}) at byte {first:?} of {}",
                u.len()
            );
        }
        assert!(x == y, "{a} differs ({what})");
    }
}
