//! `deberta debug rtd-steps`: a whole trajectory of training steps on a fixture's batches, for
//! comparison with the PyTorch reference loop (`scripts/rtd_trajectory.py`).
//!
//! `deberta debug rtd-step`: the losses and every parameter gradient of one generator step and
//! one discriminator step on a fixed batch (fixed picks, fixed replacements), under their
//! checkpoint names, for comparison with a PyTorch reference (`scripts/make_rtd_fixture.py`).
//!
//! Both gradients are taken at the loaded weights: the discriminator sees
//! `E_D = stop_grad(E_G) + E_delta` with the generator's loaded `E_G` (in training, the updated
//! one; the update is AdamW's, tested on its own). `E_delta` is read from the discriminator's
//! `deberta.embeddings.word_embeddings._weight`, the official code's name for it, or is zero.

use crate::pretrain::{Objective, Pretrainer, Settings, StepReport};
use crate::rtd::{
    generator_word_embedding, mlm_loss, replaced_batch, rtd_loss, Discriminator, EmbeddingSharing,
    MaskedBatch,
};
use burn::module::{ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use deberta_io::checkpoint::checkpoint_tensors;
use deberta_io::tensors::read_safetensors;
use deberta_io::{load_model, HostTensor, IoError, LoadOptions, TensorMap};
use deberta_model::{Batch, DebertaConfig, DebertaModel};
use std::path::Path;

pub const DELTA_KEY: &str = "deberta.embeddings.word_embeddings._weight";

/// The fixed batch: `input_ids` (with [MASK] at picks), `attention_mask`, `labels` (original id
/// at picks, 0 elsewhere) and `replacements` (the sampled id at picks, 0 elsewhere), all `[B][L]`.
/// Every id must lie in `[0, vocab_size)`.
pub fn read_rtd_batch<B: Backend>(
    path: &Path,
    vocab_size: usize,
    device: &B::Device,
) -> Result<(MaskedBatch<B>, Vec<i64>), IoError> {
    let err = |message: String| IoError::Input { path: path.to_path_buf(), message };
    let text = std::fs::read_to_string(path).map_err(|e| IoError::file(path, e))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| err(format!("invalid JSON: {e}")))?;
    let grid = |key: &str| -> Result<(Vec<i64>, [usize; 2]), IoError> {
        let rows =
            v[key].as_array().ok_or_else(|| err(format!("missing `{key}` ([batch][token] integers)")))?;
        let len = rows.first().and_then(|r| r.as_array()).map(|r| r.len()).unwrap_or(0);
        let mut out = Vec::new();
        for (i, r) in rows.iter().enumerate() {
            let r = r
                .as_array()
                .filter(|r| r.len() == len)
                .ok_or_else(|| err(format!("`{key}[{i}]` is not a row of {len} integers")))?;
            for x in r {
                out.push(x.as_i64().ok_or_else(|| err(format!("`{key}[{i}]` holds {x}, not an integer")))?);
            }
        }
        if out.is_empty() {
            return Err(err(format!("`{key}` is empty")));
        }
        if key != "attention_mask" {
            if let Some((k, x)) = out.iter().enumerate().find(|(_, &x)| x < 0 || x >= vocab_size as i64) {
                return Err(err(format!(
                    "`{key}[{}][{}]` is {x}, outside the vocabulary [0, {vocab_size})",
                    k / len.max(1),
                    k % len.max(1)
                )));
            }
        }
        Ok((out, [rows.len(), len]))
    };
    let (ids, shape) = grid("input_ids")?;
    let t = |key: &str| -> Result<Tensor<B, 2, Int>, IoError> {
        let (values, s) = grid(key)?;
        if s != shape {
            return Err(err(format!("`{key}` has shape {s:?}, `input_ids` {shape:?}")));
        }
        Ok(Tensor::from_data(TensorData::new(values, shape), device))
    };
    let (labels, s) = grid("labels")?;
    if s != shape {
        return Err(err(format!("`labels` has shape {s:?}, `input_ids` {shape:?}")));
    }
    let batch = Batch {
        input_ids: Tensor::from_data(TensorData::new(ids, shape), device),
        attention_mask: t("attention_mask")?,
        token_type_ids: None,
    };
    let (replacements, s) = grid("replacements")?;
    if s != shape {
        return Err(err(format!("`replacements` has shape {s:?}, `input_ids` {shape:?}")));
    }
    Ok((MaskedBatch::new(batch, labels), replacements))
}

/// Replaces every parameter by its gradient (zeros where there is none), so the usual
/// checkpoint naming applies to gradients too.
struct ToGrad<'a, B: AutodiffBackend> {
    grads: &'a B::Gradients,
}

impl<B: AutodiffBackend> ModuleMapper<B> for ToGrad<'_, B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let grad = tensor.grad(self.grads).unwrap_or_else(|| tensor.inner().zeros_like());
        Param::from_mapped_value(id, Tensor::from_inner(grad), mapper)
    }
}

fn grads_of<B: AutodiffBackend>(
    model: DebertaModel<B>,
    config: &DebertaConfig,
    grads: &B::Gradients,
    prefix: &str,
) -> TensorMap {
    let model = model.map(&mut ToGrad::<B> { grads });
    checkpoint_tensors(&model, config).into_iter().map(|(k, v)| (format!("{prefix}{k}"), v)).collect()
}

/// Losses (`mlm_loss`, `rtd_loss`, shape [1]) and gradients (`generator.*`, `discriminator.*`).
#[allow(clippy::too_many_arguments)]
pub fn rtd_step_gradients<B: AutodiffBackend>(
    generator: DebertaModel<B>,
    generator_config: &DebertaConfig,
    discriminator: DebertaModel<B>,
    discriminator_config: &DebertaConfig,
    delta: Option<Tensor<B, 2>>,
    masked: &MaskedBatch<B>,
    replacements: Vec<i64>,
    lambda: f64,
) -> TensorMap {
    let mut out = TensorMap::new();
    let (mlm, _) = mlm_loss(&generator, masked);
    out.insert("mlm_loss".into(), HostTensor::from_burn(mlm.clone().into_data()));
    let grads = mlm.backward();
    let e_g = generator_word_embedding(&generator);
    out.extend(grads_of(generator, generator_config, &grads, "generator."));

    let mut disc = Discriminator::new(discriminator, EmbeddingSharing::Gdes);
    if let Some(d) = delta {
        disc.word_embeddings_delta = Some(Param::from_tensor(d));
    }
    let (batch, targets) = replaced_batch(masked, masked.picks.iter().map(|&k| replacements[k]));
    let emb = disc.embedding(e_g, EmbeddingSharing::Gdes);
    let rtd = rtd_loss(disc.logits(emb, &batch), targets, &batch.attention_mask, lambda);
    out.insert("rtd_loss".into(), HostTensor::from_burn(rtd.clone().into_data()));
    let grads = rtd.backward();
    let delta = disc.word_embeddings_delta.as_ref().expect("GDES delta");
    let delta_grad = delta.val().grad(&grads).expect("E_delta is in the RTD graph");
    out.insert(format!("discriminator.{DELTA_KEY}"), HostTensor::from_burn(delta_grad.into_data()));
    out.extend(grads_of(disc.model, discriminator_config, &grads, "discriminator."));
    out
}

/// Runs the first `steps` (default: all) steps of a trajectory fixture written by
/// `scripts/rtd_trajectory.py`: `generator/` (and `discriminator/`) initial weights,
/// `batches.safetensors` (masked `input_ids`, `attention_mask`, `labels`, sampling `uniforms`,
/// each `[N, B, L]`) and `settings.json` (the run [`Settings`]). Every step goes through [`Pretrainer::masked_step`],
/// the function real runs use, with the fixture's masking and uniforms in place of our own.
pub fn rtd_steps<B: AutodiffBackend>(
    dir: &Path,
    steps: Option<u64>,
    device: &B::Device,
) -> Result<Vec<StepReport>, IoError> {
    let settings_path = dir.join("settings.json");
    let text = std::fs::read_to_string(&settings_path).map_err(|e| IoError::file(&settings_path, e))?;
    let settings: Settings = serde_json::from_str(&text)
        .map_err(|e| IoError::Input { path: settings_path.clone(), message: e.to_string() })?;
    let options = LoadOptions::default();
    let generator = load_model::<B>(&dir.join("generator"), &options, device)?;
    let discriminator = match settings.objective {
        Objective::Rtd => Some(load_model::<B>(&dir.join("discriminator"), &options, device)?),
        Objective::Mlm => None,
    };
    let batches_path = dir.join("batches.safetensors");
    let batches = read_safetensors(&batches_path)?;
    let get = |key: &str| {
        batches.get(key).filter(|t| t.shape.len() == 3).ok_or_else(|| IoError::Input {
            path: batches_path.clone(),
            message: format!("no `{key}` of shape [steps, batch, length]"),
        })
    };
    let (ids, mask, labels, uniforms) =
        (get("input_ids")?, get("attention_mask")?, get("labels")?, get("uniforms")?);
    let [n, b, l] = [ids.shape[0], ids.shape[1], ids.shape[2]];
    for other in [mask, labels, uniforms] {
        if other.shape != ids.shape {
            return Err(IoError::Input {
                path: batches_path.clone(),
                message: format!("shapes differ: {:?} vs `input_ids` {:?}", other.shape, ids.shape),
            });
        }
    }
    if settings.batch_size != b || settings.seq_len != l {
        return Err(IoError::Input {
            path: settings_path,
            message: format!(
                "batch_size/seq_len {}/{} but batches of {b} x {l}",
                settings.batch_size, settings.seq_len
            ),
        });
    }
    let (disc_config, disc) = match discriminator {
        Some(d) => (Some(d.config), Some(Discriminator::new(d.model, settings.sharing))),
        None => (None, None),
    };
    let mut run =
        Pretrainer::assemble(settings, generator.config, generator.model, disc_config, disc, device);
    let steps = steps.map_or(n, |s| (s as usize).min(n));
    let ints = |v: &[f32]| v.iter().map(|&x| x as i64).collect::<Vec<i64>>();
    let mut reports = Vec::with_capacity(steps);
    for s in 0..steps {
        let range = s * b * l..(s + 1) * b * l;
        let batch = Batch {
            input_ids: Tensor::from_data(TensorData::new(ints(&ids.data[range.clone()]), [b, l]), device),
            attention_mask: Tensor::from_data(
                TensorData::new(ints(&mask.data[range.clone()]), [b, l]),
                device,
            ),
            token_type_ids: None,
        };
        let masked = MaskedBatch::new(batch, ints(&labels.data[range.clone()]));
        let u: Vec<f32> = masked.picks.iter().map(|&k| uniforms.data[range.start + k]).collect();
        reports.push(run.masked_step(&masked, &u));
    }
    Ok(reports)
}
