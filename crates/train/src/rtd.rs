//! One ELECTRA-style step (docs/pretraining.md): the generator (EMD head) fills masked positions,
//! replacements are sampled from its softmax, the discriminator (RTD head) learns which tokens
//! were replaced. The three embedding-sharing variants differ only in the discriminator's
//! token embedding:
//!
//! - GDES: `E_D = stop_grad(E_G) + E_delta`; decoupled steps, generator first, then the
//!   discriminator rebuilt from the just-updated `E_G`. RTD gradients reach only `E_delta`.
//! - ES:   `E_D = E_G`; the official code's coupled mode: one joint loss `MLM + lambda * RTD`, one
//!   gradient clip over both models, so RTD gradients flow into `E_G` (the tug-of-war the paper
//!   describes). The official decoupled mode cannot do ES: the generator's next `zero_grad` drops
//!   the RTD gradient on the shared embedding, which makes it GDES without `E_delta`.
//! - NES:  the discriminator's own embedding; decoupled steps.

use crate::optim::AdamW;
use burn::module::{AutodiffModule, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::activation;
use burn::tensor::backend::AutodiffBackend;
use deberta_model::loss::{bce_with_logits, cross_entropy};
use deberta_model::{Batch, DebertaModel, Head, Logits};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbeddingSharing {
    Gdes,
    Es,
    Nes,
}

/// The discriminator and, for GDES, `E_delta` (zero at the start).
#[derive(Module, Debug)]
pub struct Discriminator<B: Backend> {
    pub model: DebertaModel<B>,
    pub word_embeddings_delta: Option<Param<Tensor<B, 2>>>,
}

impl<B: Backend> Discriminator<B> {
    pub fn new(model: DebertaModel<B>, sharing: EmbeddingSharing) -> Self {
        let delta = (sharing == EmbeddingSharing::Gdes).then(|| {
            let w = &model.deberta.embeddings.word_embeddings.weight;
            Param::from_tensor(Tensor::zeros(w.dims(), &w.device()))
        });
        Discriminator { model, word_embeddings_delta: delta }
    }

    /// The word embedding the discriminator uses, given the generator's `E_G`.
    pub fn embedding(&self, generator_embedding: Tensor<B, 2>, sharing: EmbeddingSharing) -> Tensor<B, 2> {
        match sharing {
            EmbeddingSharing::Gdes => {
                generator_embedding.detach() + self.word_embeddings_delta.as_ref().expect("E_delta").val()
            }
            EmbeddingSharing::Es => generator_embedding,
            EmbeddingSharing::Nes => self.model.deberta.embeddings.word_embeddings.weight.val(),
        }
    }

    /// RTD logits `[B, L]` with the given word embedding.
    pub fn logits(&self, embedding: Tensor<B, 2>, batch: &Batch<B>) -> Tensor<B, 2> {
        let [b, l] = batch.dims();
        let [_, e] = embedding.dims();
        let embeds = embedding.select(0, batch.input_ids.clone().reshape([b * l])).reshape([b, l, e]);
        let encoder = self.model.deberta.forward_embeds(embeds, batch);
        match self.model.head_forward(encoder, None).logits {
            Some(Logits::Rank2(l)) => l,
            _ => panic!("the discriminator needs the RTD head"),
        }
    }
}

/// A masked batch: `batch.input_ids` holds [MASK] at the picks; `labels` the original id there,
/// 0 elsewhere (`[B, L]`, kept on the host: the picks decide which rows the heads compute).
pub struct MaskedBatch<B: Backend> {
    pub batch: Batch<B>,
    pub labels: Vec<i64>,
    /// Flat positions (`b * L + i`) of the picks, in order.
    pub picks: Vec<usize>,
}

impl<B: Backend> MaskedBatch<B> {
    pub fn new(batch: Batch<B>, labels: Vec<i64>) -> Self {
        let picks = labels.iter().enumerate().filter(|(_, &l)| l > 0).map(|(k, _)| k).collect();
        MaskedBatch { batch, labels, picks }
    }

    /// Real (not padding) tokens in the batch.
    pub fn real_tokens(&self) -> usize {
        let mask: Vec<i64> = self.batch.attention_mask.to_data().convert::<i64>().into_vec().expect("ints");
        mask.iter().filter(|&&m| m > 0).count()
    }

    fn pick_tensor(&self) -> Tensor<B, 1, Int> {
        let p: Vec<i64> = self.picks.iter().map(|&k| k as i64).collect();
        Tensor::from_data(TensorData::new(p, [self.picks.len()]), &self.batch.input_ids.device())
    }

    fn pick_labels(&self) -> Tensor<B, 1, Int> {
        let l: Vec<i64> = self.picks.iter().map(|&k| self.labels[k]).collect();
        Tensor::from_data(TensorData::new(l, [self.picks.len()]), &self.batch.input_ids.device())
    }
}

#[derive(Debug, Clone, Copy)]
pub struct StepStats {
    pub mlm_loss: f32,
    pub rtd_loss: f32,
    pub generator_grad_norm: f64,
    pub discriminator_grad_norm: f64,
    /// Fraction of picks whose sample differs from the original.
    pub replaced_fraction: f32,
}

pub fn generator_word_embedding<B: Backend>(generator: &DebertaModel<B>) -> Tensor<B, 2> {
    generator.deberta.embeddings.word_embeddings.weight.val()
}

/// The generator's MLM loss over the picks and its logits there (`[picks, V]`). As in the
/// official code, the LM head runs on the picked rows only (the EMD's rows are independent).
pub fn mlm_loss<B: Backend>(
    generator: &DebertaModel<B>,
    masked: &MaskedBatch<B>,
) -> (Tensor<B, 1>, Tensor<B, 2>) {
    assert_eq!(generator.head(), Head::EnhancedMaskDecoderLm, "the generator needs the EMD head");
    let encoder = generator.deberta.forward(&masked.batch);
    let states = generator.enhanced_mask_decoder(&encoder);
    let [b, l, h] = states.dims();
    let n = masked.picks.len();
    let rows = states.reshape([b * l, h]).select(0, masked.pick_tensor()).reshape([1, n, h]);
    let lm = generator.lm_predictions.as_ref().expect("lm_predictions");
    let logits = lm.forward(rows, generator_word_embedding(generator));
    let [_, _, v] = logits.dims();
    let logits = logits.reshape([n, v]);
    (cross_entropy(logits.clone(), masked.pick_labels()), logits)
}

/// Samples a replacement for every pick from `softmax(logits)` by inverse CDF with the given
/// uniforms (one per pick, in [0, 1)) and builds the discriminator's input and its targets
/// (1 where a pick's sample differs from the original: an equal sample is "not replaced").
/// Drawing the uniforms on the host keeps sampling reproducible and resumable.
///
/// The sample is the number of CDF entries `<= u * CDF[V-1]`: scaling `u` by the computed total
/// (which rounding leaves a little off 1) gives every id exactly its share, where comparing with
/// `u` itself would hand the last id whatever the sum falls short by.
pub fn replace<B: Backend>(
    logits: Tensor<B, 2>,
    masked: &MaskedBatch<B>,
    uniforms: &[f32],
) -> (Batch<B>, Tensor<B, 2>) {
    let [n, v] = logits.dims();
    assert_eq!(uniforms.len(), n, "one uniform per pick");
    let device = logits.device();
    let cdf = activation::softmax(logits.detach(), 1).cumsum(1);
    let total = cdf.clone().slice([0..n, v - 1..v]);
    let u =
        Tensor::<B, 1>::from_data(TensorData::new(uniforms.to_vec(), [n]), &device).reshape([n, 1]) * total;
    let samples = cdf.lower_equal(u.expand([n, v])).int().sum_dim(1).clamp_max(v as i64 - 1);
    let samples: Vec<i64> = samples.into_data().convert::<i64>().into_vec().expect("ints");
    replaced_batch(masked, samples.into_iter())
}

/// The discriminator's batch and targets for given sampled ids at the picks.
pub fn replaced_batch<B: Backend>(
    masked: &MaskedBatch<B>,
    samples: impl Iterator<Item = i64>,
) -> (Batch<B>, Tensor<B, 2>) {
    let shape = masked.batch.dims();
    let device = masked.batch.input_ids.device();
    let mut ids: Vec<i64> = masked.batch.input_ids.to_data().convert::<i64>().into_vec().expect("ints");
    let mut targets = vec![0f32; ids.len()];
    for (&k, s) in masked.picks.iter().zip(samples) {
        ids[k] = s;
        targets[k] = (s != masked.labels[k]) as i32 as f32;
    }
    let batch = Batch {
        input_ids: Tensor::from_data(TensorData::new(ids, shape), &device),
        attention_mask: masked.batch.attention_mask.clone(),
        token_type_ids: masked.batch.token_type_ids.clone(),
    };
    (batch, Tensor::from_data(TensorData::new(targets, shape), &device))
}

/// `lambda * mean BCE` over real tokens.
pub fn rtd_loss<B: Backend>(
    logits: Tensor<B, 2>,
    targets: Tensor<B, 2>,
    attention_mask: &Tensor<B, 2, Int>,
    lambda: f64,
) -> Tensor<B, 1> {
    let [b, l] = logits.dims();
    bce_with_logits(
        logits.reshape([b * l]),
        targets.reshape([b * l]),
        attention_mask.clone().float().reshape([b * l]),
    ) * lambda
}

pub struct RtdTrainer<B: AutodiffBackend> {
    pub sharing: EmbeddingSharing,
    pub lambda: f64,
    pub generator_opt: AdamW<B>,
    pub discriminator_opt: AdamW<B>,
}

impl<B: AutodiffBackend> RtdTrainer<B> {
    /// One step; returns the updated models.
    pub fn step(
        &mut self,
        lr: f64,
        generator: DebertaModel<B>,
        discriminator: Discriminator<B>,
        masked: &MaskedBatch<B>,
        uniforms: &[f32],
    ) -> (DebertaModel<B>, Discriminator<B>, StepStats) {
        let (mlm, logits) = mlm_loss(&generator, masked);
        let (disc_batch, targets) = replace(logits, masked, uniforms);
        let picks = masked.picks.len() as f32;
        let replaced: f32 = targets.clone().sum().into_scalar().elem();
        let mlm_value: f32 = mlm.clone().into_scalar().elem();

        let sharing = self.sharing;
        let lambda = self.lambda;
        // The discriminator's loss with the embedding it shares with `generator`.
        let rtd_of = |generator: &DebertaModel<B>, discriminator: &Discriminator<B>| {
            let emb = discriminator.embedding(generator_word_embedding(generator), sharing);
            let logits = discriminator.logits(emb, &disc_batch);
            rtd_loss(logits, targets.clone(), &disc_batch.attention_mask, lambda)
        };
        let (generator, discriminator, rtd_value, gnorm, dnorm) = match sharing {
            EmbeddingSharing::Es => {
                let rtd = rtd_of(&generator, &discriminator);
                let rtd_value: f32 = rtd.clone().into_scalar().elem();
                let mut grads = (mlm + rtd).backward();
                let g_grads = GradientsParams::from_module(&mut grads, &generator);
                let d_grads = GradientsParams::from_module(&mut grads, &discriminator);
                // One clip over both models, as one optimiser over the joint model would.
                let (gn, dn) =
                    (AdamW::grad_norm(&generator, &g_grads), AdamW::grad_norm(&discriminator, &d_grads));
                let norm = (gn * gn + dn * dn).sqrt();
                let generator = self.generator_opt.step_with_norm(lr, generator, g_grads, norm);
                let discriminator = self.discriminator_opt.step_with_norm(lr, discriminator, d_grads, norm);
                (generator, discriminator, rtd_value, norm, norm)
            }
            EmbeddingSharing::Gdes | EmbeddingSharing::Nes => {
                let grads = GradientsParams::from_grads(mlm.backward(), &generator);
                let (generator, gnorm) = self.generator_opt.step(lr, generator, grads);
                // Rebuilt from the just-updated generator embedding.
                let rtd = rtd_of(&generator, &discriminator);
                let rtd_value: f32 = rtd.clone().into_scalar().elem();
                let grads = GradientsParams::from_grads(rtd.backward(), &discriminator);
                let (discriminator, dnorm) = self.discriminator_opt.step(lr, discriminator, grads);
                (generator, discriminator, rtd_value, gnorm, dnorm)
            }
        };
        let stats = StepStats {
            mlm_loss: mlm_value,
            rtd_loss: rtd_value,
            generator_grad_norm: gnorm,
            discriminator_grad_norm: dnorm,
            replaced_fraction: replaced / picks.max(1.0),
        };
        (generator, discriminator, stats)
    }
}

impl<B: AutodiffBackend> RtdTrainer<B> {
    /// One step of the MLM-only objective: the generator alone on its MLM loss.
    pub fn mlm_step(
        &mut self,
        lr: f64,
        generator: DebertaModel<B>,
        masked: &MaskedBatch<B>,
    ) -> (DebertaModel<B>, StepStats) {
        let (loss, _) = mlm_loss(&generator, masked);
        let value: f32 = loss.clone().into_scalar().elem();
        let grads = GradientsParams::from_grads(loss.backward(), &generator);
        let (generator, norm) = self.generator_opt.step(lr, generator, grads);
        let stats = StepStats {
            mlm_loss: value,
            rtd_loss: f32::NAN,
            generator_grad_norm: norm,
            discriminator_grad_norm: f64::NAN,
            replaced_fraction: f32::NAN,
        };
        (generator, stats)
    }
}

/// The discriminator's word embedding for export: `E_G + E_delta` (GDES), `E_G` (ES), its own (NES).
pub fn merged_embedding<B: AutodiffBackend>(
    generator: &DebertaModel<B>,
    discriminator: &Discriminator<B>,
    sharing: EmbeddingSharing,
) -> Tensor<B::InnerBackend, 2> {
    discriminator.valid().embedding(generator_word_embedding(&generator.valid()), sharing)
}
