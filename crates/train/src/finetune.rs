//! Fine-tuning and evaluation on the downstream tasks (GLUE, XNLI, SWAG, SQuAD, CoNLL-2003,
//! caller-described CSV/JSONL): the training loop, evaluation each epoch, and the best checkpoint
//! kept as an HF directory.
//!
//! - **Batches** are length-bucketed and padded to their longest row ([`batching`]).
//! - **Gradient accumulation**: an optimiser step covers `batch_size * grad_accum` features, cut
//!   into `grad_accum` micro-batches of `batch_size`; each micro-batch's mean loss is weighted by
//!   its share of the step's loss units (rows; labelled tokens for NER), so the summed gradient
//!   is the gradient of the step's mean loss, as if the whole step were one batch.
//! - **Optimiser**: AdamW (our [`crate::optim`], torch's bias correction by default; no decay on
//!   biases and LayerNorms), global-norm clipping, linear warmup then linear decay to 0, and
//!   optional layer-wise learning-rate decay ([`llrd`]).
//! - **Determinism**: the data order comes from ChaCha8 seeded by `(seed, epoch)`; dropout from
//!   the backend seeded before every optimiser step with `seed` and the step number. The caller
//!   seeds the backend before initialising a new head. Flex has one process-wide generator, so
//!   runs in one process must not overlap.
//! - **Evaluation** each epoch on every dev file, with the task's official metrics; the first
//!   metric of the first dev file decides the best epoch, whose model is written to `out/best`
//!   (a complete HF directory, renamed into place) with the tokenizer, `finetune.json` (what
//!   `evaluate` and `predict` need to repeat the evaluation exactly) and `eval_results.json`.

pub mod batching;
pub mod llrd;
pub mod recipe;
pub mod task;

use crate::metrics::{json_number, MetricsLog};
use crate::optim::{learning_rate, AdamW, AdamWConfig};
use batching::{class_targets, eval_batches, pad, score_targets, span_targets, token_targets, train_batches};
use burn::module::AutodiffModule;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;
use burn::store::ModuleSnapshot;
use burn::tensor::backend::AutodiffBackend;
use deberta_data::metrics::MetricError;
use deberta_data::squad::AnswerOptions;
use deberta_data::tasks::TaskError;
use deberta_io::{save_model, IoError};
use deberta_model::loss::{cross_entropy, mse};
use deberta_model::{DebertaConfig, DebertaModel, Head, Logits};
use recipe::Warmup;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;
use task::{Evaluation, Feature, FeatureOptions, GenericSpec, Output, Task, TaskData};

#[derive(Debug, thiserror::Error)]
pub enum FinetuneError {
    #[error(transparent)]
    Task(#[from] TaskError),
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("metrics: {0}")]
    Metric(#[from] MetricError),
    #[error(transparent)]
    Tokenizer(#[from] deberta_tokenizer::TokenizerError),
    #[error(transparent)]
    Config(#[from] deberta_model::ConfigError),
    #[error("{path}: {source}")]
    File { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, FinetuneError>;

fn file_error(path: &Path) -> impl FnOnce(std::io::Error) -> FinetuneError + '_ {
    move |source| FinetuneError::File { path: path.to_path_buf(), source }
}

/// Answer decoding settings as saved in `finetune.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnswerCard {
    pub n_best: usize,
    pub max_answer_length: usize,
    pub null_threshold: f64,
}

impl AnswerCard {
    pub fn options(&self, task: &Task) -> AnswerOptions {
        AnswerOptions {
            n_best: self.n_best,
            max_answer_length: self.max_answer_length,
            null_threshold: self.null_threshold,
            allow_no_answer: matches!(task, Task::Squad { version_2: true }),
        }
    }
}

impl Default for AnswerCard {
    fn default() -> Self {
        let d = AnswerOptions::default();
        AnswerCard {
            n_best: d.n_best,
            max_answer_length: d.max_answer_length,
            null_threshold: d.null_threshold,
        }
    }
}

/// `finetune.json` in a fine-tuned model directory: the task and everything an evaluation
/// depends on, so `evaluate` reproduces the training-time score and `predict` encodes inputs
/// the way training did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskCard {
    pub task: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generic: Option<GenericSpec>,
    /// Class names in id order (empty for regression, multiple choice, QA).
    pub labels: Vec<String>,
    pub features: FeatureOptions,
    pub eval_batch_size: usize,
    #[serde(default)]
    pub answer: AnswerCard,
}

pub const TASK_CARD: &str = "finetune.json";

impl TaskCard {
    pub fn read(dir: &Path) -> Result<Option<TaskCard>> {
        let path = dir.join(TASK_CARD);
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(file_error(&path))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| FinetuneError::Invalid(format!("{}: {e}", path.display())))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("JSON") + "\n"
    }
}

/// The training hyper-parameters (see [`recipe`] for the per-task defaults).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Settings {
    pub epochs: usize,
    pub lr: f64,
    /// Features per forward/backward (micro-batch).
    pub batch_size: usize,
    /// Micro-batches per optimiser step.
    pub grad_accum: usize,
    pub warmup: Warmup,
    pub adam: AdamWConfig,
    /// Layer-wise learning-rate decay factor (`None`: off).
    pub llrd: Option<f64>,
    pub seed: u64,
    pub eval_batch_size: usize,
    /// Length-bucketed batches (else plain shuffled ones).
    pub bucket: bool,
    /// Stop after this many optimiser steps (the schedule still spans all epochs).
    pub max_steps: Option<u64>,
}

impl Settings {
    pub fn effective_batch(&self) -> usize {
        self.batch_size.max(1) * self.grad_accum.max(1)
    }
}

/// The config a task model gets: the task's labels (`id2label`/`label2id`; `num_labels` follows
/// from them, as HF writes it), optional dropout overrides, `finetuning_task`.
pub fn task_config(
    base: &DebertaConfig,
    task: &Task,
    labels: &[String],
    cls_dropout: Option<f64>,
    dropout: Option<f64>,
) -> Result<DebertaConfig> {
    let mut raw = base.raw.clone();
    raw.remove("num_labels");
    let outputs = task.num_outputs(labels);
    let names: Vec<String> = if labels.len() == outputs {
        labels.to_vec()
    } else {
        (0..outputs).map(|i| format!("LABEL_{i}")).collect()
    };
    let id2label: Map<String, Value> =
        names.iter().enumerate().map(|(i, n)| (i.to_string(), Value::from(n.clone()))).collect();
    let label2id: Map<String, Value> =
        names.iter().enumerate().map(|(i, n)| (n.clone(), Value::from(i))).collect();
    raw.insert("id2label".into(), Value::Object(id2label));
    raw.insert("label2id".into(), Value::Object(label2id));
    raw.insert("finetuning_task".into(), Value::from(task.name()));
    if let Some(p) = cls_dropout {
        raw.insert("cls_dropout".into(), Value::from(p));
    }
    if let Some(p) = dropout {
        raw.insert("hidden_dropout_prob".into(), Value::from(p));
        raw.insert("attention_probs_dropout_prob".into(), Value::from(p));
        if cls_dropout.is_none() {
            raw.insert("cls_dropout".into(), Value::from(p));
        }
    }
    Ok(DebertaConfig::from_map(raw)?)
}

/// A model with `config` (the task's, from [`task_config`]) carrying the weights of `loaded`:
/// all of them when `loaded` already had this task head (its label count must then match),
/// else the encoder's, the new head keeping its initialisation (seed the backend first).
pub fn task_model<B: Backend>(
    loaded: &DebertaModel<B>,
    loaded_config: &DebertaConfig,
    head_initialised: bool,
    config: &DebertaConfig,
    device: &B::Device,
) -> Result<DebertaModel<B>> {
    let head = loaded.head();
    if !head_initialised
        && matches!(head, Head::SequenceClassification | Head::TokenClassification)
        && loaded_config.num_labels != config.num_labels
    {
        return Err(FinetuneError::Invalid(format!(
            "the model's {} head has {} outputs ({}), the task needs {}",
            head.architecture(),
            loaded_config.num_labels,
            labels_of(loaded_config).join(", "),
            config.num_labels
        )));
    }
    let mut model = DebertaModel::<B>::new(config, head, device);
    let snapshots = loaded
        .collect(None, None, false)
        .into_iter()
        .filter(|s| !head_initialised || s.full_path().starts_with("deberta."))
        .collect();
    let result = model.apply(snapshots, None, None, false);
    if !result.errors.is_empty() || !result.unused.is_empty() {
        let mut problems: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
        problems.extend(result.unused.iter().map(|p| format!("unexpected `{p}`")));
        return Err(FinetuneError::Invalid(format!(
            "the weights do not fit the task model: {}",
            problems.join("; ")
        )));
    }
    Ok(model)
}

/// `id2label` in id order.
pub fn labels_of(config: &DebertaConfig) -> Vec<String> {
    (0..config.num_labels)
        .map(|i| config.id2label.get(&i).cloned().unwrap_or_else(|| format!("LABEL_{i}")))
        .collect()
}

/// The head's outputs for every feature, in feature order, without dropout (any backend).
pub fn predict_outputs<B: Backend>(
    model: &DebertaModel<B>,
    features: &[Feature],
    batch_size: usize,
    pad_id: u32,
    token_types: bool,
    device: &B::Device,
    mut progress: impl FnMut(usize),
) -> Vec<Output> {
    let lengths: Vec<usize> = features.iter().map(Feature::len).collect();
    let mut outputs: Vec<Option<Output>> = vec![None; features.len()];
    for ids in eval_batches(&lengths, batch_size) {
        let feats: Vec<&Feature> = ids.iter().map(|&i| &features[i]).collect();
        for (&i, o) in ids.iter().zip(batch_outputs(model, &feats, pad_id, token_types, device)) {
            outputs[i] = Some(o);
        }
        progress(feats.len());
    }
    outputs.into_iter().map(|o| o.expect("every feature is in one batch")).collect()
}

/// The head's outputs for one batch of features (padded together; multiple-choice features
/// must have the same number of choices), padding cut off.
pub fn batch_outputs<B: Backend>(
    model: &DebertaModel<B>,
    feats: &[&Feature],
    pad_id: u32,
    token_types: bool,
    device: &B::Device,
) -> Vec<Output> {
    let padded = pad::<B>(feats, pad_id, token_types, device);
    let out = model.forward(&padded.batch, padded.choices);
    let flat = |t: Tensor<B, 2>| -> Vec<f32> { t.into_data().convert::<f32>().to_vec().expect("f32 logits") };
    match model.head() {
        Head::QuestionAnswering => {
            let l = padded.len;
            let (s, e) =
                (flat(out.start_logits.expect("start logits")), flat(out.end_logits.expect("end logits")));
            feats
                .iter()
                .enumerate()
                .map(|(k, f)| {
                    let len = f.len();
                    Output::Span {
                        start: s[k * l..k * l + len].to_vec(),
                        end: e[k * l..k * l + len].to_vec(),
                    }
                })
                .collect()
        }
        _ => match out.logits.expect("logits") {
            Logits::Rank2(t) => {
                let [_, width] = t.dims();
                let v = flat(t);
                (0..feats.len()).map(|k| Output::Vector(v[k * width..(k + 1) * width].to_vec())).collect()
            }
            Logits::Rank3(t) => {
                let [_, l, c] = t.dims();
                let v: Vec<f32> = t.into_data().convert::<f32>().to_vec().expect("f32 logits");
                feats
                    .iter()
                    .enumerate()
                    .map(|(k, f)| {
                        Output::Tokens(
                            (0..f.len()).map(|p| v[(k * l + p) * c..(k * l + p + 1) * c].to_vec()).collect(),
                        )
                    })
                    .collect()
            }
        },
    }
}

/// Mean loss of one micro-batch over its loss units (see [`Feature::loss_units`]).
fn batch_loss<B: AutodiffBackend>(
    model: &DebertaModel<B>,
    task: &Task,
    feats: &[&Feature],
    pad_id: u32,
    token_types: bool,
    device: &B::Device,
) -> Tensor<B, 1> {
    let padded = pad::<B>(feats, pad_id, token_types, device);
    let out = model.forward(&padded.batch, padded.choices);
    match model.head() {
        Head::QuestionAnswering => {
            let [s, e] = span_targets::<B>(feats, device);
            let start = cross_entropy(out.start_logits.expect("start logits"), s);
            let end = cross_entropy(out.end_logits.expect("end logits"), e);
            (start + end) / 2.0
        }
        Head::TokenClassification => {
            let Some(Logits::Rank3(logits)) = out.logits else { unreachable!("token logits") };
            let [b, l, c] = logits.dims();
            cross_entropy(logits.reshape([b * l, c]), token_targets::<B>(feats, l, device))
        }
        _ => {
            let Some(Logits::Rank2(logits)) = out.logits else { unreachable!("sequence logits") };
            if task.is_regression() {
                let [b, _] = logits.dims();
                mse(logits.reshape([b]), score_targets::<B>(feats, device))
            } else {
                cross_entropy(logits, class_targets::<B>(feats, device))
            }
        }
    }
}

/// One optimiser step's report.
#[derive(Clone, Debug)]
pub struct StepReport {
    pub step: u64,
    pub total_steps: u64,
    pub epoch: usize,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub features: usize,
}

/// The evaluation after an epoch.
#[derive(Clone, Debug)]
pub struct EpochReport {
    pub epoch: usize,
    pub step: u64,
    /// Per dev file (its file stem), in order.
    pub evals: Vec<(String, Evaluation)>,
    pub is_best: bool,
}

/// Progress callbacks (the CLI's progress bar).
pub trait Observer {
    fn started(&mut self, _total_steps: u64) {}
    fn step(&mut self, _report: &StepReport) {}
    fn evaluating(&mut self, _set: &str, _features: usize) {}
    fn epoch(&mut self, _report: &EpochReport) {}
}

impl Observer for () {}

/// Everything a run needs besides the model.
pub struct Run<'a> {
    pub task: &'a Task,
    pub train: &'a TaskData,
    /// Dev files, named by their file stem; the first one's first metric picks the best epoch.
    pub dev: &'a [(String, TaskData)],
    pub settings: &'a Settings,
    pub answer: AnswerOptions,
    pub pad_id: u32,
    /// The config the model was built with (saved with the best checkpoint).
    pub config: &'a DebertaConfig,
    /// Extra files for the best checkpoint directory (tokenizer, `finetune.json`).
    pub files: Vec<(String, Vec<u8>)>,
    pub out: &'a Path,
}

/// The outcome of a run.
#[derive(Clone, Debug)]
pub struct Summary {
    pub best_epoch: usize,
    pub best_step: u64,
    /// The best epoch's metrics, flattened as `{set}/{metric}`.
    pub best: Vec<(String, f64)>,
    pub best_dir: PathBuf,
    pub steps: u64,
    pub seconds: f64,
}

/// Flattened metrics of several dev files: `{set}/{metric}`.
pub fn flat_metrics(evals: &[(String, Evaluation)]) -> Vec<(String, f64)> {
    evals.iter().flat_map(|(set, e)| e.metrics.iter().map(move |(k, v)| (format!("{set}/{k}"), *v))).collect()
}

/// The best evaluation so far: its main metric, when, and all its metrics.
struct Best {
    main: f64,
    epoch: usize,
    step: u64,
    metrics: Vec<(String, f64)>,
}

/// Trains `model` on `run.train` for the configured epochs, evaluating after each, keeping the
/// best model in `run.out/best` and writing `run.out/metrics.jsonl`.
pub fn finetune<B: AutodiffBackend>(
    mut model: DebertaModel<B>,
    run: &Run,
    device: &B::Device,
    observer: &mut dyn Observer,
) -> Result<Summary> {
    let s = run.settings;
    if s.epochs == 0 || s.batch_size == 0 || s.grad_accum == 0 || s.eval_batch_size == 0 {
        return Err(FinetuneError::Invalid(
            "epochs, batch size, accumulation and eval batch size must be positive".into(),
        ));
    }
    if !run.train.is_labelled() {
        return Err(FinetuneError::Invalid(format!(
            "{}: the training file has unlabelled rows",
            run.train.path.display()
        )));
    }
    if run.dev.is_empty() {
        return Err(FinetuneError::Invalid("no evaluation file".into()));
    }
    let token_types = run.config.type_vocab_size > 0;
    let features = &run.train.features;
    let lengths: Vec<usize> = features.iter().map(Feature::len).collect();
    let per_epoch = features.len().div_ceil(s.effective_batch()) as u64;
    let schedule_steps = per_epoch * s.epochs as u64;
    let total_steps = s.max_steps.map_or(schedule_steps, |m| m.min(schedule_steps));
    let warmup = s.warmup.steps(schedule_steps);
    let layers = run.config.num_hidden_layers;
    let mut opt = AdamW::<B>::new(s.adam);
    if let Some(decay) = s.llrd {
        opt = opt.with_lr_scale(std::sync::Arc::new(move |path: &str| llrd::multiplier(path, layers, decay)));
    }
    std::fs::create_dir_all(run.out).map_err(file_error(run.out))?;
    let log_path = run.out.join("metrics.jsonl");
    let mut log = MetricsLog::open(&log_path, None).map_err(file_error(&log_path))?;
    let settings_path = run.out.join("finetune_settings.json");
    let settings_json = json!({"task": run.task.name(), "settings": s, "train": run.train.path,
        "train_features": features.len(), "warmup_steps": warmup, "schedule_steps": schedule_steps});
    deberta_io::tensors::write_atomic(
        &settings_path,
        (serde_json::to_string_pretty(&settings_json).expect("JSON") + "\n").as_bytes(),
    )?;

    observer.started(total_steps);
    let started = Instant::now();
    let mut step = 0u64;
    let mut best: Option<Best> = None;
    let best_dir = run.out.join("best");
    for epoch in 1..=s.epochs {
        for group in train_batches(&lengths, s.effective_batch(), s.seed, epoch as u64 - 1, s.bucket) {
            if step >= total_steps {
                break;
            }
            let units: usize = group.iter().map(|&i| features[i].loss_units()).sum();
            let lr = learning_rate(step, s.lr, warmup, schedule_steps);
            B::seed(device, s.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(step));
            let mut accumulator = GradientsAccumulator::<DebertaModel<B>>::new();
            let mut loss_sum = 0.0f64;
            for micro in group.chunks(s.batch_size) {
                let feats: Vec<&Feature> = micro.iter().map(|&i| &features[i]).collect();
                let micro_units: usize = feats.iter().map(|f| f.loss_units()).sum();
                if micro_units == 0 {
                    continue;
                }
                let weight = micro_units as f64 / units as f64;
                let loss = batch_loss(&model, run.task, &feats, run.pad_id, token_types, device) * weight;
                let value: f64 = loss.clone().into_scalar().elem::<f32>() as f64;
                if !value.is_finite() {
                    return Err(FinetuneError::Invalid(format!(
                        "step {}: the loss is not finite ({value}); try a smaller --lr",
                        step + 1
                    )));
                }
                loss_sum += value;
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                accumulator.accumulate(&model, grads);
            }
            if units == 0 {
                continue;
            }
            let (next, grad_norm) = opt.step(lr, model, accumulator.grads());
            model = next;
            step += 1;
            let report =
                StepReport { step, total_steps, epoch, loss: loss_sum, lr, grad_norm, features: group.len() };
            log.append(&json!({"step": step, "epoch": epoch, "loss": json_number(loss_sum), "lr": lr,
                "grad_norm": json_number(grad_norm), "features": group.len(),
                "elapsed_seconds": started.elapsed().as_secs_f64()}))
                .map_err(file_error(&log_path))?;
            observer.step(&report);
        }
        // Evaluate after every epoch (and after the last step when --max-steps cuts an epoch).
        let valid = model.valid();
        let inner_device = device.clone();
        let mut evals = Vec::new();
        for (name, data) in run.dev {
            observer.evaluating(name, data.features.len());
            let outputs = predict_outputs(
                &valid,
                &data.features,
                s.eval_batch_size,
                run.pad_id,
                token_types,
                &inner_device,
                |_| {},
            );
            evals.push((name.clone(), data.score(run.task, &outputs, &run.answer)?));
        }
        let main = evals[0].1.main().map(|(_, v)| v).unwrap_or(f64::NAN);
        let is_best = match &best {
            None => true,
            Some(b) => main > b.main || (b.main.is_nan() && !main.is_nan()),
        };
        let flat = flat_metrics(&evals);
        let mut record = json!({"step": step, "epoch": epoch, "eval": true, "is_best": is_best});
        for (k, v) in &flat {
            record[k.as_str()] = json_number(*v);
        }
        log.append(&record).map_err(file_error(&log_path))?;
        if is_best {
            let results: Map<String, Value> =
                flat.iter().map(|(k, v)| (k.clone(), json_number(*v))).collect();
            let results = json!({"epoch": epoch, "step": step, "metrics": results});
            let mut files = run.files.clone();
            files.push((
                "eval_results.json".into(),
                (serde_json::to_string_pretty(&results).expect("JSON") + "\n").into(),
            ));
            for (name, e) in &evals {
                files.push((format!("predictions_{name}.jsonl"), predictions_jsonl(&e.predictions).into()));
            }
            save_best(&valid, run.config, &best_dir, &files)?;
            best = Some(Best { main, epoch, step, metrics: flat });
        }
        observer.epoch(&EpochReport { epoch, step, evals, is_best });
        if step >= total_steps {
            break;
        }
    }
    let Best { epoch: best_epoch, step: best_step, metrics: best_metrics, .. } =
        best.expect("at least one epoch is evaluated");
    let mut record = json!({"step": step, "best_epoch": best_epoch, "best_step": best_step});
    for (k, v) in &best_metrics {
        record[format!("best/{k}")] = json_number(*v);
    }
    log.append(&record).map_err(file_error(&log_path))?;
    Ok(Summary {
        best_epoch,
        best_step,
        best: best_metrics,
        best_dir,
        steps: step,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// One JSON object per line.
pub fn predictions_jsonl(predictions: &[Value]) -> String {
    predictions.iter().map(|p| format!("{p}\n")).collect()
}

/// Writes the model, its config and `files` to a temporary directory next to `dir`, then swaps
/// it in, so `dir` is always either the previous best or the new one, complete.
fn save_best<B: Backend>(
    model: &DebertaModel<B>,
    config: &DebertaConfig,
    dir: &Path,
    files: &[(String, Vec<u8>)],
) -> Result<()> {
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("best");
    let tmp = dir.with_file_name(format!(".{name}.tmp"));
    let old = dir.with_file_name(format!(".{name}.old"));
    for d in [&tmp, &old] {
        if d.exists() {
            std::fs::remove_dir_all(d).map_err(file_error(d))?;
        }
    }
    save_model(model, config, &tmp)?;
    for (file, bytes) in files {
        let path = tmp.join(file);
        std::fs::write(&path, bytes).map_err(file_error(&path))?;
    }
    if dir.exists() {
        std::fs::rename(dir, &old).map_err(file_error(dir))?;
    }
    std::fs::rename(&tmp, dir).map_err(file_error(dir))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(file_error(&old))?;
    }
    Ok(())
}
