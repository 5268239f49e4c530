//! `deberta predict`: run a model on JSON lines and print one JSON line per input, through the
//! inference pipeline (deberta-infer). The task is the model head's (`--task` picks another the
//! model serves, e.g. zero-shot on an NLI classifier, or embeddings on any model). Inputs:
//!
//! - text classification: `{"text", "text_pair"?}` -> `{"label", "score", "probabilities":
//!   {label: p}}`, or `{"score"}` for regression;
//! - multiple choice: `{"text", "choices": [...]}` -> `{"label": index, "scores": [...]}`;
//! - token classification: `{"text"}` or `{"words": [...]}` (joined by spaces), optional
//!   `"aggregation_strategy"` (none, simple, first) -> HF's entity list with character offsets;
//! - question answering: `{"question", "context"}`, optional `"top_k"`,
//!   `"handle_impossible_answer"`, `"max_answer_len"` -> `[{"score", "start", "end", "answer"}]`;
//! - zero-shot classification: `{"sequence", "candidate_labels": [...]}`, optional
//!   `"hypothesis_template"`, `"multi_label"` -> `{"sequence", "labels", "scores"}`;
//! - fill-mask: `{"text"}` with `[MASK]`, optional `"top_k"` -> `[{"score", "token",
//!   "token_str", "sequence"}]`;
//! - embeddings: `{"text"}`, optional `"pooling"` (cls, mean), `"normalize"` -> `[f32]`.
//!
//! Inputs longer than `--max-length` are truncated (question answering uses windows instead).

use crate::backend::Dtype;
use crate::flags::Inference;
use crate::with_backend;
use anyhow::{bail, Context, Result};
use burn::prelude::*;
use deberta_infer::{InferError, Pipeline, PipelineOptions, Request, Response, Task};
use serde_json::{json, Value};
use std::io::BufRead;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// A model directory (HF format).
    #[arg(long)]
    model: PathBuf,
    /// JSON lines; keys per task: classification {"text", "text_pair" (optional)}, multiple
    /// choice {"text", "choices": [...]}, token classification {"text"} or {"words": [...]},
    /// question answering {"question", "context"}, zero-shot {"sequence", "candidate_labels"},
    /// fill-mask and embeddings {"text"}.
    #[arg(long)]
    input: PathBuf,
    /// text-classification, token-classification, question-answering, multiple-choice,
    /// zero-shot-classification, fill-mask or embeddings (default: the model head's task).
    #[arg(long)]
    task: Option<Task>,
    /// spm.model, tokenizer.json or a directory with one (default: the model directory's).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Tokens per input (default: the model's finetune.json, else 512).
    #[arg(long)]
    max_length: Option<usize>,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    // --dtype: f32 or int8.
    #[command(flatten)]
    inference: Inference,
}

/// One input line, parsed.
struct Line {
    number: u64,
    value: serde_json::Map<String, Value>,
}

fn read_lines(path: &Path) -> Result<Vec<Line>> {
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let number = i as u64 + 1;
        let line = line.with_context(|| format!("{}:{number}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(&line) {
            Ok(Value::Object(value)) => out.push(Line { number, value }),
            Ok(_) => bail!("{}:{number}: not a JSON object", path.display()),
            Err(e) => bail!("{}:{number}: {e}", path.display()),
        }
    }
    if out.is_empty() {
        bail!("{}: no inputs", path.display());
    }
    Ok(out)
}

/// The line as a request for `task`; `{"words": [...]}` is a text of words joined by spaces.
fn request(line: &Line, task: Task, path: &Path) -> Result<Request> {
    let at = || format!("{}:{}", path.display(), line.number);
    let mut value = line.value.clone();
    if task == Task::TokenClassification && !value.contains_key("text") {
        if let Some(words) = value.remove("words") {
            let words: Vec<String> = serde_json::from_value(words)
                .with_context(|| format!("{}: \"words\" is not a list of strings", at()))?;
            if words.is_empty() {
                bail!("{}: no words", at());
            }
            value.insert("text".into(), Value::from(words.join(" ")));
        }
    }
    value.insert("task".into(), Value::from(task.name()));
    serde_json::from_value(Value::Object(value)).with_context(|| format!("{}: not a {task} input", at()))
}

pub fn run(args: Args) -> Result<()> {
    args.inference.runtime.start()?;
    if args.inference.dtype == Dtype::Bf16 {
        bail!("--dtype bf16: predict runs in f32 or int8");
    }
    let lines = read_lines(&args.input)?;
    let options = PipelineOptions {
        tokenizer: args.tokenizer.clone(),
        max_length: args.max_length,
        doc_stride: None,
        int8: args.inference.dtype == Dtype::Int8,
    };
    let results = with_backend!(args.inference.runtime.device, |B, device| predict_on::<B>(
        &args, &options, &lines, &device
    ))?;
    for r in results {
        println!("{r}");
    }
    Ok(())
}

fn predict_on<B: Backend>(
    args: &Args,
    options: &PipelineOptions,
    lines: &[Line],
    device: &B::Device,
) -> Result<Vec<Value>> {
    let pipeline = Pipeline::<B>::load(&args.model, options, device)
        .with_context(|| format!("loading {}", args.model.display()))?;
    let task = args.task.unwrap_or_else(|| pipeline.pre.default_task());
    let path = args.input.as_path();
    let requests = lines.iter().map(|l| request(l, task, path)).collect::<Result<Vec<_>>>()?;
    let results = pipeline.run(&requests, true, args.batch_size.max(1));
    let weights = pipeline.engine.weights_file().map(|p| p.display().to_string()).unwrap_or_default();
    lines
        .iter()
        .zip(results)
        .map(|(line, r)| match r {
            Ok(response) => Ok(printable(response, pipeline.pre.id2label())),
            Err(e @ InferError::Model(_)) => {
                bail!("{}:{}: {e}: check the weights in {weights}", path.display(), line.number)
            }
            Err(e) => bail!("{}:{}: {e}", path.display(), line.number),
        })
        .collect()
}

/// HF's output shapes, except text classification, printed as the best label with every
/// label's probability (`{"score"}` alone for a regression head).
fn printable(response: Response, id2label: &[String]) -> Value {
    match response {
        Response::TextClassification(scores) if id2label.len() == 1 => json!({"score": scores[0].score}),
        Response::TextClassification(scores) => {
            let probabilities: serde_json::Map<String, Value> =
                scores.iter().map(|s| (s.label.clone(), json!(s.score))).collect();
            json!({"label": scores[0].label, "score": scores[0].score, "probabilities": probabilities})
        }
        other => serde_json::to_value(other).expect("responses serialise"),
    }
}
