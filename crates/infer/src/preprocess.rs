//! The host-side stages: a request becomes model rows ([`Preprocessor::prepare`]) and the
//! model's outputs for them become the answer ([`Preprocessor::finish`]).

use crate::post;
use crate::types::{Aggregation, InferError, Pooling, Request, Response, Result, Task};
use deberta_data::squad::{qa_features, QaOptions};
use deberta_data::tasks::squad::SquadExample;
use deberta_model::{DebertaConfig, Head};
use deberta_tokenizer::{DebertaTokenizer, EncodeOptions, Encoding, Truncation};
use deberta_train::finetune::task::{Feature, Output, Target};
use deberta_train::finetune::{labels_of, TaskCard};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Load-time settings; `None` takes the model directory's (its `finetune.json`), else HF's
/// pipeline defaults.
#[derive(Clone, Debug, Default)]
pub struct PipelineOptions {
    /// `spm.model`, `tokenizer.json` or a directory holding one (default: the model's).
    pub tokenizer: Option<PathBuf>,
    /// Tokens per model row, special tokens included (default: `finetune.json`'s, else 512).
    pub max_length: Option<usize>,
    /// Question answering: context tokens shared by consecutive windows (default:
    /// `finetune.json`'s, else 128; at most half of `max_length`).
    pub doc_stride: Option<usize>,
    /// Run the encoder's Linear layers in int8 on the CPU (`deberta_io::LoadOptions::int8`,
    /// docs/int8.md).
    pub int8: bool,
}

/// How sequence-classification logits become scores (HF's `function_to_apply` default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scoring {
    Softmax,
    Sigmoid,
    /// Regression: the raw value.
    Raw,
}

/// Tokenizer and model facts needed before and after the forward pass. Holds no tensors, so
/// worker threads share it (it is cheap to clone).
#[derive(Clone)]
pub struct Preprocessor {
    tokenizer: Arc<DebertaTokenizer>,
    head: Head,
    labels: Vec<String>,
    scoring: Scoring,
    entailment: Option<usize>,
    max_length: usize,
    doc_stride: usize,
}

/// One tokenized request: the rows that go through the model together (one, or one per QA
/// window, zero-shot label or choice) and what post-processing needs.
#[derive(Clone, Debug)]
pub struct Prepared {
    task: Task,
    pub(crate) features: Vec<Feature>,
    pub(crate) post: Post,
}

/// Per-task context kept from `prepare` to `finish`.
#[derive(Clone, Debug)]
pub(crate) enum Post {
    Text {
        top_k: Option<usize>,
    },
    Tokens {
        text: String,
        encoding: Encoding,
        aggregation: Aggregation,
    },
    Qa {
        context: String,
        windows: Vec<Encoding>,
        top_k: usize,
        handle_impossible: bool,
        max_answer_len: usize,
    },
    Choice,
    ZeroShot {
        sequence: String,
        labels: Vec<String>,
        multi_label: bool,
    },
    Embed {
        pooling: Pooling,
        normalize: bool,
    },
    Fill {
        ids: Vec<u32>,
        positions: Vec<usize>,
        top_k: usize,
    },
}

impl Prepared {
    /// Model rows (QA windows, zero-shot labels and choices count one each).
    pub fn rows(&self) -> usize {
        self.features.iter().map(|f| f.input_ids.len()).sum()
    }

    /// The longest row, in tokens.
    pub fn max_len(&self) -> usize {
        self.features.iter().map(Feature::len).max().unwrap_or(0)
    }

    pub fn task(&self) -> Task {
        self.task
    }

    /// The token ids of every row, in order (windows, labels' hypotheses or choices).
    pub fn row_ids(&self) -> Vec<&[u32]> {
        self.features.iter().flat_map(|f| f.input_ids.iter().map(Vec::as_slice)).collect()
    }

    /// Rows per feature: the choice count for multiple choice, else 1. Features with different
    /// counts cannot share a forward pass.
    pub(crate) fn rows_per_feature(&self) -> usize {
        self.features.first().map_or(1, |f| f.input_ids.len())
    }
}

/// The model's outputs for one [`Prepared`], one per feature, padding cut off.
#[derive(Clone, Debug)]
pub struct RawOutput {
    pub(crate) outputs: Vec<Output>,
}

fn model_error(e: impl std::fmt::Display) -> InferError {
    InferError::Model(e.to_string())
}

fn feature(encodings: &[&Encoding]) -> Feature {
    Feature {
        input_ids: encodings.iter().map(|e| e.input_ids.clone()).collect(),
        token_type_ids: encodings.iter().map(|e| e.token_type_ids.clone()).collect(),
        target: Target::None,
    }
}

impl Preprocessor {
    pub fn load(model_dir: &Path, options: &PipelineOptions) -> Result<Self> {
        let config = deberta_io::read_config(model_dir).map_err(model_error)?;
        let head = deberta_io::checkpoint::head_of(&config, model_dir).map_err(model_error)?;
        let tok_path = options.tokenizer.as_deref().unwrap_or(model_dir);
        let tokenizer = DebertaTokenizer::from_path(tok_path)
            .map_err(|e| InferError::Model(format!("loading the tokenizer: {e}")))?;
        if tokenizer.vocab_size() > config.vocab_size {
            return Err(InferError::Model(format!(
                "{}: vocab_size {} is smaller than the tokenizer's {} ids ({})",
                model_dir.join("config.json").display(),
                config.vocab_size,
                tokenizer.vocab_size(),
                tokenizer.source().display()
            )));
        }
        let card = TaskCard::read(model_dir).map_err(model_error)?;
        let max_length = options.max_length.or(card.as_ref().map(|c| c.features.max_length)).unwrap_or(512);
        if max_length < 4 {
            return Err(InferError::BadInput(format!("max_length {max_length}: fewer than 4 tokens")));
        }
        let doc_stride = options
            .doc_stride
            .or(card.as_ref().map(|c| c.features.doc_stride))
            .unwrap_or(128)
            .min(max_length / 2);
        let labels = labels_of(&config);
        let entailment = labels.iter().position(|l| l.to_lowercase().starts_with("entail"));
        Ok(Preprocessor {
            tokenizer: Arc::new(tokenizer),
            head,
            scoring: scoring(&config),
            labels,
            entailment,
            max_length,
            doc_stride,
        })
    }

    /// What this model serves: its head's tasks, and embeddings for every model.
    pub fn tasks(&self) -> Vec<Task> {
        let mut tasks = match self.head {
            Head::SequenceClassification => {
                let mut t = vec![Task::TextClassification];
                if self.entailment.is_some() && self.scoring == Scoring::Softmax {
                    t.push(Task::ZeroShotClassification);
                }
                t
            }
            Head::TokenClassification => vec![Task::TokenClassification],
            Head::QuestionAnswering => vec![Task::QuestionAnswering],
            Head::MultipleChoice => vec![Task::MultipleChoice],
            Head::MaskedLm | Head::EnhancedMaskDecoderLm => vec![Task::FillMask],
            Head::Base | Head::ReplacedTokenDetection => Vec::new(),
        };
        tasks.push(Task::Embeddings);
        tasks
    }

    /// The task a request without one gets: the head's first.
    pub fn default_task(&self) -> Task {
        self.tasks()[0]
    }

    pub fn head(&self) -> Head {
        self.head
    }

    pub fn max_input_length(&self) -> usize {
        self.max_length
    }

    /// Class names in id order (`LABEL_i` where the config names none).
    pub fn id2label(&self) -> &[String] {
        &self.labels
    }

    pub fn tokenizer(&self) -> &DebertaTokenizer {
        &self.tokenizer
    }

    /// Encodes `a` (and `b`) whole; over `max_length` it is cut with `strategy` when `truncate`,
    /// else refused.
    fn encode(&self, a: &str, b: Option<&str>, truncate: bool, strategy: Truncation) -> Result<Encoding> {
        let tok = &self.tokenizer;
        let whole = tok.encode(a, b, &EncodeOptions::default()).map_err(model_error)?;
        if whole.len() <= self.max_length {
            return Ok(whole);
        }
        if !truncate {
            return Err(InferError::TooLong { tokens: whole.len(), max: self.max_length });
        }
        let options = EncodeOptions {
            max_length: Some(self.max_length),
            truncation: Some(strategy),
            ..EncodeOptions::default()
        };
        tok.encode(a, b, &options).map_err(|e| InferError::BadInput(e.to_string()))
    }

    fn check(&self, task: Task) -> Result<()> {
        if self.tasks().contains(&task) {
            return Ok(());
        }
        let why = match task {
            Task::ZeroShotClassification if self.head == Head::SequenceClassification => {
                " (zero-shot needs an NLI head: a label starting with \"entail\" and softmax scores)"
            }
            _ => "",
        };
        let served: Vec<&str> = self.tasks().iter().map(|t| t.name()).collect();
        Err(InferError::Unsupported(format!(
            "a {} model does not serve {task}{why}; it serves {}",
            self.head.architecture(),
            served.join(", ")
        )))
    }

    /// Tokenizes one request into model rows. An input longer than [`Self::max_input_length`]
    /// is cut when `truncate`, else refused with [`InferError::TooLong`]; question answering
    /// never is: a long context becomes overlapping windows.
    pub fn prepare(&self, request: &Request, truncate: bool) -> Result<Prepared> {
        let task = request.task();
        self.check(task)?;
        let (features, post) = match request {
            Request::TextClassification { text, text_pair, top_k } => {
                let e = self.encode(text, text_pair.as_deref(), truncate, Truncation::LongestFirst)?;
                (vec![feature(&[&e])], Post::Text { top_k: *top_k })
            }
            Request::TokenClassification { text, aggregation_strategy } => {
                let e = self.encode(text, None, truncate, Truncation::LongestFirst)?;
                let post = Post::Tokens {
                    text: text.clone(),
                    encoding: e.clone(),
                    aggregation: *aggregation_strategy,
                };
                (vec![feature(&[&e])], post)
            }
            Request::QuestionAnswering {
                question,
                context,
                top_k,
                handle_impossible_answer,
                max_answer_len,
            } => {
                if question.trim().is_empty() || context.trim().is_empty() {
                    return Err(InferError::BadInput(
                        "the question and the context must not be empty".into(),
                    ));
                }
                if *top_k == 0 || *max_answer_len == 0 {
                    return Err(InferError::BadInput("top_k and max_answer_len must be at least 1".into()));
                }
                let example = SquadExample {
                    id: String::new(),
                    title: String::new(),
                    question: question.clone(),
                    context: context.clone(),
                    answers: Vec::new(),
                    is_impossible: true,
                };
                let options = QaOptions {
                    max_length: self.max_length,
                    stride: self.doc_stride,
                    pad_to_max_length: false,
                };
                let windows: Vec<Encoding> = qa_features(&self.tokenizer, &[example], &options)
                    .map_err(|e| InferError::BadInput(format!("the question does not fit: {e}")))?
                    .into_iter()
                    .map(|w| w.encoding)
                    .collect();
                let features = windows.iter().map(|w| feature(&[w])).collect();
                let post = Post::Qa {
                    context: context.clone(),
                    windows,
                    top_k: *top_k,
                    handle_impossible: *handle_impossible_answer,
                    max_answer_len: *max_answer_len,
                };
                (features, post)
            }
            Request::MultipleChoice { text, choices } => {
                if choices.is_empty() {
                    return Err(InferError::BadInput("no choices".into()));
                }
                let encodings = choices
                    .iter()
                    .map(|c| self.encode(text, Some(c), truncate, Truncation::LongestFirst))
                    .collect::<Result<Vec<_>>>()?;
                let refs: Vec<&Encoding> = encodings.iter().collect();
                (vec![feature(&refs)], Post::Choice)
            }
            Request::ZeroShotClassification {
                sequence,
                candidate_labels,
                hypothesis_template,
                multi_label,
            } => {
                let labels: Vec<String> =
                    candidate_labels.iter().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
                if labels.is_empty() {
                    return Err(InferError::BadInput("no candidate_labels".into()));
                }
                if !hypothesis_template.contains("{}") {
                    return Err(InferError::BadInput(format!(
                        "hypothesis_template {hypothesis_template:?} has no {{}} for the label"
                    )));
                }
                let features = labels
                    .iter()
                    .map(|l| {
                        let hypothesis = hypothesis_template.replacen("{}", l, 1);
                        let e = self.encode(sequence, Some(&hypothesis), truncate, Truncation::OnlyFirst)?;
                        Ok(feature(&[&e]))
                    })
                    .collect::<Result<Vec<_>>>()?;
                (features, Post::ZeroShot { sequence: sequence.clone(), labels, multi_label: *multi_label })
            }
            Request::Embeddings { text, pooling, normalize } => {
                let e = self.encode(text, None, truncate, Truncation::LongestFirst)?;
                (vec![feature(&[&e])], Post::Embed { pooling: *pooling, normalize: *normalize })
            }
            Request::FillMask { text, top_k } => {
                if *top_k == 0 {
                    return Err(InferError::BadInput("top_k must be at least 1".into()));
                }
                let ids = self.mask_ids(text, truncate)?;
                let positions: Vec<usize> = ids
                    .iter()
                    .enumerate()
                    .filter(|(_, &id)| id == self.tokenizer.mask_id())
                    .map(|(i, _)| i)
                    .collect();
                if positions.is_empty() {
                    return Err(InferError::BadInput(format!("no {MASK} in the text")));
                }
                let f = Feature {
                    token_type_ids: vec![vec![0; ids.len()]],
                    input_ids: vec![ids.clone()],
                    target: Target::None,
                };
                (vec![f], Post::Fill { ids, positions, top_k: *top_k })
            }
        };
        Ok(Prepared { task, features, post })
    }

    /// `[CLS] text [SEP]` with each literal `[MASK]` as the mask id. Text is split at the masks
    /// and each part encoded alone, as HF splits at added tokens; the mask token strips the
    /// whitespace on its left, as DeBERTa-v3's `[MASK]` (`lstrip`) does.
    fn mask_ids(&self, text: &str, truncate: bool) -> Result<Vec<u32>> {
        let tok = &self.tokenizer;
        let mut ids = vec![tok.cls_id()];
        let parts: Vec<&str> = text.split(MASK).collect();
        for (i, part) in parts.iter().enumerate() {
            let part = if i + 1 < parts.len() { part.trim_end() } else { part };
            ids.extend(tok.tokenize(part).iter().map(|t| t.id));
            if i + 1 < parts.len() {
                ids.push(tok.mask_id());
            }
        }
        ids.push(tok.sep_id());
        if ids.len() > self.max_length {
            if !truncate {
                return Err(InferError::TooLong { tokens: ids.len(), max: self.max_length });
            }
            ids.truncate(self.max_length - 1);
            ids.push(tok.sep_id());
        }
        Ok(ids)
    }

    /// Turns the engine's outputs for `prepared` into the answer.
    pub fn finish(&self, prepared: &Prepared, raw: RawOutput) -> Result<Response> {
        let outputs = raw.outputs;
        if outputs.len() != prepared.features.len() {
            return Err(InferError::Model(format!(
                "{} outputs for {} model inputs",
                outputs.len(),
                prepared.features.len()
            )));
        }
        if !outputs.iter().all(finite) {
            return Err(InferError::Model("the model's outputs are not finite (NaN or infinite)".into()));
        }
        post::finish(self, &prepared.post, outputs)
    }

    pub(crate) fn labels(&self) -> &[String] {
        &self.labels
    }
    /// How a classification head's scores come from its logits (HF's `problem_type` rule).
    pub fn scoring(&self) -> Scoring {
        self.scoring
    }
    /// The index of the NLI head's entailment label, if it has one.
    pub fn entailment(&self) -> Option<usize> {
        self.entailment
    }
}

/// The mask token as written in texts.
pub const MASK: &str = "[MASK]";

fn finite(o: &Output) -> bool {
    let ok = |v: &[f32]| v.iter().all(|x| x.is_finite());
    match o {
        Output::Vector(v) => ok(v),
        Output::Tokens(rows) => rows.iter().all(|r| ok(r)),
        Output::Span { start, end } => ok(start) && ok(end),
    }
}

/// HF's default `function_to_apply`, except that one label without a `problem_type` is a
/// regression (as this project's fine-tuning writes them) rather than a sigmoid.
fn scoring(config: &DebertaConfig) -> Scoring {
    match config.raw.get("problem_type").and_then(|v| v.as_str()) {
        Some("regression") => Scoring::Raw,
        Some("multi_label_classification") => Scoring::Sigmoid,
        Some("single_label_classification") if config.num_labels > 1 => Scoring::Softmax,
        _ if config.num_labels == 1 => Scoring::Raw,
        _ => Scoring::Softmax,
    }
}
