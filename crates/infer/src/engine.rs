//! The model stage: padded forward passes over prepared requests.

use crate::preprocess::{PipelineOptions, Post, Prepared, RawOutput};
use crate::types::{InferError, Pooling, Result};
use burn::prelude::*;
use deberta_io::{load_model, LoadOptions};
use deberta_model::{DebertaModel, Logits};
use deberta_tokenizer::DebertaTokenizer;
use deberta_train::finetune::batch_outputs;
use deberta_train::finetune::batching::pad;
use deberta_train::finetune::task::{Feature, Output};
use std::path::Path;

/// The model on one device. Not shared between threads: one thread runs it.
pub struct Engine<B: Backend> {
    model: DebertaModel<B>,
    config: deberta_model::DebertaConfig,
    pad_id: u32,
    device: B::Device,
    weights_file: Option<std::path::PathBuf>,
}

/// What a group of features is run for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// The head's outputs.
    Head,
    /// Pooled last hidden states (the encoder alone).
    Pool(Pooling),
    /// Vocabulary logits at given positions.
    Masks,
}

/// Features run in one pass share the mode and their rows per feature (choice count).
type PassKey = (Mode, usize);

impl<B: Backend> Engine<B> {
    pub fn load(model_dir: &Path, options: &PipelineOptions, device: &B::Device) -> Result<Self> {
        let load = LoadOptions { int8: options.int8, ..LoadOptions::default() };
        let loaded = load_model::<B>(model_dir, &load, device)
            .map_err(|e| InferError::Model(format!("loading the model: {e}")))?;
        let tok_path = options.tokenizer.as_deref().unwrap_or(model_dir);
        let pad_id = DebertaTokenizer::from_path(tok_path)
            .map(|t| t.pad_id())
            .map_err(|e| InferError::Model(format!("loading the tokenizer: {e}")))?;
        Ok(Engine {
            model: loaded.model,
            config: loaded.config,
            pad_id,
            device: device.clone(),
            weights_file: Some(loaded.weights_file),
        })
    }

    /// An engine around a model already loaded.
    pub fn new(
        model: DebertaModel<B>,
        config: deberta_model::DebertaConfig,
        pad_id: u32,
        device: &B::Device,
    ) -> Self {
        Engine { model, config, pad_id, device: device.clone(), weights_file: None }
    }

    /// The file the weights came from (for messages about them).
    pub fn weights_file(&self) -> Option<&Path> {
        self.weights_file.as_deref()
    }

    pub fn model(&self) -> &DebertaModel<B> {
        &self.model
    }

    /// Runs every prepared request's rows, padded to the longest row; requests whose rows cannot
    /// share a pass (different choice counts, embeddings next to head outputs) go in separate
    /// passes. One output per request, in order.
    pub fn forward(&self, batch: &[&Prepared]) -> Result<Vec<RawOutput>> {
        // (request, feature) pairs per pass, in first-seen order of the pass keys.
        let mut passes: Vec<(PassKey, Vec<(usize, usize)>)> = Vec::new();
        for (r, p) in batch.iter().enumerate() {
            let mode = match &p.post {
                Post::Embed { pooling, .. } => Mode::Pool(*pooling),
                Post::Fill { .. } => Mode::Masks,
                _ => Mode::Head,
            };
            let key = (mode, p.rows_per_feature());
            let slot = match passes.iter().position(|(k, _)| *k == key) {
                Some(i) => i,
                None => {
                    passes.push((key, Vec::new()));
                    passes.len() - 1
                }
            };
            passes[slot].1.extend((0..p.features.len()).map(|f| (r, f)));
        }
        let mut outputs: Vec<Vec<Option<Output>>> =
            batch.iter().map(|p| vec![None; p.features.len()]).collect();
        for ((mode, per), members) in passes {
            let feats: Vec<&Feature> = members.iter().map(|&(r, f)| &batch[r].features[f]).collect();
            let len = feats.iter().map(|f| f.len()).max().unwrap_or(0);
            self.config
                .check_batch_memory(feats.len() * per, len, false)
                .map_err(|e| InferError::BadInput(format!("the batch is too large for memory: {e}")))?;
            let results = match mode {
                Mode::Head => batch_outputs(
                    &self.model,
                    &feats,
                    self.pad_id,
                    self.config.type_vocab_size > 0,
                    &self.device,
                ),
                Mode::Pool(pooling) => self.pooled(&feats, pooling),
                Mode::Masks => {
                    let positions: Vec<&[usize]> = members
                        .iter()
                        .map(|&(r, _)| match &batch[r].post {
                            Post::Fill { positions, .. } => positions.as_slice(),
                            _ => &[],
                        })
                        .collect();
                    self.mask_logits(&feats, &positions)?
                }
            };
            for (&(r, f), o) in members.iter().zip(results) {
                outputs[r][f] = Some(o);
            }
        }
        Ok(outputs
            .into_iter()
            .map(|o| RawOutput { outputs: o.into_iter().map(|x| x.expect("every feature ran")).collect() })
            .collect())
    }

    /// The last hidden state of each single-row feature, pooled over its own tokens.
    fn pooled(&self, feats: &[&Feature], pooling: Pooling) -> Vec<Output> {
        let padded = pad::<B>(feats, self.pad_id, self.config.type_vocab_size > 0, &self.device);
        let hidden = self.model.deberta.forward(&padded.batch).last_hidden_state();
        let [_, l, h] = hidden.dims();
        let v: Vec<f32> = hidden.into_data().convert::<f32>().to_vec().expect("f32 states");
        feats
            .iter()
            .enumerate()
            .map(|(k, f)| {
                let row = |p: usize| &v[(k * l + p) * h..(k * l + p + 1) * h];
                let out = match pooling {
                    Pooling::Cls => row(0).to_vec(),
                    Pooling::Mean => {
                        let n = f.len();
                        let mut sum = vec![0f64; h];
                        for p in 0..n {
                            sum.iter_mut().zip(row(p)).for_each(|(s, &x)| *s += x as f64);
                        }
                        sum.into_iter().map(|s| (s / n as f64) as f32).collect()
                    }
                };
                Output::Vector(out)
            })
            .collect()
    }

    /// Vocabulary logits at each feature's mask positions (only those rows leave the device).
    fn mask_logits(&self, feats: &[&Feature], positions: &[&[usize]]) -> Result<Vec<Output>> {
        let padded = pad::<B>(feats, self.pad_id, self.config.type_vocab_size > 0, &self.device);
        let out = self.model.forward(&padded.batch, None);
        let Some(Logits::Rank3(logits)) = out.logits else {
            return Err(InferError::Unsupported("this model has no masked-language-model head".into()));
        };
        let [_, _, vocab] = logits.dims();
        Ok(positions
            .iter()
            .enumerate()
            .map(|(k, ps)| {
                let rows = ps
                    .iter()
                    .map(|&p| {
                        let t = logits.clone().slice([k..k + 1, p..p + 1, 0..vocab]);
                        t.into_data().convert::<f32>().to_vec().expect("f32 logits")
                    })
                    .collect();
                Output::Tokens(rows)
            })
            .collect())
    }
}
