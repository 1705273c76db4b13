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
    let mut config = plans.configuration(&info.configuration).unwrap().clone();
    // rows stay rows (1 mm both), the plane is resampled from 1.25 mm to 1 mm
    config.spacing = [1.0, 1.25, 1.25];
    let props = CaseProperties {
        spacing: [1.0, 1.0, 1.0],
        shape_before_cropping: [14, 34, 30],
        bbox_used_for_cropping: [[2, 12], [1, 31], [2, 29]],
        shape_after_cropping_and_before_resampling: [10, 30, 27],
    };
    let logits = Array4::from_shape_fn((4, 10, 24, 22), |(c, z, y, x)| {
        ((c * 7 + z * 5 + y * 3 + x) as f32 * 0.37).sin() * (2.0 + c as f32)
    });
    assert!(RowExport::supported(&plans, &props, [10, 24, 22]));
    let geometry = Geometry::axis_aligned([14, 34, 30], [1.0, 1.0, 1.0], [0.0; 3]);
    let opts = PredictOptions::default();
    let record = PredictionRecord::new(&info, "c", &bytes, &opts);
    let whole = export_logits(&logits, &plans, &config, &props, Accumulation::Fixed).unwrap();
    let want = encode_prediction(&info, whole, &geometry, &record).unwrap();
    for rows in [1, 3, 10] {
        let mut ex =
            RowExport::new(&info, &config, &props, &geometry, Accumulation::Fixed).unwrap();
        for block in row_blocks(&logits, rows) {
            ex.push(block).unwrap();
        }
        let got = ex.finish(&record).unwrap();
        assert_eq!(got.len(), want.len());
        for ((a, x), (b, y)) in got.iter().zip(&want) {
            assert_eq!(a, b);
            let gunzip = |b: &[u8]| {
                let mut out = Vec::new();
                std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(b), &mut out)
                    .unwrap();
                out
            };
            if a.ends_with(".gz") {
                let (u, v) = (gunzip(x), gunzip(y));
                let first = u.iter().zip(&v).position(|(p, q)| p != q);
                assert!(
                    u == v,
                    "{a}: content differs with blocks of {rows} rows at byte {first:?} of {}",
                    u.len()
                );
            }
            assert!(x == y, "{a} differs with blocks of {rows} rows");
        }
    }
}
