//! Prepared training data for the worker tests.

use statapp_nnunet::dataset::CaseSet;
use statapp_nnunet::prepare::{PrepareRequest, prepare_dataset};
use std::path::{Path, PathBuf};

/// `cases` small phantoms of dataset `seed`, prepared for `annotator` under `root/prepared` with a
/// 16 x 32 x 32 `3d_cpu` patch.
pub fn prepared(root: &Path, seed: u64, cases: usize, annotator: usize) -> PathBuf {
    let raw = root.join("raw");
    for i in 0..cases {
        statapp_synth::write_bucket_case(
            &raw,
            &statapp_synth::generate(seed, i, statapp_synth::Size::Small),
        )
        .unwrap();
    }
    let out = root.join("prepared");
    let req = PrepareRequest {
        annotator,
        cases: CaseSet::All,
        cpu_patch: [16, 32, 32],
        cpu_spacing_factor: 2.0,
        dataset_name: format!("Dataset475_CURVAS_ANNO{annotator}"),
    };
    prepare_dataset(&raw, &out, &req, &mut |_, _, _| {}).unwrap();
    out
}
