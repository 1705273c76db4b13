//! Global gradient clipping equals torch's `clip_grad_norm_(params, 12)` on a fixed set of
//! gradients (tests/fixtures/nnunet_model/clip_grad_norm.json, tools/nnunet_model_reference.py).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use statapp_model::train::clip::clip_global_norm;

#[derive(Module, Debug)]
struct Five {
    a: Param<Tensor<5>>,
    b: Param<Tensor<1>>,
    c: Param<Tensor<5>>,
    d: Param<Tensor<1>>,
    e: Param<Tensor<5>>,
}

#[test]
fn global_clipping_equals_torch() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/nnunet_model/clip_grad_norm.json");
    let fx: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let grads = fx["gradients"].as_array().unwrap();
    let vals = |g: &serde_json::Value, k: &str| -> Vec<f32> {
        g[k].as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect()
    };
    let shape = |g: &serde_json::Value| -> Vec<usize> {
        g["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect()
    };
    let d = Device::flex().autodiff();
    let t5 = |i: usize| {
        let s: [usize; 5] = shape(&grads[i]).try_into().unwrap();
        Tensor::<5>::from_data(TensorData::new(vals(&grads[i], "before"), s), &d)
    };
    let t1 = |i: usize| {
        Tensor::<1>::from_data(
            TensorData::new(vals(&grads[i], "before"), [shape(&grads[i])[0]]),
            &d,
        )
    };
    // parameters at zero; the loss sum(p * g) has exactly the fixture's gradients
    let m = Five {
        a: Param::from_tensor(t5(0).zeros_like().require_grad()),
        b: Param::from_tensor(t1(1).zeros_like().require_grad()),
        c: Param::from_tensor(t5(2).zeros_like().require_grad()),
        d: Param::from_tensor(t1(3).zeros_like().require_grad()),
        e: Param::from_tensor(t5(4).zeros_like().require_grad()),
    };
    let loss = (m.a.val() * t5(0)).sum()
        + (m.b.val() * t1(1)).sum()
        + (m.c.val() * t5(2)).sum()
        + (m.d.val() * t1(3)).sum()
        + (m.e.val() * t5(4)).sum();
    let g = GradientsParams::from_grads(loss.backward(), &m);
    let (clipped, total) = clip_global_norm(&m, g, fx["max_norm"].as_f64().unwrap());
    let want_total = fx["total_norm"].as_f64().unwrap();
    assert!(
        (total / want_total - 1.0).abs() < 1e-6,
        "{total} vs {want_total}"
    );
    let ids = [m.a.id, m.b.id, m.c.id, m.d.id, m.e.id];
    for (i, id) in ids.iter().enumerate() {
        let got: Vec<f32> = if shape(&grads[i]).len() == 5 {
            clipped
                .get::<5>(*id)
                .unwrap()
                .into_data()
                .try_to_vec()
                .unwrap()
        } else {
            clipped
                .get::<1>(*id)
                .unwrap()
                .into_data()
                .try_to_vec()
                .unwrap()
        };
        for (a, b) in got.iter().zip(vals(&grads[i], "after")) {
            assert!(
                (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                "tensor {i}: {a} vs {b}"
            );
        }
    }
}
