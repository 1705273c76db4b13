//! What `write_checkpoint` writes, `read_checkpoint` reads back: weights (aliases sharing one
//! storage), trainer name, configuration, fold and mirroring axes.

use statapp_torchfile::{CheckpointOut, StateTensor, Value, read_checkpoint, write_checkpoint};

#[test]
fn written_checkpoint_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoint_final.pth");
    let w = StateTensor {
        shape: vec![2, 1, 1, 1, 3],
        values: vec![0.5, -1.0, 2.25, 3.0, 1e-7, -0.0],
    };
    let b = StateTensor {
        shape: vec![2],
        values: vec![0.25, -4.0],
    };
    let mut ck = CheckpointOut::default();
    let wt = ck.tensor(&w);
    let bt = ck.tensor(&b);
    ck.root = vec![
        (
            "network_weights".into(),
            Value::OrderedDict(vec![
                ("_orig_mod.a.conv.weight".into(), wt.clone()),
                ("a.all_modules.0.weight".into(), wt),
                ("a.conv.bias".into(), bt),
            ]),
        ),
        ("trainer_name".into(), Value::Str("nnUNetTrainer".into())),
        (
            "init_args".into(),
            Value::Dict(vec![
                ("configuration".into(), Value::Str("3d_fullres".into())),
                ("fold".into(), Value::Str("all".into())),
            ]),
        ),
        (
            "inference_allowed_mirroring_axes".into(),
            Value::Tuple(vec![Value::Int(0), Value::Int(2)]),
        ),
        ("_best_ema".into(), Value::Float(0.875)),
        ("current_epoch".into(), Value::Int(5_000_000_000)),
        ("grad_scaler_state".into(), Value::None),
    ];
    write_checkpoint(&path, &ck).unwrap();
    let back = read_checkpoint(&path).unwrap();
    assert_eq!(back.trainer_name, "nnUNetTrainer");
    assert_eq!(back.configuration.as_deref(), Some("3d_fullres"));
    assert_eq!(back.fold.as_deref(), Some("all"));
    assert_eq!(back.mirroring_axes, Some(vec![0, 2]));
    assert_eq!(back.weights.len(), 3);
    assert_eq!(back.weights["a.conv.weight"], w);
    assert_eq!(back.weights["a.all_modules.0.weight"], w);
    assert_eq!(back.weights["a.conv.bias"], b);
}

#[test]
fn a_file_that_is_no_checkpoint_is_a_typed_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoint_final.pth");
    std::fs::write(&path, b"not a zip at all").unwrap();
    let err = read_checkpoint(&path).unwrap_err().to_string();
    assert!(err.contains("checkpoint_final.pth"), "{err}");
}
