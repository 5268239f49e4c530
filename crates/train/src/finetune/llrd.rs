//! Layer-wise learning-rate decay (ELECTRA, Clark et al. 2020; used for DeBERTaV3 fine-tuning):
//! the deeper a parameter sits below the task head, the smaller its learning rate.
//!
//! With `N` encoder layers and decay `d`, a parameter at depth `k` gets `lr * d^(N + 1 - k)`:
//!
//! | parameters | depth | multiplier |
//! |---|---|---|
//! | `deberta.embeddings.*`, and what every layer shares: `deberta.encoder.rel_embeddings`, `deberta.encoder.LayerNorm` (the relative table's norm) | 0 | `d^(N+1)` |
//! | `deberta.encoder.layer.{i}.*` (and `deberta.encoder.conv.*`, which follows layer 0, at depth 1) | `i + 1` | `d^(N-i)` |
//! | the head: `pooler.*`, `classifier.*`, `qa_outputs.*`, ... | `N + 1` | 1 |
//!
//! ELECTRA's table differs only in leaving a gap below the head (its head is at `N + 2`, so its
//! last layer gets `d^2`); here the last layer gets `d`.

/// The multiplier of the parameter at `path` (module path) in a model of `layers` layers.
pub fn multiplier(path: &str, layers: usize, decay: f64) -> f64 {
    decay.powi((layers + 1 - depth(path, layers)) as i32)
}

/// Depth of a parameter: 0 for embeddings and shared relative-position parameters, `i + 1` for
/// layer `i`, `layers + 1` for everything above the encoder.
pub fn depth(path: &str, layers: usize) -> usize {
    if let Some(rest) = path.strip_prefix("deberta.encoder.layer.") {
        let i: usize = rest.split('.').next().and_then(|s| s.parse().ok()).unwrap_or(0);
        return (i + 1).min(layers);
    }
    if path.starts_with("deberta.encoder.conv.") {
        return 1.min(layers);
    }
    if path.starts_with("deberta.") {
        return 0;
    }
    layers + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_derived_multipliers() {
        // N = 2, d = 0.5: head 1, layer 1 -> 0.5, layer 0 -> 0.25, embeddings 0.125.
        let m = |p| multiplier(p, 2, 0.5);
        assert_eq!(m("classifier.weight"), 1.0);
        assert_eq!(m("pooler.dense.bias"), 1.0);
        assert_eq!(m("deberta.encoder.layer.1.output.dense.weight"), 0.5);
        assert_eq!(m("deberta.encoder.layer.0.attention.self_attn.query_proj.weight"), 0.25);
        assert_eq!(m("deberta.encoder.conv.conv.weight"), 0.25);
        assert_eq!(m("deberta.encoder.rel_embeddings.weight"), 0.125);
        assert_eq!(m("deberta.encoder.LayerNorm.gamma"), 0.125);
        assert_eq!(m("deberta.embeddings.word_embeddings.weight"), 0.125);
        // Layer 10 of 12 with d = 0.9: 0.9^(12 + 1 - 11) = 0.81.
        assert!(
            (multiplier("deberta.encoder.layer.10.intermediate.dense.weight", 12, 0.9) - 0.81).abs() < 1e-15
        );
        assert_eq!(multiplier("qa_outputs.weight", 12, 0.9), 1.0);
    }
}

/// The optimiser applies the multipliers: one AdamW step with them moves every parameter by
/// exactly `multiplier(path)` times the step without them (same gradients; a large epsilon
/// makes the update proportional to the gradient, so nothing saturates).
#[cfg(test)]
mod optimiser_tests {
    use super::multiplier;
    use crate::optim::{AdamW, AdamWConfig};
    use crate::state::module_tensors;
    use burn::optim::GradientsParams;
    use burn::prelude::*;
    use deberta_model::loss::cross_entropy;
    use deberta_model::{Batch, DebertaConfig, DebertaModel, Head, Logits};

    type B = burn::backend::Autodiff<burn::backend::Flex>;

    fn grads(model: &DebertaModel<B>, device: &burn::tensor::Device<B>) -> GradientsParams {
        let ids = Tensor::<B, 2, Int>::from_ints([[1, 5, 9, 2], [1, 7, 2, 0]], device);
        let mask = Tensor::<B, 2, Int>::from_ints([[1, 1, 1, 1], [1, 1, 1, 0]], device);
        let batch = Batch { input_ids: ids, attention_mask: mask, token_type_ids: None };
        let Some(Logits::Rank2(logits)) = model.forward(&batch, None).logits else { panic!("logits") };
        let loss = cross_entropy(logits, Tensor::from_ints([0, 1], device));
        GradientsParams::from_grads(loss.backward(), model)
    }

    #[test]
    fn layer_wise_decay_scales_each_update_by_its_multiplier() {
        let mut json = deberta_model::config::preset_json("tiny").unwrap();
        json["vocab_size"] = 16.into();
        json["hidden_dropout_prob"] = 0.0.into();
        json["attention_probs_dropout_prob"] = 0.0.into();
        let serde_json::Value::Object(map) = json else { unreachable!() };
        let config = DebertaConfig::from_map(map).unwrap();
        let device = Default::default();
        B::seed(&device, 3);
        let model = DebertaModel::<B>::new(&config, Head::SequenceClassification, &device);
        let before = module_tensors(&model);
        let adam = AdamWConfig { epsilon: 1.0, bias_correction: true, ..AdamWConfig::default() };
        let (plain, _) = AdamW::<B>::new(adam).step(0.5, model.clone(), grads(&model, &device));
        let scaled_opt =
            AdamW::<B>::new(adam).with_lr_scale(std::sync::Arc::new(|path: &str| multiplier(path, 2, 0.5)));
        let (scaled, _) = { scaled_opt }.step(0.5, model.clone(), grads(&model, &device));
        let (plain, scaled) = (module_tensors(&plain), module_tensors(&scaled));
        let mut moved_depths = std::collections::BTreeSet::new();
        for (path, x0) in &before {
            let m = multiplier(path, 2, 0.5) as f32;
            let (a, b) = (&plain[path].data, &scaled[path].data);
            let moved = x0.data.iter().zip(a).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
            for ((x, p), s) in x0.data.iter().zip(a).zip(b) {
                let (dp, ds) = (p - x, s - x);
                assert!((ds - m * dp).abs() <= 1e-6 + 1e-4 * dp.abs(), "{path}: {ds} vs {m} x {dp}");
            }
            if moved > 1e-5 {
                moved_depths.insert(super::depth(path, 2));
            }
        }
        // Parameters of every depth really moved (the comparison is not between no-ops).
        assert_eq!(moved_depths.into_iter().collect::<Vec<_>>(), vec![0, 1, 2, 3]);
    }
}
