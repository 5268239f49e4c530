//! The fused training kernels (attention, LayerNorm and GELU, each a forward with its own backward
//! on `Autodiff<Flex>`) against burn's autodiff of the generic op-by-op path: the same loss and the same gradient for every
//! parameter, to 1e-5 of the largest. Dropout is on (both paths draw the same masks from the
//! seeded generator), one row is padded, and the configs cover c2p + p2c with shared or separate
//! position projections, log buckets, a length past the bucket midpoint, the EMD's separate
//! query stream and c2p alone. Its own test binary: the switch is process-wide.

use burn::backend::{Autodiff, Flex};
use burn::module::{ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use deberta_model::loss::{cross_entropy, IGNORE_INDEX};
use deberta_model::{fast, Batch, DebertaConfig, DebertaModel, Head, Logits};

type B = Autodiff<Flex>;

fn config(pos_att_type: &str, share_att_key: bool) -> DebertaConfig {
    DebertaConfig::from_json_str(&format!(
        r#"{{"vocab_size": 50, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 48, "max_position_embeddings": 64, "type_vocab_size": 0,
        "relative_attention": true, "position_buckets": 8, "max_relative_positions": -1,
        "pos_att_type": {pos_att_type}, "norm_rel_ebd": "layer_norm", "share_att_key": {share_att_key},
        "position_biased_input": false, "hidden_act": "gelu", "initializer_range": 0.2,
        "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}}"#
    ))
    .unwrap()
}

/// Three rows of 37 tokens, the second padded after 20.
fn batch(device: &<Flex as burn::tensor::backend::BackendTypes>::Device) -> Batch<B> {
    let (rows, len) = (3, 37);
    let ids: Vec<i64> = (0..rows * len).map(|k| (3 + (k * 11) % 47) as i64).collect();
    let mask: Vec<i64> = (0..rows * len).map(|k| (k / len != 1 || k % len < 20) as i64).collect();
    let t = |v: Vec<i64>| Tensor::<B, 2, Int>::from_data(TensorData::new(v, [rows, len]), device);
    Batch { input_ids: t(ids), attention_mask: t(mask), token_type_ids: None }
}

/// Every parameter's gradient, flattened, in visiting order.
struct Grads<'a> {
    grads: &'a <B as AutodiffBackend>::Gradients,
    path: Vec<String>,
    out: Vec<(String, Vec<f32>)>,
}

impl ModuleVisitor<B> for Grads<'_> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let g =
            param.val().grad(self.grads).map(|g| g.into_data().to_vec::<f32>().unwrap()).unwrap_or_default();
        self.out.push((self.path.join("."), g));
    }
}

/// MLM loss on every fifth position, its value and every parameter's gradient.
fn run(model: &DebertaModel<B>, fused: bool, seed: u64) -> (f32, Vec<(String, Vec<f32>)>) {
    let device = Default::default();
    fast::set_enabled(fused);
    B::seed(&device, seed);
    let b = batch(&device);
    let Some(Logits::Rank3(logits)) = model.forward(&b, None).logits else { panic!("MLM logits expected") };
    let [rows, len, v] = logits.dims();
    let labels = (0..rows * len).map(|k| if k % 5 == 2 { (k % v) as i64 } else { IGNORE_INDEX }).collect();
    let labels = Tensor::<B, 1, Int>::from_data(TensorData::new(labels, [rows * len]), &device);
    let loss = cross_entropy(logits.reshape([rows * len, v]), labels);
    let value = loss.clone().into_scalar();
    let grads = loss.backward();
    let mut visitor = Grads { grads: &grads, path: vec![], out: vec![] };
    model.visit(&mut visitor);
    (value, visitor.out)
}

fn check(name: &str, config: &DebertaConfig, head: Head) {
    let device = Default::default();
    B::seed(&device, 11);
    let model = DebertaModel::<B>::new(config, head, &device);
    // Parameters are initialised on first use, from the same generator as the dropout masks: one
    // run first, so that both compared runs draw the same masks.
    run(&model, false, 5);
    let (loss_generic, generic) = run(&model, false, 5);
    let (loss_fused, fused) = run(&model, true, 5);
    assert!(
        (loss_generic - loss_fused).abs() <= 1e-5 * loss_generic.abs(),
        "{name}: loss {loss_generic} vs {loss_fused}"
    );
    let mut compared = 0;
    let largest = generic.iter().flat_map(|(_, g)| g).fold(0f32, |m, x| m.max(x.abs()));
    for ((path, a), (_, b)) in generic.iter().zip(&fused) {
        assert_eq!(a.len(), b.len(), "{name}: {path}: gradient on one path only");
        // Relative to the parameter's largest gradient, but never below 1% of the model's: some
        // gradients are zero but for rounding (the position-key bias shifts a whole score row,
        // which the softmax ignores) and agree only absolutely.
        let scale = a.iter().fold(0.01 * largest, |m, x| m.max(x.abs()));
        let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(
            diff <= 1e-5 * scale,
            "{name}: {path}: max |generic - fused| = {diff}, max |generic| = {scale}"
        );
        compared += a.iter().any(|&x| x != 0.0) as usize;
    }
    // The attention's own parameters (and everything below them) must have been reached.
    assert!(compared >= generic.len() - 2, "{name}: only {compared} of {} gradients non-zero", generic.len());
}

/// The GELU alone, over the range where `erf` bends and its flat tails (where the fused `erf`
/// clamps at +-4): the value and the gradient of `sum(w * gelu(x))` against burn's GELU under
/// autodiff, to 1e-6 relative (the fused `erf` is within 1e-6 of libm's).
fn gelu_matches_burn() {
    let device = Default::default();
    let xs: Vec<f32> = (-1200..=1200).map(|i| i as f32 * 0.01).collect();
    let ws: Vec<f32> = (0..xs.len()).map(|i| 1.0 + (i % 7) as f32 * 0.25).collect();
    let run = |fused: bool| {
        fast::set_enabled(fused);
        let x = Tensor::<B, 1>::from_floats(xs.as_slice(), &device).require_grad();
        let w = Tensor::<B, 1>::from_floats(ws.as_slice(), &device);
        let y = deberta_model::deberta::activate(deberta_model::Activation::Gelu, x.clone());
        let grads = (y.clone() * w).sum().backward();
        let grad: Vec<f32> = x.grad(&grads).expect("x's gradient").into_data().to_vec().unwrap();
        (y.inner().into_data().to_vec::<f32>().unwrap(), grad)
    };
    let (generic, fused) = (run(false), run(true));
    fast::set_enabled(true);
    for (what, a, b) in [("value", &generic.0, &fused.0), ("gradient", &generic.1, &fused.1)] {
        let worst = a.iter().zip(b).map(|(a, b)| (a - b).abs() / (1.0 + a.abs())).fold(0.0, f32::max);
        assert!(worst <= 1e-6, "GELU {what}: max |burn - fused| / (1 + |burn|) = {worst}");
    }
    // Hand-checked points: gelu'(0) = 1/2, gelu(0) = 0, and the tails 0 and x (gradient 0 and 1).
    let at = |x: f32| xs.iter().position(|&v| (v - x).abs() < 1e-4).unwrap();
    assert_eq!(fused.0[at(0.0)], 0.0);
    assert!((fused.1[at(0.0)] / ws[at(0.0)] - 0.5).abs() < 1e-6);
    assert!(fused.1[at(-12.0)].abs() < 1e-6 && (fused.1[at(12.0)] / ws[at(12.0)] - 1.0).abs() < 1e-6);
}

#[test]
fn fused_training_gradients_match_the_generic_path() {
    gelu_matches_burn();
    check("c2p+p2c, shared keys", &config(r#"["p2c", "c2p"]"#, true), Head::MaskedLm);
    check("c2p+p2c, separate position projections", &config(r#"["p2c", "c2p"]"#, false), Head::MaskedLm);
    check("c2p only", &config(r#"["c2p"]"#, true), Head::MaskedLm);
    check("EMD", &config(r#"["p2c", "c2p"]"#, true), Head::EnhancedMaskDecoderLm);
}
