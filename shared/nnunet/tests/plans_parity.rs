//! The 3d_fullres planner against nnunetv2 2.8.1's ExperimentPlanner on several fingerprints
//! (`tools/nnunet_reference.py plans`): target spacing, transpose, median shape, patch size,
//! batch size and the network topology must be identical.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use statapp_nnunet::plans::plan_from_fingerprint;

fn arr3<T: Copy>(v: &Value, f: impl Fn(&Value) -> T) -> [T; 3] {
    let a = v.as_array().unwrap();
    [f(&a[0]), f(&a[1]), f(&a[2])]
}

#[test]
fn plans_match_nnunet() {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/plans.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    let scenarios = doc["scenarios"].as_array().unwrap();
    assert!(scenarios.len() >= 6);
    for s in scenarios {
        let name = s["name"].as_str().unwrap();
        let spacings: Vec<[f64; 3]> = s["spacings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| arr3(r, |v| v.as_f64().unwrap()))
            .collect();
        let shapes: Vec<[usize; 3]> = s["shapes_after_crop"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| arr3(r, |v| v.as_u64().unwrap() as usize))
            .collect();
        let n = s["num_training"].as_u64().unwrap() as usize;
        let (plan, forward, _) = plan_from_fingerprint(&spacings, &shapes, n, 4);
        let f64s = |k: &str| arr3(&s[k], |v| v.as_f64().unwrap());
        let usizes = |v: &Value| arr3(v, |x| x.as_u64().unwrap() as usize);
        let target = f64s("target_spacing");
        let spacing_t = forward.map(|a| target[a]);
        assert_eq!(plan.spacing, spacing_t, "{name} spacing");
        assert_eq!(forward, usizes(&s["transpose_forward"]), "{name} transpose");
        assert_eq!(
            plan.median_image_size_in_voxels,
            f64s("median_shape"),
            "{name} median"
        );
        assert_eq!(plan.patch_size, usizes(&s["patch_size"]), "{name} patch");
        assert_eq!(
            plan.batch_size,
            s["batch_size"].as_u64().unwrap() as usize,
            "{name} batch"
        );
        let strides: Vec<[usize; 3]> = s["strides"]
            .as_array()
            .unwrap()
            .iter()
            .map(usizes)
            .collect();
        let kernels: Vec<[usize; 3]> = s["kernel_sizes"]
            .as_array()
            .unwrap()
            .iter()
            .map(usizes)
            .collect();
        assert_eq!(plan.topology.strides, strides, "{name} strides");
        assert_eq!(plan.topology.kernel_sizes, kernels, "{name} kernels");
        let features: Vec<usize> = s["features_per_stage"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(plan.features_per_stage, features, "{name} features");
    }
}
