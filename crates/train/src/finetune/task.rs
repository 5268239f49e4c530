//! What is being fine-tuned: the task (its file layout, head, labels and metrics), its examples
//! turned into unpadded model inputs ([`Feature`]), and model outputs turned back into
//! predictions and the official metrics ([`TaskData::score`]).

use super::{FinetuneError, Result};
use deberta_data::metrics::{entity_scores, evaluate, squad_v2, Metric};
use deberta_data::squad::{decode_answers, qa_features, AnswerOptions, QaFeature, QaOptions};
use deberta_data::tasks::conll::{ner_features, read_conll, NerFeature, NerSentence, CONLL2003_LABELS};
use deberta_data::tasks::generic::{read_generic, TextColumns};
use deberta_data::tasks::glue::GlueTask;
use deberta_data::tasks::squad::{read_squad, SquadExample};
use deberta_data::tasks::swag::{encode_choices, read_swag, ChoiceExample};
use deberta_data::tasks::xnli::read_xnli;
use deberta_data::tasks::{encode_texts, Label, LabelSpec, TextDataset};
use deberta_model::Head;
use deberta_tokenizer::{DebertaTokenizer, Encoding};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Columns and label kind of a caller-described CSV/TSV/JSONL file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenericSpec {
    pub text_column: String,
    pub text_pair_column: Option<String>,
    pub label_column: String,
    pub regression: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Task {
    Glue(GlueTask),
    /// Zero-shot cross-lingual NLI: MNLI labels, evaluated on one language (or all).
    Xnli {
        language: Option<String>,
    },
    Swag,
    /// SQuAD 2.0 (`version_2`: unanswerable questions exist) or 1.1.
    Squad {
        version_2: bool,
    },
    Conll,
    Generic(GenericSpec),
}

/// The `--task` names.
pub const TASK_NAMES: &str = "cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, xnli, swag, squad (2.0), squad1 \
                              (1.1), conll (CoNLL-2003 NER), classification, regression";

impl Task {
    /// A task by name (see [`TASK_NAMES`]); `generic` describes the columns of `classification`
    /// and `regression`, whose `regression` flag the name sets.
    pub fn parse(name: &str, generic: Option<GenericSpec>, language: Option<String>) -> Result<Task> {
        let key = name.to_ascii_lowercase().replace(['-', '_', '.'], "");
        let generic_task = |regression: bool| {
            let mut spec = generic.clone().ok_or_else(|| {
                FinetuneError::Invalid(format!("--task {name} needs --text-column and --label-column"))
            })?;
            spec.regression = regression;
            Ok::<_, FinetuneError>(Task::Generic(spec))
        };
        let task = match key.as_str() {
            "xnli" => Task::Xnli { language: language.clone() },
            "swag" => Task::Swag,
            "squad" | "squad2" | "squadv2" | "squad20" => Task::Squad { version_2: true },
            "squad1" | "squadv1" | "squad11" | "squadv11" => Task::Squad { version_2: false },
            "conll" | "conll2003" | "ner" => Task::Conll,
            "classification" | "csv" | "jsonl" => generic_task(false)?,
            "regression" => generic_task(true)?,
            _ => Task::Glue(name.parse().map_err(|_| {
                FinetuneError::Invalid(format!("unknown task {name:?} (one of {TASK_NAMES})"))
            })?),
        };
        if language.is_some() && !matches!(task, Task::Xnli { .. }) {
            return Err(FinetuneError::Invalid("--language applies to --task xnli only".into()));
        }
        Ok(task)
    }

    /// The canonical name (what [`Task::parse`] reads back).
    pub fn name(&self) -> String {
        match self {
            Task::Glue(t) => t.name().into(),
            Task::Xnli { .. } => "xnli".into(),
            Task::Swag => "swag".into(),
            Task::Squad { version_2: true } => "squad".into(),
            Task::Squad { version_2: false } => "squad1".into(),
            Task::Conll => "conll".into(),
            Task::Generic(g) if g.regression => "regression".into(),
            Task::Generic(_) => "classification".into(),
        }
    }

    pub fn head(&self) -> Head {
        match self {
            Task::Glue(_) | Task::Xnli { .. } | Task::Generic(_) => Head::SequenceClassification,
            Task::Swag => Head::MultipleChoice,
            Task::Squad { .. } => Head::QuestionAnswering,
            Task::Conll => Head::TokenClassification,
        }
    }

    pub fn is_regression(&self) -> bool {
        match self {
            Task::Glue(t) => t.is_regression(),
            Task::Generic(g) => g.regression,
            _ => false,
        }
    }

    /// Class names fixed by the task (empty: regression, choices, spans, or read from data).
    pub fn fixed_labels(&self) -> Option<Vec<String>> {
        let owned = |l: &[&str]| Some(l.iter().map(|s| s.to_string()).collect());
        match self {
            Task::Glue(t) => owned(t.labels()),
            Task::Xnli { .. } => owned(GlueTask::Mnli.labels()),
            Task::Conll => owned(&CONLL2003_LABELS),
            Task::Swag | Task::Squad { .. } => Some(Vec::new()),
            Task::Generic(g) if g.regression => Some(Vec::new()),
            Task::Generic(_) => None,
        }
    }

    /// Outputs of the head for `labels` class names: 1 for regression and multiple choice, 2
    /// (start, end) for QA.
    pub fn num_outputs(&self, labels: &[String]) -> usize {
        match self {
            Task::Swag => 1,
            Task::Squad { .. } => 2,
            _ => labels.len().max(1),
        }
    }

    /// Candidate file names in a data directory.
    fn file_names(&self, train: bool) -> Vec<String> {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        match (self, train) {
            (Task::Glue(_), true) => s(&["train.tsv"]),
            (Task::Glue(t), false) => s(t.dev_files()),
            (Task::Xnli { .. }, true) => Vec::new(),
            (Task::Xnli { .. }, false) => s(&["xnli.dev.tsv", "xnli.test.tsv"]),
            (Task::Swag, true) => s(&["train.csv"]),
            (Task::Swag, false) => s(&["val.csv", "dev.csv"]),
            (Task::Squad { .. }, true) => s(&["train-v2.0.json", "train-v1.1.json", "train.json"]),
            (Task::Squad { .. }, false) => s(&["dev-v2.0.json", "dev-v1.1.json", "dev.json"]),
            (Task::Conll, true) => s(&["train.txt", "eng.train"]),
            (Task::Conll, false) => s(&["valid.txt", "dev.txt", "eng.testa"]),
            (Task::Generic(_), true) => generic_names("train"),
            (Task::Generic(_), false) => [generic_names("dev"), generic_names("validation")].concat(),
        }
    }

    /// The training file: `path` itself, or the task's usual name inside the directory `path`.
    pub fn train_file(&self, path: &Path) -> Result<PathBuf> {
        if let Task::Xnli { .. } = self {
            return Err(FinetuneError::Invalid(
                "XNLI has no training set: fine-tune on MNLI (--task mnli), then evaluate with --task xnli"
                    .into(),
            ));
        }
        pick(path, &self.file_names(true), "training")
    }

    /// The evaluation file(s): `path` itself, or the task's dev file(s) in the directory `path`
    /// (both MNLI dev sets when present, matched first).
    pub fn dev_files(&self, path: &Path) -> Result<Vec<PathBuf>> {
        if !path.is_dir() {
            return pick(path, &[], "evaluation").map(|p| vec![p]);
        }
        if let Task::Glue(GlueTask::Mnli) = self {
            let found: Vec<PathBuf> =
                self.file_names(false).iter().map(|n| path.join(n)).filter(|p| p.is_file()).collect();
            if !found.is_empty() {
                return Ok(found);
            }
        }
        pick(path, &self.file_names(false), "evaluation").map(|p| vec![p])
    }

    /// Reads one file of this task; class labels must be among `labels` (ignored where the task
    /// has none).
    pub fn read(&self, path: &Path, labels: &[String]) -> Result<Examples> {
        let classes = || LabelSpec::Classes(labels.to_vec());
        Ok(match self {
            Task::Glue(t) => Examples::Text(t.read(path)?),
            Task::Xnli { language } => Examples::Text(read_xnli(path, language.as_deref())?),
            Task::Swag => Examples::Choice(read_swag(path)?),
            Task::Squad { .. } => Examples::Squad(read_squad(path)?),
            Task::Conll => {
                let names: Vec<&str> = labels.iter().map(String::as_str).collect();
                Examples::Ner(read_conll(path, &names)?)
            }
            Task::Generic(g) => {
                let columns = TextColumns {
                    text: g.text_column.clone(),
                    text_pair: g.text_pair_column.clone(),
                    label: g.label_column.clone(),
                };
                let spec = if g.regression {
                    LabelSpec::Regression
                } else if labels.is_empty() {
                    LabelSpec::Infer
                } else {
                    classes()
                };
                Examples::Text(read_generic(path, &columns, &spec)?)
            }
        })
    }

    /// The metrics of a sentence(-pair) task.
    fn text_metrics(&self, num_classes: usize) -> &'static [Metric] {
        match self {
            Task::Glue(t) => t.metrics(),
            Task::Xnli { .. } => &[Metric::Accuracy],
            _ => Metric::defaults(num_classes),
        }
    }
}

fn generic_names(stem: &str) -> Vec<String> {
    ["csv", "tsv", "jsonl", "json", "txt"].iter().map(|e| format!("{stem}.{e}")).collect()
}

fn pick(path: &Path, names: &[String], what: &str) -> Result<PathBuf> {
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    if !path.exists() {
        return Err(FinetuneError::Invalid(format!("{}: no such file or directory", path.display())));
    }
    names.iter().map(|n| path.join(n)).find(|p| p.is_file()).ok_or_else(|| {
        FinetuneError::Invalid(format!(
            "{}: no {what} file (looked for {}); give the file itself",
            path.display(),
            if names.is_empty() { "none".into() } else { names.join(", ") }
        ))
    })
}

/// The examples of one file, as the task's reader returns them.
#[derive(Clone, Debug)]
pub enum Examples {
    Text(TextDataset),
    Choice(Vec<ChoiceExample>),
    Squad(Vec<SquadExample>),
    Ner(Vec<NerSentence>),
}

impl Examples {
    pub fn len(&self) -> usize {
        match self {
            Examples::Text(d) => d.examples.len(),
            Examples::Choice(v) => v.len(),
            Examples::Squad(v) => v.len(),
            Examples::Ner(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a feature is trained towards.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// Unlabelled (a test file).
    None,
    Class(i64),
    Score(f32),
    /// Per token; negative = ignored (special and non-first sub-tokens).
    Tokens(Vec<i64>),
    /// First and last answer token, `(0, 0)` ([CLS]) for no answer in this window.
    Span(usize, usize),
}

/// One model input, unpadded: one row, or one row per choice.
#[derive(Clone, Debug, PartialEq)]
pub struct Feature {
    pub input_ids: Vec<Vec<u32>>,
    pub token_type_ids: Vec<Vec<u32>>,
    pub target: Target,
}

impl Feature {
    fn from_encodings(encodings: &[&Encoding], target: Target) -> Self {
        Feature {
            input_ids: encodings.iter().map(|e| e.input_ids.clone()).collect(),
            token_type_ids: encodings.iter().map(|e| e.token_type_ids.clone()).collect(),
            target,
        }
    }

    /// Longest row (what the batch pads to).
    pub fn len(&self) -> usize {
        self.input_ids.iter().map(Vec::len).max().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Units the loss averages over: labelled tokens for token classification, else 1 (0 when
    /// unlabelled).
    pub fn loss_units(&self) -> usize {
        match &self.target {
            Target::None => 0,
            Target::Tokens(t) => t.iter().filter(|&&l| l >= 0).count(),
            _ => 1,
        }
    }
}

/// How examples become features.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureOptions {
    pub max_length: usize,
    /// SQuAD: context tokens shared by consecutive windows.
    pub doc_stride: usize,
}

/// The head's outputs for one feature (padding cut off).
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Class logits, one regression value, or one logit per choice.
    Vector(Vec<f32>),
    /// `[tokens][labels]`.
    Tokens(Vec<Vec<f32>>),
    Span {
        start: Vec<f32>,
        end: Vec<f32>,
    },
}

/// Metrics (main one first) and one JSON prediction per example.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    pub metrics: Vec<(String, f64)>,
    pub predictions: Vec<Value>,
}

impl Evaluation {
    pub fn main(&self) -> Option<(&str, f64)> {
        self.metrics.first().map(|(k, v)| (k.as_str(), *v))
    }
}

/// One file's examples and features.
pub struct TaskData {
    pub path: PathBuf,
    pub examples: Examples,
    pub features: Vec<Feature>,
    /// SQuAD windows (for decoding) or NER features (for word predictions).
    qa: Vec<QaFeature>,
    ner: Vec<NerFeature>,
    /// Examples cut to `max_length` (SQuAD: none, it makes windows instead).
    pub truncated: usize,
    /// Class names, index = class id (empty: regression / choices / spans).
    pub labels: Vec<String>,
}

impl TaskData {
    pub fn new(
        task: &Task,
        path: &Path,
        examples: Examples,
        labels: &[String],
        tokenizer: &DebertaTokenizer,
        options: &FeatureOptions,
    ) -> Result<Self> {
        let max_length = options.max_length;
        let mut data = TaskData {
            path: path.to_path_buf(),
            features: Vec::new(),
            qa: Vec::new(),
            ner: Vec::new(),
            truncated: 0,
            labels: labels.to_vec(),
            examples: Examples::Text(TextDataset {
                path: PathBuf::new(),
                labels: Vec::new(),
                examples: vec![],
            }),
        };
        match &examples {
            Examples::Text(d) => {
                let encodings = encode_texts(tokenizer, &d.examples, max_length)?;
                data.truncated = d
                    .examples
                    .iter()
                    .filter(|e| {
                        let n = tokenizer.tokenize(&e.text_a).len()
                            + e.text_b.as_ref().map_or(0, |b| tokenizer.tokenize(b).len() + 1)
                            + 2;
                        n > max_length
                    })
                    .count();
                data.features = d
                    .examples
                    .iter()
                    .zip(&encodings)
                    .map(|(e, enc)| {
                        let target = match (e.label, task.is_regression()) {
                            (None, _) => Target::None,
                            (Some(Label::Score(s)), _) => Target::Score(s as f32),
                            (Some(Label::Class(c)), false) => Target::Class(c as i64),
                            (Some(Label::Class(c)), true) => Target::Score(c as f32),
                        };
                        Feature::from_encodings(&[enc], target)
                    })
                    .collect();
            }
            Examples::Choice(v) => {
                let encodings = encode_choices(tokenizer, v, max_length)?;
                data.truncated = v
                    .iter()
                    .filter(|e| {
                        let a = tokenizer.tokenize(&e.context).len();
                        e.pairs().iter().any(|(_, b)| a + tokenizer.tokenize(b).len() + 3 > max_length)
                    })
                    .count();
                data.features = v
                    .iter()
                    .zip(&encodings)
                    .map(|(e, encs)| {
                        let refs: Vec<&Encoding> = encs.iter().collect();
                        let target = e.label.map_or(Target::None, |l| Target::Class(l as i64));
                        Feature::from_encodings(&refs, target)
                    })
                    .collect();
            }
            Examples::Squad(v) => {
                let opts = QaOptions { max_length, stride: options.doc_stride, pad_to_max_length: false };
                let windows = qa_features(tokenizer, v, &opts)?;
                data.features = windows
                    .iter()
                    .map(|w| {
                        Feature::from_encodings(
                            &[&w.encoding],
                            Target::Span(w.start_position, w.end_position),
                        )
                    })
                    .collect();
                data.qa = windows;
            }
            Examples::Ner(v) => {
                let feats = ner_features(tokenizer, v, max_length)?;
                data.truncated = feats
                    .iter()
                    .filter(|f| f.word_ids.iter().flatten().max().map_or(0, |w| w + 1) < f.num_words)
                    .count();
                data.features = feats
                    .iter()
                    .map(|f| Feature::from_encodings(&[&f.encoding], Target::Tokens(f.labels.clone())))
                    .collect();
                data.ner = feats;
            }
        }
        if data.features.is_empty() {
            return Err(FinetuneError::Invalid(format!("{}: no model inputs", path.display())));
        }
        data.examples = examples;
        Ok(data)
    }

    /// Whether every example has a label (test files have none: no metrics then).
    pub fn is_labelled(&self) -> bool {
        match &self.examples {
            Examples::Text(d) => d.is_labelled(),
            Examples::Choice(v) => v.iter().all(|e| e.label.is_some()),
            Examples::Squad(_) | Examples::Ner(_) => true,
        }
    }

    /// Predictions and metrics from the outputs of every feature, in feature order.
    pub fn score(&self, task: &Task, outputs: &[Output], answer: &AnswerOptions) -> Result<Evaluation> {
        if outputs.len() != self.features.len() {
            return Err(FinetuneError::Invalid(format!(
                "{} outputs for {} features",
                outputs.len(),
                self.features.len()
            )));
        }
        let labelled = self.is_labelled();
        match &self.examples {
            Examples::Text(d) => {
                let mut predicted = Vec::new();
                let mut predictions = Vec::new();
                for (i, out) in outputs.iter().enumerate() {
                    let v = vector(out)?;
                    if task.is_regression() {
                        predicted.push(Label::Score(v[0] as f64));
                        predictions.push(json!({"index": i, "score": v[0]}));
                    } else {
                        let probs = softmax(v);
                        let c = argmax(&probs);
                        predicted.push(Label::Class(c));
                        let name = self.labels.get(c).cloned().unwrap_or_else(|| c.to_string());
                        predictions.push(json!({"index": i, "label": name, "probabilities": probs}));
                    }
                }
                let metrics = if labelled {
                    let gold: Vec<Label> = d.examples.iter().map(|e| e.label.expect("labelled")).collect();
                    evaluate(task.text_metrics(self.labels.len()), &predicted, &gold)?
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect()
                } else {
                    Vec::new()
                };
                Ok(Evaluation { metrics, predictions })
            }
            Examples::Choice(v) => {
                let mut predicted = Vec::new();
                let mut predictions = Vec::new();
                for (e, out) in v.iter().zip(outputs) {
                    let probs = softmax(vector(out)?);
                    let c = argmax(&probs);
                    predicted.push(Label::Class(c));
                    predictions.push(json!({"id": e.id, "label": c, "probabilities": probs}));
                }
                let metrics = if labelled {
                    let gold: Vec<Label> =
                        v.iter().map(|e| Label::Class(e.label.expect("labelled"))).collect();
                    evaluate(&[Metric::Accuracy], &predicted, &gold)?
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect()
                } else {
                    Vec::new()
                };
                Ok(Evaluation { metrics, predictions })
            }
            Examples::Squad(v) => {
                let (mut starts, mut ends) = (Vec::new(), Vec::new());
                for out in outputs {
                    let Output::Span { start, end } = out else {
                        return Err(FinetuneError::Invalid("expected start/end logits".into()));
                    };
                    starts.push(start.clone());
                    ends.push(end.clone());
                }
                let answers = decode_answers(v, &self.qa, &starts, &ends, answer)?;
                let golds: Vec<Vec<&str>> = v.iter().map(|e| e.gold_texts()).collect();
                let texts: Vec<&str> = answers.iter().map(|a| a.text.as_str()).collect();
                let scores = squad_v2(&golds, &texts)?;
                let mut metrics =
                    vec![("f1".to_string(), scores.all.f1), ("exact".to_string(), scores.all.exact)];
                for (prefix, split) in [("HasAns", scores.has_ans), ("NoAns", scores.no_ans)] {
                    if let Some(s) = split {
                        metrics.push((format!("{prefix}_f1"), s.f1));
                        metrics.push((format!("{prefix}_exact"), s.exact));
                        metrics.push((format!("{prefix}_total"), s.total as f64));
                    }
                }
                let predictions = answers
                    .iter()
                    .map(|a| {
                        let diff = if a.score_diff.is_finite() { json!(a.score_diff) } else { Value::Null };
                        json!({"id": a.id, "prediction_text": a.text, "start": a.start,
                               "best_span": a.best_span, "null_score_diff": diff})
                    })
                    .collect();
                Ok(Evaluation { metrics, predictions })
            }
            Examples::Ner(sentences) => {
                let mut gold = Vec::new();
                let mut predicted = Vec::new();
                let mut predictions = Vec::new();
                for (i, ((s, f), out)) in sentences.iter().zip(&self.ner).zip(outputs).enumerate() {
                    let Output::Tokens(rows) = out else {
                        return Err(FinetuneError::Invalid("expected token logits".into()));
                    };
                    let token_preds: Vec<usize> = rows.iter().map(|r| argmax(r)).collect();
                    let words = f.word_predictions(&token_preds);
                    // Words cut off by max_length (or with no tokens) are predicted `O`.
                    let tags: Vec<String> = words
                        .iter()
                        .map(|w| w.and_then(|c| self.labels.get(c).cloned()).unwrap_or_else(|| "O".into()))
                        .collect();
                    gold.push(s.tags.iter().map(|&t| self.labels[t].clone()).collect::<Vec<_>>());
                    predictions.push(json!({"index": i, "words": s.words, "tags": tags}));
                    predicted.push(tags);
                }
                let scores = entity_scores(&gold, &predicted)?;
                let o = scores.overall;
                let metrics = vec![
                    ("f1".to_string(), o.f1()),
                    ("precision".to_string(), o.precision()),
                    ("recall".to_string(), o.recall()),
                    ("accuracy".to_string(), scores.accuracy),
                ];
                Ok(Evaluation { metrics, predictions })
            }
        }
    }
}

fn vector(out: &Output) -> Result<&[f32]> {
    match out {
        Output::Vector(v) if !v.is_empty() => Ok(v),
        _ => Err(FinetuneError::Invalid("expected one logit vector per example".into())),
    }
}

/// Softmax in f64 (probabilities for reports).
pub fn softmax(v: &[f32]) -> Vec<f64> {
    let max = v.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    let e: Vec<f64> = v.iter().map(|&x| (x as f64 - max).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|x| x / s).collect()
}

/// Index of the largest value (the first on ties, as numpy's argmax).
pub fn argmax<T: PartialOrd + Copy>(v: &[T]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}
