//! Gradient clipping by the global norm, as `torch.nn.utils.clip_grad_norm_(params, 12)` in
//! nnU-Net's trainer: the norm over all gradients together; when it exceeds `max_norm`, every
//! gradient is scaled by `max_norm / (norm + 1e-6)`. (burn's own clipping works per tensor.)

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

struct SquaredNorms<'a> {
    grads: &'a GradientsParams,
    sum: f64,
}

impl ModuleVisitor for SquaredNorms<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            let sq: f32 = (g.clone() * g).sum().into_scalar();
            self.sum += f64::from(sq);
        }
    }
}

struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads.register(param.id, g * self.factor);
        }
    }
}

/// Clips `grads` of `module`'s parameters to a global norm of at most `max_norm`; returns the
/// gradients and their norm before clipping.
pub fn clip_global_norm<M: Module>(
    module: &M,
    mut grads: GradientsParams,
    max_norm: f64,
) -> (GradientsParams, f64) {
    let mut norms = SquaredNorms {
        grads: &grads,
        sum: 0.0,
    };
    module.visit(&mut norms);
    let total = norms.sum.sqrt();
    let factor = max_norm / (total + 1e-6);
    if factor < 1.0 {
        let mut scale = Scale {
            grads: &mut grads,
            factor,
        };
        module.visit(&mut scale);
    }
    (grads, total)
}
