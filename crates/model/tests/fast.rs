//! The fused Flex kernels (`deberta_model::fast`) against the generic op-by-op path they replace
//! (itself checked against HF by deberta-io's parity tests): same hidden states to 1e-5, on a
//! config with c2p and p2c, log buckets, a sequence longer than twice the bucket midpoint, a
//! padded row and a batch of three. Its own test binary: the switch is process-wide.

use burn::backend::Flex;
use burn::prelude::*;
use deberta_model::{fast, Batch, DebertaConfig, DebertaModel, Head};

#[test]
fn fused_kernels_match_the_generic_path() {
    let device = Default::default();
    let config = DebertaConfig::from_json_str(
        r#"{"vocab_size": 50, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 48, "max_position_embeddings": 64, "type_vocab_size": 0,
        "relative_attention": true, "position_buckets": 8, "max_relative_positions": -1,
        "pos_att_type": ["p2c", "c2p"], "norm_rel_ebd": "layer_norm", "share_att_key": true,
        "position_biased_input": false, "hidden_act": "gelu", "initializer_range": 0.2}"#,
    )
    .unwrap();
    Flex::seed(&device, 3);
    let model = DebertaModel::<Flex>::new(&config, Head::MaskedLm, &device);
    let (rows, len) = (3, 37);
    let ids: Vec<i64> = (0..rows * len).map(|k| (3 + (k * 11) % 47) as i64).collect();
    let mask: Vec<i64> = (0..rows * len).map(|k| (k / len != 1 || k % len < 20) as i64).collect();
    let t = |v: Vec<i64>| Tensor::<Flex, 2, Int>::from_data(TensorData::new(v, [rows, len]), &device);
    let batch = Batch { input_ids: t(ids), attention_mask: t(mask), token_type_ids: None };

    let run = |on: bool| {
        fast::set_enabled(on);
        let out = model.forward(&batch, None);
        let logits = match out.logits.clone() {
            Some(deberta_model::Logits::Rank3(l)) => l,
            other => panic!("MLM logits expected, got {other:?}"),
        };
        (out.last_hidden_state(), logits)
    };
    let (h_generic, l_generic) = run(false);
    let (h_fused, l_fused) = run(true);
    for (name, a, b) in [("hidden", h_generic, h_fused), ("logits", l_generic, l_fused)] {
        let scale: f32 = a.clone().abs().max().into_scalar();
        let diff: f32 = (a - b).abs().max().into_scalar();
        assert!(diff / scale <= 1e-5, "{name}: max |generic - fused| / max |generic| = {}", diff / scale);
    }
}
