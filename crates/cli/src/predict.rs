//! `deberta predict`: run a fine-tuned model on JSON lines and print one JSON line per input.
//! The head comes from the model's config; inputs per head:
//!
//! - sequence classification / regression: `{"text": ..., "text_pair": ...}` (pair optional) ->
//!   `{"label", "score", "probabilities": {label: p}}`, or `{"score"}` for regression;
//! - multiple choice: `{"text": ..., "choices": [...]}` -> `{"label": index, "choice", "score",
//!   "probabilities"}`;
//! - token classification: `{"text": ...}` (split on whitespace) or `{"words": [...]}` ->
//!   `{"words", "tags", "entities": [{"type", "start", "end", "text"}]}` (word ranges, end
//!   exclusive);
//! - question answering: `{"question": ..., "context": ...}` -> `{"answer", "start", "end",
//!   "null_score_diff"}` (`""` for no answer; character offsets in the context).

use crate::backend::Dtype;
use crate::flags::Inference;
use crate::vocab::{check_vocab, tokenizer};
use crate::with_backend;
use anyhow::{bail, Context, Result};
use burn::prelude::*;
use deberta_data::metrics::entities;
use deberta_data::tasks::conll::NerSentence;
use deberta_data::tasks::squad::SquadExample;
use deberta_io::{load_model, LoadOptions};
use deberta_model::Head;
use deberta_tokenizer::{DebertaTokenizer, EncodeOptions, Truncation};
use deberta_train::finetune::task::{
    argmax, softmax, Examples, Feature, FeatureOptions, Output, Target, Task, TaskData,
};
use deberta_train::finetune::{labels_of, predict_outputs, TaskCard};
use serde_json::{json, Value};
use std::io::BufRead;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// A fine-tuned HF model directory.
    #[arg(long)]
    model: PathBuf,
    /// JSON lines; keys per head: classification {"text", "text_pair" (optional)}, multiple
    /// choice {"text", "choices": [...]}, token classification {"text"} or {"words": [...]},
    /// question answering {"question", "context"}.
    #[arg(long)]
    input: PathBuf,
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

impl Line {
    fn str(&self, path: &Path, key: &str) -> Result<Option<String>> {
        match self.value.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => bail!("{}:{}: {key:?} is not a string: {other}", path.display(), self.number),
        }
    }
    fn required(&self, path: &Path, key: &str) -> Result<String> {
        self.str(path, key)?.with_context(|| format!("{}:{}: no key {key:?}", path.display(), self.number))
    }
    fn strings(&self, path: &Path, key: &str) -> Result<Option<Vec<String>>> {
        match self.value.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => bail!("{}:{}: {key:?} holds a non-string {other}", path.display(), self.number),
                })
                .collect::<Result<Vec<_>>>()
                .map(Some),
            Some(other) => bail!("{}:{}: {key:?} is not a list: {other}", path.display(), self.number),
        }
    }
}

pub fn run(args: Args) -> Result<()> {
    args.inference.runtime.start()?;
    if args.inference.dtype == Dtype::Bf16 {
        bail!("--dtype bf16: predict runs in f32 or int8");
    }
    let tok = tokenizer(args.tokenizer.as_deref(), &args.model)?;
    let card = TaskCard::read(&args.model)?;
    let config = deberta_io::read_config(&args.model)?;
    check_vocab(&config, &tok, args.model.display())?;
    let lines = read_lines(&args.input)?;
    let max_length = args.max_length.or(card.as_ref().map(|c| c.features.max_length)).unwrap_or(512);
    let results = with_backend!(args.inference.runtime.device, |B, device| predict_on::<B>(
        &args,
        &tok,
        card.as_ref(),
        &lines,
        max_length,
        &device
    ))?;
    for r in results {
        println!("{r}");
    }
    Ok(())
}

fn predict_on<B: Backend>(
    args: &Args,
    tok: &DebertaTokenizer,
    card: Option<&TaskCard>,
    lines: &[Line],
    max_length: usize,
    device: &B::Device,
) -> Result<Vec<Value>> {
    let options = LoadOptions { int8: args.inference.dtype == Dtype::Int8, ..LoadOptions::default() };
    let loaded = load_model::<B>(&args.model, &options, device).context("loading the model")?;
    let (config, model) = (loaded.config, loaded.model);
    let labels = labels_of(&config);
    let token_types = config.type_vocab_size > 0;
    let path = args.input.as_path();
    let weights = loaded.weights_file.clone();
    let run = |features: &[Feature]| -> Result<Vec<Output>> {
        let outputs = predict_outputs(
            &model,
            features,
            args.batch_size.max(1),
            tok.pad_id(),
            token_types,
            device,
            |_| {},
        );
        let finite = |v: &[f32]| v.iter().all(|x| x.is_finite());
        let ok = outputs.iter().all(|o| match o {
            Output::Vector(v) => finite(v),
            Output::Tokens(rows) => rows.iter().all(|r| finite(r)),
            Output::Span { start, end } => finite(start) && finite(end),
        });
        if !ok {
            bail!(
                "the model's outputs are not finite (NaN or infinite): check the weights in {}",
                weights.display()
            );
        }
        Ok(outputs)
    };
    let truncate = EncodeOptions {
        max_length: Some(max_length),
        truncation: Some(Truncation::LongestFirst),
        ..EncodeOptions::default()
    };
    let feature = |a: &str, b: Option<&str>| -> Result<(Vec<u32>, Vec<u32>, bool)> {
        let cut = tok.tokenize(a).len() + b.map_or(0, |b| tok.tokenize(b).len() + 1) + 2 > max_length;
        let e = tok.encode(a, b, &truncate)?;
        Ok((e.input_ids, e.token_type_ids, cut))
    };
    let mut truncated = 0;
    let out = match model.head() {
        Head::SequenceClassification => {
            let mut features = Vec::new();
            for l in lines {
                let (ids, types, cut) =
                    feature(&l.required(path, "text")?, l.str(path, "text_pair")?.as_deref())?;
                truncated += cut as usize;
                features.push(Feature {
                    input_ids: vec![ids],
                    token_type_ids: vec![types],
                    target: Target::None,
                });
            }
            run(&features)?
                .iter()
                .map(|o| {
                    let Output::Vector(v) = o else { unreachable!("sequence logits") };
                    if config.num_labels == 1 {
                        return json!({"score": v[0]});
                    }
                    let p = softmax(v);
                    let c = argmax(&p);
                    let probabilities: serde_json::Map<String, Value> =
                        labels.iter().zip(&p).map(|(n, p)| (n.clone(), json!(p))).collect();
                    json!({"label": labels[c], "score": p[c], "probabilities": probabilities})
                })
                .collect()
        }
        Head::MultipleChoice => {
            let mut features = Vec::new();
            let mut all_choices = Vec::new();
            for l in lines {
                let text = l.required(path, "text")?;
                let choices = l
                    .strings(path, "choices")?
                    .filter(|c| !c.is_empty())
                    .with_context(|| format!("{}:{}: no \"choices\" list", path.display(), l.number))?;
                let mut f =
                    Feature { input_ids: Vec::new(), token_type_ids: Vec::new(), target: Target::None };
                let mut cut_any = false;
                for c in &choices {
                    let (ids, types, cut) = feature(&text, Some(c))?;
                    cut_any |= cut;
                    f.input_ids.push(ids);
                    f.token_type_ids.push(types);
                }
                truncated += cut_any as usize;
                features.push(f);
                all_choices.push(choices);
            }
            // A batch holds inputs with the same number of choices.
            let mut outputs: Vec<Option<Output>> = vec![None; features.len()];
            let mut counts: Vec<usize> = all_choices.iter().map(Vec::len).collect();
            counts.sort();
            counts.dedup();
            for n in counts {
                let ids: Vec<usize> = (0..features.len()).filter(|&i| all_choices[i].len() == n).collect();
                let group: Vec<Feature> = ids.iter().map(|&i| features[i].clone()).collect();
                for (i, o) in ids.into_iter().zip(run(&group)?) {
                    outputs[i] = Some(o);
                }
            }
            outputs
                .into_iter()
                .zip(&all_choices)
                .map(|(o, choices)| {
                    let Some(Output::Vector(v)) = o else { unreachable!("choice logits") };
                    let p = softmax(&v);
                    let c = argmax(&p);
                    json!({"label": c, "choice": choices[c], "score": p[c], "probabilities": p})
                })
                .collect()
        }
        Head::TokenClassification => {
            let mut sentences = Vec::new();
            for l in lines {
                let words = match l.strings(path, "words")? {
                    Some(w) => w,
                    None => l.required(path, "text")?.split_whitespace().map(str::to_string).collect(),
                };
                if words.is_empty() {
                    bail!("{}:{}: no words", path.display(), l.number);
                }
                sentences.push(NerSentence { tags: vec![0; words.len()], words });
            }
            let task = Task::Conll;
            let options = FeatureOptions { max_length, doc_stride: 0 };
            let data = TaskData::new(&task, path, Examples::Ner(sentences), &labels, tok, &options)?;
            truncated = data.truncated;
            let eval = data.score(&task, &run(&data.features)?, &Default::default())?;
            eval.predictions
                .into_iter()
                .map(|p| {
                    let words: Vec<String> = serde_json::from_value(p["words"].clone()).unwrap_or_default();
                    let tags: Vec<String> = serde_json::from_value(p["tags"].clone()).unwrap_or_default();
                    let found: Vec<Value> = entities(&tags)
                        .into_iter()
                        .map(|e| {
                            json!({"type": e.kind, "start": e.start, "end": e.end + 1,
                                   "text": words[e.start..=e.end].join(" ")})
                        })
                        .collect();
                    json!({"words": words, "tags": tags, "entities": found})
                })
                .collect()
        }
        Head::QuestionAnswering => {
            let mut examples = Vec::new();
            for l in lines {
                examples.push(SquadExample {
                    id: l.number.to_string(),
                    title: String::new(),
                    question: l.required(path, "question")?,
                    context: l.required(path, "context")?,
                    answers: Vec::new(),
                    is_impossible: true,
                });
            }
            let version_2 = card.is_none_or(|c| c.task != "squad1");
            let task = Task::Squad { version_2 };
            let stride = card.map_or(128, |c| c.features.doc_stride).min(max_length / 2);
            let options = FeatureOptions { max_length, doc_stride: stride };
            let data = TaskData::new(&task, path, Examples::Squad(examples), &[], tok, &options)?;
            let answer = card.map(|c| c.answer.clone()).unwrap_or_default().options(&task);
            let eval = data.score(&task, &run(&data.features)?, &answer)?;
            eval.predictions
                .into_iter()
                .map(|p| {
                    let text = p["prediction_text"].as_str().unwrap_or("").to_string();
                    let start = p["start"].as_u64().unwrap_or(0);
                    let end = start + text.chars().count() as u64;
                    json!({"answer": text, "start": start, "end": end, "null_score_diff": p["null_score_diff"]})
                })
                .collect()
        }
        other => {
            bail!("{}: a {} has no task head to predict with", args.model.display(), other.architecture())
        }
    };
    if truncated > 0 {
        tracing::warn!(
            "{truncated} of {} inputs are longer than {max_length} tokens and were truncated",
            lines.len()
        );
    }
    Ok(out)
}
