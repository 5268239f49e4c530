//! `deberta evaluate`: score a fine-tuned model on a task's dev (or any labelled) file with the
//! official metrics, and write its predictions. With the `finetune.json` that `finetune` saves
//! next to the model, the evaluation repeats training's exactly (same inputs, same batches).

use crate::backend::Dtype;
use crate::finetune::{check_length, load_data, set_name, AnswerFlags, FeatureFlags, TaskFlags};
use crate::flags::Inference;
use crate::vocab::{check_vocab, tokenizer};
use crate::with_backend;
use anyhow::{bail, Context, Result};
use burn::prelude::*;
use deberta_io::{load_model, read_config, LoadOptions};
use deberta_model::Head;
use deberta_train::finetune::recipe::recipe;
use deberta_train::finetune::task::{Task, TaskData};
use deberta_train::finetune::{
    flat_metrics, labels_of, predict_outputs, predictions_jsonl, AnswerCard, TaskCard,
};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// A fine-tuned HF model directory (e.g. OUT/best of `deberta finetune`).
    #[arg(long)]
    model: PathBuf,
    #[command(flatten)]
    flags: TaskFlags,
    /// The task's data directory (its dev file(s) are used; MNLI: matched and mismatched) or a
    /// file.
    #[arg(long)]
    data: PathBuf,
    /// Where predictions_{set}.jsonl go (default: the model directory).
    #[arg(long)]
    predictions_dir: Option<PathBuf>,
    #[command(flatten)]
    features: FeatureFlags,
    /// Examples per forward (default: finetune.json's, else 64).
    #[arg(long)]
    eval_batch_size: Option<usize>,
    #[command(flatten)]
    answer: AnswerFlags,
    // --dtype: f32 or int8.
    #[command(flatten)]
    inference: Inference,
}

pub fn run(args: Args) -> Result<()> {
    args.inference.runtime.start()?;
    if args.inference.dtype == Dtype::Bf16 {
        bail!("--dtype bf16: evaluate runs in f32 or int8");
    }
    let card = TaskCard::read(&args.model)?;
    let task = args.flags.task(card.as_ref())?;
    if let Some(c) = &card {
        if c.task != task.name() {
            tracing::info!("the model was fine-tuned on {}; evaluating it on {}", c.task, task.name());
        }
    }
    let tok = tokenizer(args.flags.tokenizer.as_deref(), &args.model)?;
    let config = read_config(&args.model)?;
    check_vocab(&config, &tok, args.model.display())?;
    let r = recipe(&task);
    let options = args.features.resolve(card.as_ref().map(|c| &c.features), r.max_length);
    check_length(&config, &task, &options)?;
    // The labels the model was fine-tuned with when it was on this task, else the task's own,
    // else (generic data, a model from elsewhere) the model's id2label.
    let labels = if !args.flags.labels.is_empty() {
        args.flags.labels.clone()
    } else if let Some(c) = card.as_ref().filter(|c| c.task == task.name()) {
        c.labels.clone()
    } else {
        match task.fixed_labels() {
            Some(fixed) => fixed,
            None => labels_of(&config),
        }
    };
    let answer = args.answer.resolve(card.as_ref().map(|c| &c.answer));
    let batch = args.eval_batch_size.or(card.as_ref().map(|c| c.eval_batch_size)).unwrap_or(64);
    config
        .check_batch_memory(batch, options.max_length, false)
        .with_context(|| format!("--eval-batch-size {batch} --max-length {}", options.max_length))?;
    let sets = task
        .dev_files(&args.data)?
        .iter()
        .map(|p| Ok((set_name(p), load_data(&task, p, &labels, &tok, &options)?)))
        .collect::<Result<Vec<_>>>()?;
    let outputs = task.num_outputs(&labels);
    if matches!(task.head(), Head::SequenceClassification | Head::TokenClassification)
        && config.num_labels != outputs
    {
        bail!(
            "{}: the model has {} labels ({}), task {} has {outputs}",
            args.model.display(),
            config.num_labels,
            labels_of(&config).join(", "),
            task.name()
        );
    }
    let pad_id = tok.pad_id();
    let evals = with_backend!(args.inference.runtime.device, |B, device| evaluate_on::<B>(
        &args, &task, &sets, &answer, batch, pad_id, &device
    ))?;
    let dir = args.predictions_dir.clone().unwrap_or_else(|| args.model.clone());
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, e) in &evals {
        let path = dir.join(format!("predictions_{name}.jsonl"));
        deberta_io::tensors::write_atomic(&path, predictions_jsonl(&e.predictions).as_bytes())?;
        tracing::info!("wrote {}", path.display());
    }
    let metrics: serde_json::Map<String, serde_json::Value> =
        flat_metrics(&evals).into_iter().map(|(k, v)| (k, serde_json::json!(v))).collect();
    if metrics.is_empty() {
        tracing::warn!("the data has no labels: predictions only");
    }
    println!("{}", serde_json::Value::Object(metrics));
    Ok(())
}

fn evaluate_on<B: Backend>(
    args: &Args,
    task: &Task,
    sets: &[(String, TaskData)],
    answer: &AnswerCard,
    batch: usize,
    pad_id: u32,
    device: &B::Device,
) -> Result<Vec<(String, deberta_train::finetune::task::Evaluation)>> {
    let options = LoadOptions {
        head: Some(task.head()),
        init_missing_head: false,
        int8: args.inference.dtype == Dtype::Int8,
    };
    let loaded = load_model::<B>(&args.model, &options, device).context("loading the model")?;
    let token_types = loaded.config.type_vocab_size > 0;
    let answer = answer.options(task);
    sets.iter()
        .map(|(name, data)| {
            let outputs =
                predict_outputs(&loaded.model, &data.features, batch, pad_id, token_types, device, |_| {});
            Ok((name.clone(), data.score(task, &outputs, &answer)?))
        })
        .collect()
}
