//! `deberta finetune`: train a task head (and the encoder under it) on a downstream task, keeping
//! the best epoch's model as an HF directory in `OUT/best`. Also the pieces `evaluate` shares:
//! task flags, length checks, data loading.

use crate::flags::Runtime;
use crate::vocab::{check_vocab, tokenizer, tokenizer_files};
use crate::with_backend;
use anyhow::{bail, Context, Result};
use burn::tensor::backend::AutodiffBackend;
use deberta_io::{load_model, read_config, LoadOptions};
use deberta_model::DebertaConfig;
use deberta_tokenizer::DebertaTokenizer;
use deberta_train::finetune::recipe::{recipe, Warmup};
use deberta_train::finetune::task::{Examples, FeatureOptions, GenericSpec, Task, TaskData};
use deberta_train::finetune::{
    finetune, task_config, task_model, AnswerCard, EpochReport, Observer, Run, Settings, StepReport,
    TaskCard, TASK_CARD,
};
use deberta_train::optim::AdamWConfig;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};

/// Flags that say what the data is (shared by finetune and evaluate).
#[derive(clap::Args, Clone, Debug)]
pub struct TaskFlags {
    /// The task (any case).
    #[arg(long, value_enum, ignore_case = true)]
    pub task: TaskName,
    /// classification/regression: the text column (CSV/TSV header name or JSON key).
    #[arg(long)]
    pub text_column: Option<String>,
    /// classification/regression: the second text of a pair.
    #[arg(long)]
    pub text_pair_column: Option<String>,
    /// classification/regression: the label column.
    #[arg(long)]
    pub label_column: Option<String>,
    /// Class names in id order, comma-separated (classification: default the sorted values of
    /// the training file; conll: default the CoNLL-2003 tags).
    #[arg(long, value_delimiter = ',')]
    pub labels: Vec<String>,
    /// xnli: the language to evaluate (en, fr, de, ...; default all).
    #[arg(long)]
    pub language: Option<String>,
    /// spm.model, tokenizer.json or a directory with one (default: the model directory's).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
}

/// `--task`: each value is a name [`Task::parse`] reads, which builds the task from it.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum TaskName {
    Cola,
    #[value(alias = "sst-2")]
    Sst2,
    Mrpc,
    #[value(alias = "sts-b")]
    Stsb,
    Qqp,
    Mnli,
    Qnli,
    Rte,
    /// Zero-shot cross-lingual NLI (evaluation only; see --language).
    Xnli,
    Swag,
    /// SQuAD 2.0.
    #[value(aliases = ["squad2", "squad-v2"])]
    Squad,
    /// SQuAD 1.1.
    #[value(alias = "squad-v1")]
    Squad1,
    /// CoNLL-2003 named entities.
    #[value(aliases = ["conll2003", "ner"])]
    Conll,
    /// CSV/TSV/JSONL classes, with the column flags below.
    #[value(aliases = ["csv", "jsonl"])]
    Classification,
    /// CSV/TSV/JSONL scores, with the column flags below.
    Regression,
}

impl TaskName {
    pub fn name(self) -> String {
        clap::ValueEnum::to_possible_value(&self).expect("no variant is skipped").get_name().to_string()
    }
}

/// Feature flags; unset, they come from the model's `finetune.json` (evaluate), else the
/// task's recipe.
#[derive(clap::Args, Clone, Debug)]
pub struct FeatureFlags {
    /// Tokens per input, longer ones are truncated (default: the model's finetune.json when
    /// evaluating, else the task's recipe).
    #[arg(long)]
    pub max_length: Option<usize>,
    /// SQuAD: context tokens shared by consecutive windows (default: the model's finetune.json
    /// when evaluating, else 128).
    #[arg(long)]
    pub doc_stride: Option<usize>,
}

impl FeatureFlags {
    /// The flags over `saved` (a model's `finetune.json`), over the defaults.
    pub fn resolve(&self, saved: Option<&FeatureOptions>, recipe_max_length: usize) -> FeatureOptions {
        FeatureOptions {
            max_length: self.max_length.or(saved.map(|f| f.max_length)).unwrap_or(recipe_max_length),
            doc_stride: self.doc_stride.or(saved.map(|f| f.doc_stride)).unwrap_or(128),
        }
    }
}

/// SQuAD answer decoding; unset, they come from the model's `finetune.json` (evaluate), else the
/// defaults.
#[derive(clap::Args, Clone, Debug)]
pub struct AnswerFlags {
    /// SQuAD decoding: best starts/ends considered (default: finetune.json's when evaluating,
    /// else 20).
    #[arg(long)]
    pub n_best: Option<usize>,
    /// SQuAD decoding: longest answer, in tokens (default: finetune.json's when evaluating, else
    /// 30).
    #[arg(long)]
    pub max_answer_length: Option<usize>,
    /// SQuAD 2.0: predict no answer when null score - best span score exceeds this (default:
    /// finetune.json's when evaluating, else 0).
    #[arg(long)]
    pub null_threshold: Option<f64>,
}

impl AnswerFlags {
    /// The flags over `saved` (a model's `finetune.json`), over the defaults.
    pub fn resolve(&self, saved: Option<&AnswerCard>) -> AnswerCard {
        let base = saved.cloned().unwrap_or_default();
        AnswerCard {
            n_best: self.n_best.unwrap_or(base.n_best),
            max_answer_length: self.max_answer_length.unwrap_or(base.max_answer_length),
            null_threshold: self.null_threshold.unwrap_or(base.null_threshold),
        }
    }
}

impl TaskFlags {
    /// The task; `card` supplies the columns of a generic task the flags leave out.
    pub fn task(&self, card: Option<&TaskCard>) -> Result<Task> {
        let from_flags = match (&self.text_column, &self.label_column) {
            (Some(text), Some(label)) => Some(GenericSpec {
                text_column: text.clone(),
                text_pair_column: self.text_pair_column.clone(),
                label_column: label.clone(),
                regression: false,
            }),
            (None, None) if self.text_pair_column.is_none() => None,
            _ => bail!("give both --text-column and --label-column (and optionally --text-pair-column)"),
        };
        let generic = from_flags.or_else(|| card.and_then(|c| c.generic.clone()));
        Ok(Task::parse(&self.task.name(), generic, self.language.clone())?)
    }
}

/// Fails when `--max-length` is too short or past what the model accepts (absolute position
/// tables), or when SQuAD windows would not advance.
pub fn check_length(config: &DebertaConfig, task: &Task, options: &FeatureOptions) -> Result<()> {
    let max_length = options.max_length;
    if max_length < 8 {
        bail!("--max-length {max_length} is too short (at least 8)");
    }
    if let Some(limit) = config.max_sequence_length(task.head()) {
        if max_length > limit {
            bail!("--max-length {max_length} exceeds the model's max_position_embeddings {limit}");
        }
    }
    if matches!(task, Task::Squad { .. }) && options.doc_stride >= max_length {
        bail!("--doc-stride {} must be below --max-length {max_length}", options.doc_stride);
    }
    Ok(())
}

/// Reads `path` and makes its features, saying how many examples were cut.
pub fn load_data(
    task: &Task,
    path: &Path,
    labels: &[String],
    tok: &DebertaTokenizer,
    options: &FeatureOptions,
) -> Result<TaskData> {
    let examples = task.read(path, labels)?;
    let n = examples.len();
    let data = TaskData::new(task, path, examples, labels, tok, options)?;
    if data.truncated > 0 {
        tracing::warn!(
            "{}: {} of {n} examples are longer than --max-length {} and were truncated",
            path.display(),
            data.truncated,
            options.max_length
        );
    }
    if let Examples::Squad(_) = data.examples {
        tracing::info!("{}: {n} questions in {} windows", path.display(), data.features.len());
    } else {
        tracing::info!("{}: {n} examples", path.display());
    }
    Ok(data)
}

/// File stem of a dev file (`dev_matched`, `val`, ...), for metric names.
pub fn set_name(path: &Path) -> String {
    path.file_stem().and_then(|s| s.to_str()).unwrap_or("dev").to_string()
}

#[derive(clap::Args)]
pub struct Args {
    /// HF model directory to start from (e.g. a pre-training export); its head is replaced by
    /// the task's unless it already is one.
    #[arg(long)]
    model: PathBuf,
    #[command(flatten)]
    flags: TaskFlags,
    /// The task's data directory (GLUE layout: TASK/train.tsv, dev.tsv; SWAG train.csv/val.csv;
    /// SQuAD train-v2.0.json/dev-v2.0.json; CoNLL train.txt/valid.txt; generic train.*/dev.*),
    /// or the training file itself (then give --dev).
    #[arg(long)]
    data: PathBuf,
    /// Evaluation file(s), instead of the data directory's.
    #[arg(long)]
    dev: Vec<PathBuf>,
    /// Output directory: metrics.jsonl, finetune_settings.json and best/ (the best epoch's model).
    #[arg(long)]
    out: PathBuf,
    /// Epochs (default: the task's recipe).
    #[arg(long)]
    epochs: Option<usize>,
    /// Peak learning rate, > 0 (default: the recipe's, tuned for DeBERTaV3-large).
    #[arg(long)]
    lr: Option<f64>,
    /// Examples per forward/backward (default: the recipe's batch size).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Micro-batches per optimiser step (the step's batch is batch-size x this).
    #[arg(long, default_value_t = 1)]
    grad_accum: usize,
    /// Warmup steps (default: the recipe's).
    #[arg(long, conflicts_with = "warmup_ratio")]
    warmup_steps: Option<u64>,
    /// Warmup as a fraction of the optimiser steps, in [0, 1].
    #[arg(long)]
    warmup_ratio: Option<f64>,
    /// Classifier dropout (default: the recipe's, else the model config's).
    #[arg(long)]
    cls_dropout: Option<f64>,
    /// Hidden, attention and (unless --cls-dropout) classifier dropout (default: the model
    /// config's, and the recipe's classifier dropout).
    #[arg(long)]
    dropout: Option<f64>,
    #[command(flatten)]
    features: FeatureFlags,
    /// Decoupled weight decay, >= 0 (not on biases and LayerNorm parameters).
    #[arg(long, default_value_t = 0.01)]
    weight_decay: f64,
    /// Global gradient-norm clip, > 0 (0 turns clipping off).
    #[arg(long, default_value_t = 1.0)]
    max_grad_norm: f64,
    /// Adam's epsilon, > 0.
    #[arg(long, default_value_t = 1e-6)]
    adam_epsilon: f64,
    /// Adam's first-moment decay, in [0, 1).
    #[arg(long, default_value_t = 0.9)]
    adam_beta1: f64,
    /// Adam's second-moment decay, in [0, 1).
    #[arg(long, default_value_t = 0.999)]
    adam_beta2: f64,
    /// Adam without bias correction (the official XAdam) instead of torch's AdamW.
    #[arg(long)]
    no_bias_correction: bool,
    /// Layer-wise learning-rate decay factor d in (0, 1] (e.g. 0.9): layer i of N gets lr * d^(N-i).
    #[arg(long)]
    llrd: Option<f64>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Examples per evaluation forward (default: 2 x batch size).
    #[arg(long)]
    eval_batch_size: Option<usize>,
    /// Plain shuffled batches instead of length-bucketed ones.
    #[arg(long)]
    no_bucket: bool,
    /// Stop after this many optimiser steps (then evaluate).
    #[arg(long)]
    max_steps: Option<u64>,
    #[command(flatten)]
    answer: AnswerFlags,
    /// Log a line every N steps.
    #[arg(long, default_value_t = 50)]
    log_every: u64,
    #[command(flatten)]
    runtime: Runtime,
}

pub fn run(args: Args) -> Result<()> {
    args.runtime.start()?;
    let task = args.flags.task(None)?;
    let r = recipe(&task);
    let tok = tokenizer(args.flags.tokenizer.as_deref(), &args.model)?;
    let model_config = read_config(&args.model)?;
    check_vocab(&model_config, &tok, args.model.display())?;
    let options = args.features.resolve(None, r.max_length);
    check_length(&model_config, &task, &options)?;

    let train_path = task.train_file(&args.data)?;
    let dev_paths = if !args.dev.is_empty() {
        args.dev.clone()
    } else if args.data.is_dir() {
        task.dev_files(&args.data)?
    } else {
        bail!("--data {} is a file: give the evaluation file with --dev", args.data.display());
    };
    let labels = match task.fixed_labels() {
        Some(fixed) if args.flags.labels.is_empty() => fixed,
        Some(fixed) if fixed.is_empty() => bail!("--labels does not apply to --task {}", task.name()),
        _ if !args.flags.labels.is_empty() => args.flags.labels.clone(),
        // Generic classification: the sorted label values of the training file.
        _ => match task.read(&train_path, &[])? {
            Examples::Text(d) => d.labels,
            _ => unreachable!("only generic tasks infer labels"),
        },
    };
    if task.fixed_labels().is_none() {
        tracing::info!("labels: {}", labels.join(", "));
    }
    let train = load_data(&task, &train_path, &labels, &tok, &options)?;
    let dev = dev_paths
        .iter()
        .map(|p| Ok((set_name(p), load_data(&task, p, &labels, &tok, &options)?)))
        .collect::<Result<Vec<_>>>()?;

    let batch_size = args.batch_size.unwrap_or(r.batch_size);
    let settings = Settings {
        epochs: args.epochs.unwrap_or(r.epochs),
        lr: args.lr.unwrap_or(r.lr),
        batch_size,
        grad_accum: args.grad_accum,
        warmup: match (args.warmup_steps, args.warmup_ratio) {
            (Some(n), _) => Warmup::Steps(n),
            (_, Some(x)) => Warmup::Ratio(x),
            _ => r.warmup,
        },
        adam: AdamWConfig {
            beta1: args.adam_beta1,
            beta2: args.adam_beta2,
            epsilon: args.adam_epsilon,
            weight_decay: args.weight_decay,
            max_grad_norm: (args.max_grad_norm != 0.0).then_some(args.max_grad_norm),
            bias_correction: !args.no_bias_correction,
        },
        llrd: args.llrd,
        seed: args.seed,
        eval_batch_size: args.eval_batch_size.unwrap_or(2 * batch_size),
        bucket: !args.no_bucket,
        max_steps: args.max_steps,
    };
    deberta_train::validate::check_finetune(&settings).map_err(anyhow::Error::msg)?;
    model_config
        .check_batch_memory(settings.batch_size, options.max_length, true)
        .with_context(|| format!("{}", args.model.join("config.json").display()))?;
    let card = TaskCard {
        task: task.name(),
        generic: match &task {
            Task::Generic(g) => Some(g.clone()),
            _ => None,
        },
        labels: labels.clone(),
        features: options,
        eval_batch_size: settings.eval_batch_size,
        answer: args.answer.resolve(None),
    };
    let mut files = tokenizer_files(&tok)?;
    files.push((TASK_CARD.into(), card.to_json().into_bytes()));
    let cls_dropout = args.cls_dropout.or(args.dropout).or(r.cls_dropout);
    // One run at a time in a directory: held until the run ends.
    let _lock = deberta_io::lock_dir(&args.out)?;
    with_backend!(args.runtime.device, |B, device| {
        train_on::<burn::backend::Autodiff<B>>(
            &args,
            &task,
            &train,
            &dev,
            &settings,
            &card,
            files,
            cls_dropout,
            tok.pad_id(),
            &device,
        )
    })
}

#[allow(clippy::too_many_arguments)]
fn train_on<B: AutodiffBackend>(
    args: &Args,
    task: &Task,
    train: &TaskData,
    dev: &[(String, TaskData)],
    settings: &Settings,
    card: &TaskCard,
    files: Vec<(String, Vec<u8>)>,
    cls_dropout: Option<f64>,
    pad_id: u32,
    device: &B::Device,
) -> Result<()> {
    let options = LoadOptions { head: Some(task.head()), init_missing_head: true, ..LoadOptions::default() };
    let loaded = load_model::<B>(&args.model, &options, device).context("loading the model")?;
    for name in &loaded.ignored {
        tracing::debug!("not used: {name}");
    }
    let head_initialised = !loaded.initialised.is_empty();
    if head_initialised {
        tracing::info!("new {} head ({} tensors)", task.head().architecture(), loaded.initialised.len());
    }
    let config = task_config(&loaded.config, task, &card.labels, cls_dropout, args.dropout)?;
    B::seed(device, settings.seed);
    let model = task_model(&loaded.model, &loaded.config, head_initialised, &config, device)?;
    drop(loaded);
    tracing::info!(
        "{}: {} training features, {} per step ({} x {}), {} epochs, lr {:.2e}{}",
        task.name(),
        train.features.len(),
        settings.effective_batch(),
        settings.batch_size,
        settings.grad_accum,
        settings.epochs,
        settings.lr,
        settings.llrd.map_or(String::new(), |d| format!(", layer-wise decay {d}"))
    );
    let run = Run {
        task,
        train,
        dev,
        settings,
        answer: card.answer.options(task),
        pad_id,
        config: &config,
        files,
        out: &args.out,
    };
    let mut bar = Bar::new(args.log_every);
    let summary = finetune(model, &run, device, &mut bar)?;
    bar.bar.finish_and_clear();
    let best: serde_json::Map<String, serde_json::Value> =
        summary.best.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect();
    tracing::info!(
        "{} steps in {:.0} s; best epoch {} (step {})",
        summary.steps,
        summary.seconds,
        summary.best_epoch,
        summary.best_step
    );
    println!("{}", serde_json::Value::Object(best));
    println!("best model: {}", summary.best_dir.display());
    Ok(())
}

/// Progress bar and log lines.
struct Bar {
    bar: ProgressBar,
    log_every: u64,
}

impl Bar {
    fn new(log_every: u64) -> Self {
        let bar = ProgressBar::new(0).with_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} {per_sec} ETA {eta} {msg}").expect("template"),
        );
        Bar { bar, log_every: log_every.max(1) }
    }
}

impl Observer for Bar {
    fn started(&mut self, total_steps: u64) {
        self.bar.set_length(total_steps);
    }
    fn step(&mut self, r: &StepReport) {
        let msg = format!("epoch {} loss {:.4} lr {:.2e}", r.epoch, r.loss, r.lr);
        self.bar.set_message(msg.clone());
        self.bar.inc(1);
        if r.step.is_multiple_of(self.log_every) || r.step == 1 {
            self.bar.suspend(|| {
                tracing::info!("step {}/{}: {msg}, grad norm {:.3}", r.step, r.total_steps, r.grad_norm)
            });
        }
    }
    fn evaluating(&mut self, set: &str, features: usize) {
        self.bar.set_message(format!("evaluating {set} ({features} inputs)"));
    }
    fn epoch(&mut self, r: &EpochReport) {
        let metrics: Vec<String> = deberta_train::finetune::flat_metrics(&r.evals)
            .iter()
            .map(|(k, v)| format!("{k} {v:.4}"))
            .collect();
        let best = if r.is_best { " (best so far: saved)" } else { "" };
        self.bar
            .suspend(|| tracing::info!("epoch {} (step {}): {}{best}", r.epoch, r.step, metrics.join(", ")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    /// Each `--task` value is a name the task library reads, and its canonical one.
    #[test]
    fn task_names_are_the_library_names() {
        let columns = GenericSpec {
            text_column: "text".into(),
            text_pair_column: None,
            label_column: "label".into(),
            regression: false,
        };
        for t in TaskName::value_variants() {
            let task = Task::parse(&t.name(), Some(columns.clone()), None).unwrap();
            assert_eq!(task.name(), t.name());
        }
    }
}
