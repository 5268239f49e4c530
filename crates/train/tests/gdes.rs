//! Gradient-disentangled embedding sharing: RTD gradients never reach E_G, MLM gradients never
//! reach E_delta; ES lets RTD gradients into E_G; sampling labels follow the official rule.

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use deberta_model::{Batch, DebertaConfig, DebertaModel, Head};
use deberta_train::optim::{AdamW, AdamWConfig};
use deberta_train::rtd::{
    generator_word_embedding, merged_embedding, mlm_loss, replace, rtd_loss, Discriminator, EmbeddingSharing,
    MaskedBatch, RtdTrainer,
};

type B = Autodiff<Flex>;

fn config(layers: usize) -> DebertaConfig {
    DebertaConfig::from_json_str(&format!(
        r#"{{"vocab_size": 30, "hidden_size": 16, "num_hidden_layers": {layers}, "num_attention_heads": 2,
        "intermediate_size": 32, "max_position_embeddings": 32, "relative_attention": true,
        "position_buckets": 8, "pos_att_type": ["p2c", "c2p"], "norm_rel_ebd": "layer_norm",
        "share_att_key": true, "position_biased_input": false, "initializer_range": 0.2}}"#
    ))
    .unwrap()
}

fn models(sharing: EmbeddingSharing) -> (DebertaModel<B>, Discriminator<B>) {
    let device = Default::default();
    B::seed(&device, 11);
    let generator = DebertaModel::new(&config(1), Head::EnhancedMaskDecoderLm, &device);
    let discriminator =
        Discriminator::new(DebertaModel::new(&config(2), Head::ReplacedTokenDetection, &device), sharing);
    (generator, discriminator)
}

fn masked() -> MaskedBatch<B> {
    let device = Default::default();
    let t = |v: Vec<i64>| Tensor::<B, 2, Int>::from_data(TensorData::new(v, [2, 6]), &device);
    let batch = Batch {
        input_ids: t(vec![1, 29, 7, 29, 9, 2, 1, 12, 29, 2, 0, 0]),
        attention_mask: t(vec![1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0]),
        token_type_ids: None,
    };
    MaskedBatch::new(batch, vec![0, 5, 0, 8, 0, 0, 0, 0, 14, 0, 0, 0])
}

/// One uniform per pick (three picks).
const UNIFORMS: [f32; 3] = [0.37, 0.74, 0.11];

#[test]
fn gdes_separates_the_gradients() {
    let (generator, discriminator) = models(EmbeddingSharing::Gdes);
    let m = masked();
    let e_g = &generator.deberta.embeddings.word_embeddings.weight;
    let delta = discriminator.word_embeddings_delta.as_ref().unwrap();

    // MLM loss: E_G gets a gradient, E_delta none.
    let (mlm, logits) = mlm_loss(&generator, &m);
    let grads = mlm.backward();
    assert!(e_g.val().grad(&grads).unwrap().abs().sum().into_scalar() > 0.0);
    assert!(delta.val().grad(&grads).is_none());

    // RTD loss: E_delta gets a gradient, E_G none.
    let (batch, targets) = replace(logits, &m, &UNIFORMS);
    let emb = discriminator.embedding(generator_word_embedding(&generator), EmbeddingSharing::Gdes);
    let rtd = rtd_loss(discriminator.logits(emb, &batch), targets, &batch.attention_mask, 50.0);
    let grads = rtd.backward();
    assert!(e_g.val().grad(&grads).is_none(), "RTD gradient leaked into E_G");
    assert!(delta.val().grad(&grads).unwrap().abs().sum().into_scalar() > 0.0);
}

#[test]
fn es_lets_rtd_gradients_into_the_shared_embedding() {
    let (generator, discriminator) = models(EmbeddingSharing::Es);
    assert!(discriminator.word_embeddings_delta.is_none());
    let m = masked();
    let (_, logits) = mlm_loss(&generator, &m);
    let (batch, targets) = replace(logits, &m, &UNIFORMS);
    let emb = discriminator.embedding(generator_word_embedding(&generator), EmbeddingSharing::Es);
    let grads = rtd_loss(discriminator.logits(emb, &batch), targets, &batch.attention_mask, 1.0).backward();
    let e_g = &generator.deberta.embeddings.word_embeddings.weight;
    assert!(e_g.val().grad(&grads).unwrap().abs().sum().into_scalar() > 0.0);
}

#[test]
fn a_sample_equal_to_the_original_is_not_replaced() {
    let m = masked();
    let device = Default::default();
    // Logits putting all mass on id 5 everywhere: position 1 (original 5) is "not replaced",
    // positions 3 (8) and 8 (14) are replaced; unpicked positions keep their ids.
    let mut logits = vec![-1e4f32; 3 * 30];
    for row in 0..3 {
        logits[row * 30 + 5] = 1e4;
    }
    let logits = Tensor::<B, 2>::from_data(TensorData::new(logits, [3, 30]), &device);
    let (batch, targets) = replace(logits, &m, &UNIFORMS);
    let ids: Vec<i64> = batch.input_ids.into_data().convert::<i64>().into_vec().unwrap();
    assert_eq!(ids, vec![1, 5, 7, 5, 9, 2, 1, 12, 5, 2, 0, 0]);
    let t: Vec<f32> = targets.into_data().into_vec().unwrap();
    assert_eq!(t, vec![0., 0., 0., 1., 0., 0., 0., 0., 1., 0., 0., 0.]);
}

#[test]
fn every_variant_steps_and_gdes_exports_e_g_plus_delta() {
    for sharing in [EmbeddingSharing::Gdes, EmbeddingSharing::Es, EmbeddingSharing::Nes] {
        let (generator, discriminator) = models(sharing);
        let mut trainer = RtdTrainer {
            sharing,
            lambda: 50.0,
            generator_opt: AdamW::new(AdamWConfig::default()),
            discriminator_opt: AdamW::new(AdamWConfig::default()),
        };
        let before = generator.deberta.embeddings.word_embeddings.weight.val().inner();
        let (generator, discriminator, stats) =
            trainer.step(1e-3, generator, discriminator, &masked(), &UNIFORMS);
        assert!(stats.mlm_loss.is_finite() && stats.rtd_loss.is_finite(), "{sharing:?}: {stats:?}");
        let after = generator.deberta.embeddings.word_embeddings.weight.val().inner();
        assert!((after.clone() - before).abs().max().into_scalar() > 0.0, "{sharing:?}: E_G moved");
        let merged = merged_embedding(&generator, &discriminator, sharing);
        if sharing == EmbeddingSharing::Gdes {
            let delta = discriminator.word_embeddings_delta.as_ref().unwrap().val().inner();
            assert!(delta.clone().abs().max().into_scalar() > 0.0, "E_delta was trained");
            let diff = (merged - (after + delta)).abs().max().into_scalar();
            assert!(diff == 0.0, "{diff}");
        }
    }
}
