//! The fused Flex AdamW update against the op-by-op one it replaces (same formula): three steps on
//! a small module with decayed and undecayed parameters, clipping active, with and without bias
//! correction. Its own test binary: the switch is process-wide.

#![allow(non_snake_case)] // `LayerNorm` mirrors the checkpoint field names, as in the model.

use burn::backend::{Autodiff, Flex};
use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::prelude::*;
use deberta_model::fast;
use deberta_train::optim::{AdamW, AdamWConfig};

type B = Autodiff<Flex>;

#[derive(Module, Debug)]
struct Net<B: Backend> {
    dense: Linear<B>,
    LayerNorm: LayerNorm<B>,
}

fn steps(fused: bool, bias_correction: bool) -> Vec<f32> {
    fast::set_enabled(fused);
    let device = Default::default();
    B::seed(&device, 11);
    let mut net = Net::<B> {
        dense: LinearConfig::new(6, 5).init(&device),
        LayerNorm: LayerNormConfig::new(5).init(&device),
    };
    let config = AdamWConfig { bias_correction, max_grad_norm: Some(0.5), ..Default::default() };
    let mut opt = AdamW::<B>::new(config);
    let x = Tensor::<B, 2>::from_floats(
        [[0.3, -1.2, 0.5, 2.0, -0.7, 0.1], [1.1, 0.4, -0.9, 0.0, 0.6, -1.5]],
        &device,
    );
    for step in 0..3 {
        let loss =
            (net.LayerNorm.forward(net.dense.forward(x.clone())) * (step as f32 + 1.0)).powi_scalar(3).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        net = opt.step(1e-2, net, grads).0;
    }
    let mut values = net.dense.weight.val().into_data().to_vec::<f32>().unwrap();
    values.extend(net.dense.bias.unwrap().val().into_data().to_vec::<f32>().unwrap());
    values.extend(net.LayerNorm.gamma.val().into_data().to_vec::<f32>().unwrap());
    values
}

#[test]
fn fused_adamw_matches_the_generic_update() {
    for bias_correction in [false, true] {
        let generic = steps(false, bias_correction);
        let fused = steps(true, bias_correction);
        let gap = generic.iter().zip(&fused).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(gap <= 1e-6, "bias_correction {bias_correction}: max |generic - fused| = {gap}");
    }
}
