//! The pre-training run (docs/pretraining.md): batches of corpus lines are masked by the official
//! rule, then one RTD step (generator, then discriminator) or one MLM step is taken, and the
//! whole state can be checkpointed and resumed bit-identically.
//!
//! Every random draw of step `s` comes from generators seeded by `(seed, s)`: masking and
//! replacement sampling from a ChaCha stream on the host, dropout from the backend seeded
//! afresh before the step. A resumed run therefore needs only the step number, the weights and
//! the optimiser moments to repeat exactly what the uninterrupted run would have done.

pub mod run;

use crate::masking::{mask_row, MaskingConfig};
use crate::metrics::json_number;
use crate::optim::{warmup_linear, AdamW, AdamWConfig};
use crate::rtd::{
    generator_word_embedding, merged_embedding, mlm_loss, replace, rtd_loss, Discriminator, EmbeddingSharing,
    MaskedBatch, RtdTrainer, StepStats,
};
use crate::state::{load_module_tensors, module_tensors, param_paths};
use burn::module::{AutodiffModule, Param};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use deberta_data::metrics::roc_auc;
use deberta_io::tensors::{read_safetensors, write_atomic, write_safetensors};
use deberta_io::{save_model, IoError, TensorMap};
use deberta_model::{Batch, DebertaConfig, DebertaModel, Head};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// Replaced token detection: generator (MLM, EMD head) + discriminator.
    Rtd,
    /// The MLM-only baseline: one model of the discriminator's shape, 80/10/10 masking.
    Mlm,
}

/// Token ids the data path needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Vocabulary {
    pub pad: i64,
    pub cls: i64,
    pub sep: i64,
    pub unk: i64,
    pub mask: i64,
    /// Ordinary pieces (random MLM replacements): `[first, end)`.
    pub pieces: (i64, i64),
}

impl Vocabulary {
    fn special(&self, t: i64) -> bool {
        t == self.pad || t == self.cls || t == self.sep || t == self.unk || t == self.mask
    }
}

/// Everything that decides a run's numbers; saved with every checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    pub objective: Objective,
    pub sharing: EmbeddingSharing,
    /// Weight of the RTD loss (official code 10; ELECTRA and the paper 50).
    pub rtd_lambda: f64,
    pub lr: f64,
    pub warmup_steps: u64,
    pub steps: u64,
    pub batch_size: usize,
    pub seq_len: usize,
    pub seed: u64,
    pub adam: AdamWConfig,
    pub vocabulary: Vocabulary,
    /// Lines at the end of the corpus kept out of training for evaluation (they decide which
    /// lines the batches hold, so a resumed run keeps the number it started with).
    #[serde(default)]
    pub eval_lines: usize,
}

/// A recipe's hyper-parameter defaults (flags override each).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recipe {
    pub lr: f64,
    pub warmup_steps: u64,
    pub bias_correction: bool,
    pub rtd_lambda: f64,
}

impl Recipe {
    /// For tiny to xsmall models and 10^2 to 10^4 steps (chosen by experiment: NOTES.md,
    /// "Pre-training that learns"). A short warmup makes uncorrected Adam's first updates several
    /// times the nominal learning rate, so the moments are bias-corrected here.
    pub fn small(steps: u64) -> Self {
        Recipe { lr: 1e-3, warmup_steps: (steps / 10).max(1), bias_correction: true, rtd_lambda: 10.0 }
    }

    /// The official DeBERTaV3 recipe: rtd_xsmall's lr 3e-4, 10,000 warmup steps (whatever the
    /// run's length; capped here at it), XAdam without bias correction, lambda 10.
    pub fn official(steps: u64) -> Self {
        Recipe { lr: 3e-4, warmup_steps: 10_000.min(steps), bias_correction: false, rtd_lambda: 10.0 }
    }
}

/// A fixed salt so the masking stream never coincides with the data-order stream.
const MASKING_SALT: u64 = 0x6d61_736b_696e_6721;
const DROPOUT_SALT: u64 = 0x6472_6f70_6f75_7421;
const EVAL_SALT: u64 = 0x6576_616c_7561_7465;

pub struct Pretrainer<B: AutodiffBackend> {
    pub settings: Settings,
    /// The generator (RTD) or the MLM model (MLM objective).
    pub generator_config: DebertaConfig,
    pub generator: DebertaModel<B>,
    pub discriminator_config: Option<DebertaConfig>,
    pub discriminator: Option<Discriminator<B>>,
    pub trainer: RtdTrainer<B>,
    /// Steps taken so far.
    pub step: u64,
    device: B::Device,
}

/// The result of one step, with the learning rate it used.
#[derive(Debug, Clone, Copy)]
pub struct StepReport {
    pub step: u64,
    pub lr: f64,
    pub stats: StepStats,
    pub tokens: usize,
}

/// Held-out metrics at a step (see [`Pretrainer::evaluate`]). RTD metrics are over real tokens;
/// under the MLM objective they are NaN.
#[derive(Debug, Clone, Copy)]
pub struct EvalReport {
    pub step: u64,
    /// Generator cross-entropy over the picks (nats) and its top-1 accuracy there.
    pub mlm_loss: f64,
    pub mlm_accuracy: f64,
    /// `lambda` x mean BCE, as the training `rtd_loss`.
    pub rtd_loss: f64,
    pub rtd_accuracy: f64,
    /// Area under the ROC curve of the RTD logits against "replaced" (0.5: no better than chance).
    pub rtd_auc: f64,
    pub replaced_fraction: f64,
}

impl EvalReport {
    /// The `metrics.jsonl` record (non-finite values as `null`).
    pub fn to_json(&self) -> serde_json::Value {
        let finite = json_number;
        serde_json::json!({
            "step": self.step,
            "eval_mlm_loss": finite(self.mlm_loss),
            "eval_mlm_accuracy": finite(self.mlm_accuracy),
            "eval_rtd_loss": finite(self.rtd_loss),
            "eval_rtd_accuracy": finite(self.rtd_accuracy),
            "eval_rtd_auc": finite(self.rtd_auc),
            "eval_replaced_fraction": finite(self.replaced_fraction),
        })
    }
}

impl StepReport {
    /// The step's record as `metrics.jsonl` holds it (non-finite values as `null`).
    pub fn to_json(&self) -> serde_json::Value {
        let finite = json_number;
        serde_json::json!({
            "step": self.step,
            "lr": self.lr,
            "mlm_loss": finite(self.stats.mlm_loss as f64),
            "rtd_loss": finite(self.stats.rtd_loss as f64),
            "generator_grad_norm": finite(self.stats.generator_grad_norm),
            "discriminator_grad_norm": finite(self.stats.discriminator_grad_norm),
            "replaced_fraction": finite(self.stats.replaced_fraction as f64),
            "tokens": self.tokens,
        })
    }
}

impl<B: AutodiffBackend> Pretrainer<B> {
    /// Fresh models: the generator with the EMD head, the discriminator with the RTD head.
    /// `generator_config` is the MLM model's for the MLM objective (and the discriminator is
    /// absent).
    pub fn new(
        settings: Settings,
        generator_config: DebertaConfig,
        discriminator_config: Option<DebertaConfig>,
        device: &B::Device,
    ) -> Self {
        B::seed(device, settings.seed);
        let generator = DebertaModel::new(&generator_config, Head::EnhancedMaskDecoderLm, device);
        let discriminator = discriminator_config.as_ref().map(|c| {
            Discriminator::new(DebertaModel::new(c, Head::ReplacedTokenDetection, device), settings.sharing)
        });
        Self::assemble(settings, generator_config, generator, discriminator_config, discriminator, device)
    }

    /// Starts from given (e.g. pre-trained) models.
    pub fn assemble(
        settings: Settings,
        generator_config: DebertaConfig,
        generator: DebertaModel<B>,
        discriminator_config: Option<DebertaConfig>,
        discriminator: Option<Discriminator<B>>,
        device: &B::Device,
    ) -> Self {
        let trainer = RtdTrainer {
            sharing: settings.sharing,
            lambda: settings.rtd_lambda,
            generator_opt: AdamW::new(settings.adam),
            discriminator_opt: AdamW::new(settings.adam),
        };
        Pretrainer {
            settings,
            generator_config,
            generator,
            discriminator_config,
            discriminator,
            trainer,
            step: 0,
            device: device.clone(),
        }
    }

    fn masking(&self) -> MaskingConfig {
        let s = &self.settings;
        let rtd = MaskingConfig::for_length(s.seq_len, s.vocabulary.mask);
        match s.objective {
            Objective::Rtd => rtd,
            Objective::Mlm => rtd.mlm(s.vocabulary.pieces.0..s.vocabulary.pieces.1),
        }
    }

    /// Masks `rows` (each `[CLS] ... [SEP]`, at most `seq_len` long) with the step's random
    /// stream and pads them to the longest; also returns that stream for sampling.
    fn masked_batch(&self, rows: &[Vec<u32>]) -> (MaskedBatch<B>, rand_chacha::ChaCha8Rng) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.settings.seed ^ MASKING_SALT);
        rng.set_stream(self.step);
        let masked = self.mask_rows(rows, &mut rng, &self.device);
        (masked, rng)
    }

    /// Masks `rows` by the objective's rule with `rng` and pads them to the longest.
    fn mask_rows<C: Backend>(
        &self,
        rows: &[Vec<u32>],
        rng: &mut rand_chacha::ChaCha8Rng,
        device: &C::Device,
    ) -> MaskedBatch<C> {
        let masking = self.masking();
        let vocab = &self.settings.vocabulary;
        let width = rows.iter().map(Vec::len).max().unwrap_or(0);
        let (mut ids, mut labels, mut mask) = (Vec::new(), Vec::new(), Vec::new());
        for row in rows {
            let row: Vec<i64> = row.iter().map(|&t| t as i64).collect();
            let m = mask_row(&row, |t| vocab.special(t), &masking, rng);
            let pad = width - row.len();
            ids.extend(m.input_ids.into_iter().chain(std::iter::repeat_n(vocab.pad, pad)));
            labels.extend(m.labels.into_iter().chain(std::iter::repeat_n(0, pad)));
            mask.extend(std::iter::repeat_n(1i64, row.len()).chain(std::iter::repeat_n(0, pad)));
        }
        let shape = [rows.len(), width];
        let batch = Batch {
            input_ids: Tensor::from_data(TensorData::new(ids, shape), device),
            attention_mask: Tensor::from_data(TensorData::new(mask, shape), device),
            token_type_ids: None,
        };
        MaskedBatch::new(batch, labels)
    }

    /// Held-out metrics of the current models on `rows` (in batches of `batch_size`). The masks
    /// and sampling uniforms come from a fixed stream, so every evaluation of a run scores the
    /// same picks: the curves show the models changing, not the draw.
    pub fn evaluate(&self, rows: &[Vec<u32>], batch_size: usize) -> EvalReport {
        let generator = self.generator.valid();
        let discriminator = self.discriminator.as_ref().map(|d| d.valid());
        let sharing = self.settings.sharing;
        let (mut mlm_sum, mut rtd_sum, mut picks, mut correct, mut replaced) =
            (0f64, 0f64, 0usize, 0usize, 0usize);
        let (mut scores, mut targets) = (Vec::new(), Vec::new());
        for (i, chunk) in rows.chunks(batch_size.max(1)).enumerate() {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.settings.seed ^ EVAL_SALT);
            rng.set_stream(i as u64);
            let masked = self.mask_rows::<B::InnerBackend>(chunk, &mut rng, &self.device);
            let n = masked.picks.len();
            if n == 0 {
                continue;
            }
            let (loss, logits) = mlm_loss(&generator, &masked);
            mlm_sum += loss.into_scalar().elem::<f64>() * n as f64;
            picks += n;
            let predicted: Vec<i64> =
                logits.clone().argmax(1).into_data().convert::<i64>().into_vec().expect("ints");
            correct += masked.picks.iter().zip(&predicted).filter(|(&k, &p)| masked.labels[k] == p).count();
            let Some(d) = &discriminator else { continue };
            let uniforms: Vec<f32> = (0..n).map(|_| rng.random()).collect();
            let (batch, t) = replace(logits, &masked, &uniforms);
            let x = d.logits(d.embedding(generator_word_embedding(&generator), sharing), &batch);
            // The training loss's own function (lambda x mean BCE over real tokens), weighted by
            // the batch's real tokens so the total is the mean over all of them.
            let loss = rtd_loss(x.clone(), t.clone(), &batch.attention_mask, self.settings.rtd_lambda);
            let x: Vec<f32> = x.into_data().convert::<f32>().into_vec().expect("floats");
            let t: Vec<f32> = t.into_data().convert::<f32>().into_vec().expect("floats");
            let m: Vec<i64> = batch.attention_mask.into_data().convert::<i64>().into_vec().expect("ints");
            let before = scores.len();
            for k in (0..x.len()).filter(|&k| m[k] > 0) {
                scores.push(x[k] as f64);
                targets.push(t[k] > 0.5);
            }
            rtd_sum += loss.into_scalar().elem::<f64>() * (scores.len() - before) as f64;
            replaced += masked.picks.iter().filter(|&&k| t[k] > 0.5).count();
        }
        let nan = f64::NAN;
        let mut report = EvalReport {
            step: self.step,
            mlm_loss: if picks > 0 { mlm_sum / picks as f64 } else { nan },
            mlm_accuracy: if picks > 0 { correct as f64 / picks as f64 } else { nan },
            rtd_loss: nan,
            rtd_accuracy: nan,
            rtd_auc: nan,
            replaced_fraction: nan,
        };
        if !scores.is_empty() {
            report.rtd_loss = rtd_sum / scores.len() as f64;
            report.rtd_accuracy = scores.iter().zip(&targets).filter(|(&x, &t)| (x > 0.0) == t).count()
                as f64
                / scores.len() as f64;
            report.rtd_auc = roc_auc(&scores, &targets).unwrap_or(nan);
            report.replaced_fraction = replaced as f64 / picks.max(1) as f64;
        }
        report
    }

    /// One training step on `rows`: masked with the step's random stream, which then draws the
    /// sampling uniforms.
    pub fn train_step(&mut self, rows: &[Vec<u32>]) -> StepReport {
        let (masked, mut rng) = self.masked_batch(rows);
        let uniforms: Vec<f32> = match self.discriminator {
            Some(_) => (0..masked.picks.len()).map(|_| rng.random()).collect(),
            None => Vec::new(),
        };
        self.masked_step(&masked, &uniforms)
    }

    /// One training step on an already masked batch, sampling replacements with `uniforms`
    /// (one per pick; unused by the MLM objective). Dropout is seeded by `(seed, step)`.
    pub fn masked_step(&mut self, masked: &MaskedBatch<B>, uniforms: &[f32]) -> StepReport {
        let s = &self.settings;
        let lr = warmup_linear(self.step, s.lr, s.warmup_steps, s.steps);
        let tokens = masked.real_tokens();
        B::seed(&self.device, (self.settings.seed ^ DROPOUT_SALT).wrapping_add(self.step));
        let stats = match &self.discriminator {
            Some(discriminator) => {
                let (g, d, stats) =
                    self.trainer.step(lr, self.generator.clone(), discriminator.clone(), masked, uniforms);
                self.generator = g;
                self.discriminator = Some(d);
                stats
            }
            None => {
                let (g, stats) = self.trainer.mlm_step(lr, self.generator.clone(), masked);
                self.generator = g;
                stats
            }
        };
        self.step += 1;
        StepReport { step: self.step, lr, stats, tokens }
    }

    /// Writes `dir/checkpoints/step-NNNNNNNN/` (via a temporary directory renamed into place),
    /// then points `dir/checkpoints/latest` at it, then keeps only the newest `keep`.
    pub fn save_checkpoint(&self, dir: &Path, keep: usize) -> Result<PathBuf, IoError> {
        let root = dir.join("checkpoints");
        let name = format!("step-{:08}", self.step);
        let final_dir = root.join(&name);
        if !final_dir.exists() {
            let tmp = root.join(format!(".{name}.tmp"));
            if tmp.exists() {
                std::fs::remove_dir_all(&tmp).map_err(|e| IoError::file(&tmp, e))?;
            }
            std::fs::create_dir_all(&tmp).map_err(|e| IoError::file(&tmp, e))?;
            write_safetensors(&tmp.join("generator.safetensors"), &module_tensors(&self.generator))?;
            let mut optimizer =
                self.trainer.generator_opt.state_tensors(&param_paths(&self.generator), "generator.");
            if let Some(d) = &self.discriminator {
                write_safetensors(&tmp.join("discriminator.safetensors"), &module_tensors(d))?;
                optimizer
                    .extend(self.trainer.discriminator_opt.state_tensors(&param_paths(d), "discriminator."));
            }
            write_safetensors(&tmp.join("optimizer.safetensors"), &optimizer)?;
            let state = serde_json::json!({
                "step": self.step,
                "settings": self.settings,
                "generator_config": self.generator_config.to_json_value(Head::EnhancedMaskDecoderLm),
                "discriminator_config": self.discriminator_config.as_ref()
                    .map(|c| c.to_json_value(Head::ReplacedTokenDetection)),
                "generator_optimizer_steps": self.trainer.generator_opt.steps,
                "discriminator_optimizer_steps": self.trainer.discriminator_opt.steps,
            });
            let text = serde_json::to_string_pretty(&state).expect("JSON value") + "\n";
            write_atomic(&tmp.join("state.json"), text.as_bytes())?;
            std::fs::rename(&tmp, &final_dir).map_err(|e| IoError::file(&final_dir, e))?;
        }
        write_atomic(&root.join("latest"), format!("{name}\n").as_bytes())?;
        let mut all: Vec<PathBuf> = std::fs::read_dir(&root)
            .map_err(|e| IoError::file(&root, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("step-")))
            .collect();
        all.sort();
        let excess = all.len().saturating_sub(keep.max(1));
        for old in &all[..excess] {
            std::fs::remove_dir_all(old).map_err(|e| IoError::file(old, e))?;
        }
        Ok(final_dir)
    }

    /// The checkpoint `dir/checkpoints/latest` names, if any.
    pub fn latest_checkpoint(dir: &Path) -> Result<Option<PathBuf>, IoError> {
        let latest = dir.join("checkpoints").join("latest");
        match std::fs::read_to_string(&latest) {
            Ok(name) => Ok(Some(dir.join("checkpoints").join(name.trim()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(IoError::file(&latest, e)),
        }
    }

    /// Restores a run from a checkpoint directory written by [`Pretrainer::save_checkpoint`].
    pub fn resume(checkpoint: &Path, device: &B::Device) -> Result<Self, IoError> {
        let state_path = checkpoint.join("state.json");
        let corrupt = |message: String| IoError::Checkpoint { path: state_path.clone(), message };
        let text = std::fs::read_to_string(&state_path).map_err(|e| IoError::file(&state_path, e))?;
        let state: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| corrupt(format!("invalid JSON: {e}")))?;
        let settings: Settings = serde_json::from_value(state["settings"].clone())
            .map_err(|e| corrupt(format!("`settings`: {e}")))?;
        let config = |key: &str| -> Result<Option<DebertaConfig>, IoError> {
            match &state[key] {
                serde_json::Value::Object(map) => DebertaConfig::from_map(map.clone())
                    .map(Some)
                    .map_err(|error| IoError::Config { path: state_path.clone(), error }),
                serde_json::Value::Null => Ok(None),
                _ => Err(corrupt(format!("`{key}` is not an object"))),
            }
        };
        let generator_config =
            config("generator_config")?.ok_or_else(|| corrupt("no `generator_config`".into()))?;
        let discriminator_config = config("discriminator_config")?;
        let count = |key: &str| state[key].as_u64().ok_or_else(|| corrupt(format!("`{key}` is not a count")));
        let step = count("step")?;
        crate::validate::check_pretrain_run(&settings, &generator_config, discriminator_config.as_ref())
            .map_err(|e| corrupt(format!("the saved run cannot continue: {e}")))?;

        let mut run = Self::new(settings, generator_config, discriminator_config, device);
        let file = checkpoint.join("generator.safetensors");
        run.generator = load_module_tensors(run.generator, read_safetensors(&file)?, &file)?;
        if let Some(d) = run.discriminator.take() {
            let file = checkpoint.join("discriminator.safetensors");
            run.discriminator = Some(load_module_tensors(d, read_safetensors(&file)?, &file)?);
        }
        let file = checkpoint.join("optimizer.safetensors");
        let mut moments: TensorMap = read_safetensors(&file)?;
        let inner = device.clone();
        let paths = param_paths(&run.generator);
        run.trainer.generator_opt.load_state_tensors(&paths, &mut moments, "generator.", &inner, &file)?;
        if let Some(d) = &run.discriminator {
            let paths = param_paths(d);
            run.trainer.discriminator_opt.load_state_tensors(
                &paths,
                &mut moments,
                "discriminator.",
                &inner,
                &file,
            )?;
        }
        if let Some(extra) = moments.keys().next() {
            return Err(IoError::Checkpoint { path: file, message: format!("unexpected `{extra}`") });
        }
        run.trainer.generator_opt.steps = count("generator_optimizer_steps")?;
        run.trainer.discriminator_opt.steps = count("discriminator_optimizer_steps")?;
        run.step = step;
        Ok(run)
    }

    /// Writes the models as HF directories: RTD -> `discriminator/` (word embeddings
    /// `E_G + E_delta` under GDES, RTD head under `mask_predictions.*`) and `generator/`
    /// (EMD head); MLM -> `model/`. Returns the directories written.
    pub fn export(&self, out: &Path) -> Result<Vec<PathBuf>, IoError> {
        let generator = self.generator.valid();
        match (&self.discriminator, &self.discriminator_config) {
            (Some(discriminator), Some(config)) => {
                let mut model = discriminator.model.valid();
                let merged = merged_embedding(&self.generator, discriminator, self.settings.sharing);
                model.deberta.embeddings.word_embeddings.weight = Param::from_tensor(merged);
                let (d, g) = (out.join("discriminator"), out.join("generator"));
                save_model(&model, config, &d)?;
                save_model(&generator, &self.generator_config, &g)?;
                Ok(vec![d, g])
            }
            _ => {
                let dir = out.join("model");
                save_model(&generator, &self.generator_config, &dir)?;
                Ok(vec![dir])
            }
        }
    }

    pub fn device(&self) -> &B::Device {
        &self.device
    }
}

impl Default for Settings {
    /// The official recipe's knobs at tiny scale; callers set vocabulary and sizes.
    fn default() -> Self {
        Settings {
            objective: Objective::Rtd,
            sharing: EmbeddingSharing::Gdes,
            rtd_lambda: 10.0,
            lr: 5e-4,
            warmup_steps: 0,
            steps: 1,
            batch_size: 8,
            seq_len: 128,
            seed: 42,
            adam: AdamWConfig::default(),
            vocabulary: Vocabulary { pad: 0, cls: 1, sep: 2, unk: 3, mask: 128000, pieces: (4, 128000) },
            eval_lines: 0,
        }
    }
}
