//! The fused Flex kernels (`deberta_model::fast`) against the generic op-by-op path they replace
//! (itself checked against HF by deberta-io's parity tests): same hidden states to 1e-5, on a
//! config with c2p and p2c, log buckets, a sequence longer than twice the bucket midpoint, a
//! padded row and a batch of three. Its own test binary: the switch is process-wide. Also the
//! CPU-only relative-projection cache against a model without one.

use burn::backend::Flex;
use burn::module::{ModuleMapper, Param};
use burn::prelude::*;
use deberta_model::{fast, Batch, DebertaConfig, DebertaModel, Head};

fn config() -> DebertaConfig {
    DebertaConfig::from_json_str(
        r#"{"vocab_size": 50, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 48, "max_position_embeddings": 64, "type_vocab_size": 0,
        "relative_attention": true, "position_buckets": 8, "max_relative_positions": -1,
        "pos_att_type": ["p2c", "c2p"], "norm_rel_ebd": "layer_norm", "share_att_key": true,
        "position_biased_input": false, "hidden_act": "gelu", "initializer_range": 0.2}"#,
    )
    .unwrap()
}

/// Three rows of 37 tokens, the second padded after 20.
fn batch(device: &burn::tensor::Device<Flex>) -> Batch<Flex> {
    let (rows, len) = (3, 37);
    let ids: Vec<i64> = (0..rows * len).map(|k| (3 + (k * 11) % 47) as i64).collect();
    let mask: Vec<i64> = (0..rows * len).map(|k| (k / len != 1 || k % len < 20) as i64).collect();
    let t = |v: Vec<i64>| Tensor::<Flex, 2, Int>::from_data(TensorData::new(v, [rows, len]), device);
    Batch { input_ids: t(ids), attention_mask: t(mask), token_type_ids: None }
}

/// max |a - b| / max |a|
fn rel_diff(a: Tensor<Flex, 3>, b: Tensor<Flex, 3>) -> f32 {
    let scale: f32 = a.clone().abs().max().into_scalar();
    let diff: f32 = (a - b).abs().max().into_scalar();
    diff / scale
}

#[test]
fn fused_kernels_match_the_generic_path() {
    let device = Default::default();
    let config = config();
    Flex::seed(&device, 3);
    let model = DebertaModel::<Flex>::new(&config, Head::MaskedLm, &device);
    let batch = batch(&device);

    let run = |on: bool| {
        fast::set_enabled(on);
        let out = model.forward(&batch, None);
        let logits = match out.logits.clone() {
            Some(deberta_model::Logits::Rank3(l)) => l,
            other => panic!("MLM logits expected, got {other:?}"),
        };
        (out.last_hidden_state(), logits)
    };
    // Fused first: it fills the relative-projection cache in the fused kernel's layout, which the
    // generic path then reads as an ordinary view.
    let (h_fused, l_fused) = run(true);
    let (h_generic, l_generic) = run(false);
    for (name, a, b) in [("hidden", h_generic, h_fused), ("logits", l_generic, l_fused)] {
        let d = rel_diff(a, b);
        assert!(d <= 1e-5, "{name}: max |generic - fused| / max |generic| = {d}");
    }
}

/// The relative-projection cache is shared by clones of a model and keyed by the identity of
/// the parameters: a clone with other weights must not reuse the projections of the first. The
/// oracle is a model with the same weights and an empty cache. (Tolerance, not equality: the
/// other test switches the fused kernels on and off meanwhile.)
#[test]
fn relative_projection_cache_follows_the_weights() {
    let device = Default::default();
    let config = config();
    Flex::seed(&device, 5);
    let model = DebertaModel::<Flex>::new(&config, Head::Base, &device);
    let batch = batch(&device);
    let first = model.forward(&batch, None).last_hidden_state();
    let again = model.forward(&batch, None).last_hidden_state();
    assert!(rel_diff(first.clone(), again) <= 1e-5, "a cache hit changed the output");

    struct Scale;
    impl ModuleMapper<Flex> for Scale {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<Flex, D>>) -> Param<Tensor<Flex, D>> {
            param.map(|t| t.mul_scalar(1.5))
        }
    }
    let changed = model.clone().map(&mut Scale);
    let got = changed.forward(&batch, None).last_hidden_state();
    let fresh = DebertaModel::<Flex>::new(&config, Head::Base, &device).load_record(changed.into_record());
    let want = fresh.forward(&batch, None).last_hidden_state();
    assert!(rel_diff(want.clone(), got) <= 1e-5, "the changed model reused stale projections");
    assert!(rel_diff(want, first) > 1e-2, "scaling the weights should change the output");
}
