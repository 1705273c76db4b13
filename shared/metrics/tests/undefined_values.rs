//! Undefined is not a crash: empty masks, single-class labels and constant maps give null (NaN)
//! or inf as METRICS.md says, and the row is still written.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use statapp_metrics::{CaseArrays, CaseMeta, Roi, compute, csv_header};

fn meta(dims: [usize; 3]) -> CaseMeta {
    CaseMeta {
        case: None,
        shape_zyx: dims,
        spacing_zyx_mm: [2.0, 0.5, 0.5],
        roi: Roi::whole("annotations (empty mask: no crop)", dims),
        prediction_name: None,
    }
}

#[test]
fn everything_empty() {
    let dims = [2, 3, 4];
    let n = 24;
    let case = CaseArrays {
        dims,
        annotations: [vec![0; n], vec![0; n], vec![0; n]],
        probabilities: [vec![0.0; n], vec![0.0; n], vec![0.0; n]],
        prediction: None,
    };
    let m = compute(case, meta(dims));
    let doc = serde_json::to_value(&m).unwrap();
    for k in ["1", "2", "3"] {
        let o = &doc["organs"][k];
        assert!(o["dice"].is_null(), "no consensus: dice is undefined");
        assert_eq!(o["dice_monai_linewise"], 0.0, "MONAI's all-NaN mean is 0");
        assert!(o["confidence"].is_null());
        assert!(o["hausdorff"]["mean_hd_mm"].is_null(), "both masks empty");
        assert!(o["auroc"]["mean"].is_null(), "single class");
        assert!(o["ncc"].is_null(), "constant maps");
        assert_eq!(o["crps"]["crps_mm3"], 0.0);
        assert_eq!(o["risk_coverage"]["mean_aurc"], 0.0);
    }
    assert!(doc["statapp_compat"]["Hausdorff_1"].is_null());
    assert!(doc["statapp_compat"]["NCC_mean"].is_null());
    // a perfect, confident prediction: ACE 0, but 1.0 with the original's label_binarize bug
    assert_eq!(doc["annotators"]["1"]["ace"], 0.0);
    assert_eq!(doc["statapp_compat"]["ACE_1"], 1.0);
    let row = m.csv_row("p", "m");
    assert_eq!(row.len(), csv_header().len());
    assert_eq!(row[2], "0.0");
    assert_eq!(row[5], "", "CONF_panc is an empty cell");
}

#[test]
fn prediction_missing_an_organ_gives_infinite_distance() {
    let dims = [1, 4, 4];
    let mut ann = vec![0u8; 16];
    ann[5] = 2;
    ann[6] = 2;
    let case = CaseArrays {
        dims,
        annotations: [ann.clone(), ann.clone(), ann],
        probabilities: [vec![0.0; 16], vec![0.25; 16], vec![0.0; 16]],
        prediction: Some(vec![0; 16]),
    };
    let doc = serde_json::to_value(compute(case, meta(dims))).unwrap();
    let kidney = &doc["organs"]["2"];
    assert_eq!(kidney["dice"], 0.0);
    assert_eq!(kidney["hausdorff"]["per_annotator"]["1"]["hd95_mm"], "inf");
    assert_eq!(kidney["hausdorff"]["mean_hd_mm"], "inf");
    assert!(
        doc["statapp_compat"]["Hausdorff_2"].is_null(),
        "statapp would crash: null"
    );
    // all raters agree: sigma = 0, the exact CRPS is |v - mu| (voxels x mm3)
    assert_eq!(kidney["crps"]["crps_vox"], 2.0);
    assert_eq!(kidney["crps"]["crps_statapp_numeric_vox"], 0.0);
}
