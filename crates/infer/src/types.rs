//! What a caller sends and gets back, with the JSON shapes of HF pipelines (and TEI for
//! embeddings).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What a request asks for. Which tasks a model serves follows from its head; see
/// [`crate::Preprocessor::tasks`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    TextClassification,
    TokenClassification,
    QuestionAnswering,
    MultipleChoice,
    ZeroShotClassification,
    /// Pooled last hidden state (HF's `feature-extraction`, pooled as TEI's `/embed`).
    #[serde(rename = "feature-extraction", alias = "embeddings")]
    Embeddings,
    FillMask,
}

impl Task {
    pub const ALL: [Task; 7] = [
        Task::TextClassification,
        Task::TokenClassification,
        Task::QuestionAnswering,
        Task::MultipleChoice,
        Task::ZeroShotClassification,
        Task::Embeddings,
        Task::FillMask,
    ];

    /// HF's pipeline name (`feature-extraction` for embeddings).
    pub fn name(self) -> &'static str {
        match self {
            Task::TextClassification => "text-classification",
            Task::TokenClassification => "token-classification",
            Task::QuestionAnswering => "question-answering",
            Task::MultipleChoice => "multiple-choice",
            Task::ZeroShotClassification => "zero-shot-classification",
            Task::Embeddings => "feature-extraction",
            Task::FillMask => "fill-mask",
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Task {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase().replace('_', "-");
        if s == "embeddings" || s == "embed" {
            return Ok(Task::Embeddings);
        }
        Task::ALL.into_iter().find(|t| t.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Task::ALL.iter().map(|t| t.name()).collect();
            format!("unknown task {s:?} (one of {}, embeddings)", names.join(", "))
        })
    }
}

/// HF's `aggregation_strategy` for token classification (`average` and `max` are not offered).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Aggregation {
    /// One result per token (the piece as `word`, its `index`).
    #[default]
    None,
    /// Adjacent tokens with the same entity type merged into `entity_group`s.
    Simple,
    /// Words (runs of tokens with no space between them) take the label of their first token,
    /// then merge as `Simple`.
    First,
}

/// How the token states of one text become one vector.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// The `[CLS]` token's state.
    Cls,
    /// The mean over the text's tokens (padding excluded, `[CLS]`/`[SEP]` included, as
    /// sentence-transformers does).
    #[default]
    Mean,
}

/// One request. JSON: `{"task": "<hf pipeline name>", ...fields}`; field names are HF's (its
/// pipelines' call arguments) and TEI's for embeddings, with HF's defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "kebab-case")]
pub enum Request {
    TextClassification {
        #[serde(alias = "inputs")]
        text: String,
        #[serde(default)]
        text_pair: Option<String>,
        /// `None`: every label, best first.
        #[serde(default)]
        top_k: Option<usize>,
    },
    TokenClassification {
        #[serde(alias = "inputs")]
        text: String,
        #[serde(default)]
        aggregation_strategy: Aggregation,
    },
    QuestionAnswering {
        question: String,
        context: String,
        #[serde(default = "one")]
        top_k: usize,
        #[serde(default)]
        handle_impossible_answer: bool,
        #[serde(default = "fifteen")]
        max_answer_len: usize,
    },
    MultipleChoice {
        text: String,
        choices: Vec<String>,
    },
    ZeroShotClassification {
        #[serde(alias = "inputs", alias = "text")]
        sequence: String,
        candidate_labels: Vec<String>,
        #[serde(default = "default_template")]
        hypothesis_template: String,
        #[serde(default)]
        multi_label: bool,
    },
    #[serde(rename = "feature-extraction", alias = "embeddings")]
    Embeddings {
        #[serde(alias = "inputs")]
        text: String,
        #[serde(default)]
        pooling: Pooling,
        #[serde(default = "yes")]
        normalize: bool,
    },
    FillMask {
        #[serde(alias = "inputs")]
        text: String,
        #[serde(default = "five")]
        top_k: usize,
    },
}

fn one() -> usize {
    1
}
fn five() -> usize {
    5
}
fn fifteen() -> usize {
    15
}
fn yes() -> bool {
    true
}

/// HF's zero-shot default.
pub const DEFAULT_HYPOTHESIS_TEMPLATE: &str = "This example is {}.";

fn default_template() -> String {
    DEFAULT_HYPOTHESIS_TEMPLATE.into()
}

impl Request {
    pub fn task(&self) -> Task {
        match self {
            Request::TextClassification { .. } => Task::TextClassification,
            Request::TokenClassification { .. } => Task::TokenClassification,
            Request::QuestionAnswering { .. } => Task::QuestionAnswering,
            Request::MultipleChoice { .. } => Task::MultipleChoice,
            Request::ZeroShotClassification { .. } => Task::ZeroShotClassification,
            Request::Embeddings { .. } => Task::Embeddings,
            Request::FillMask { .. } => Task::FillMask,
        }
    }
}

/// A label and its score (text classification).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelScore {
    pub label: String,
    pub score: f64,
}

/// One token-classification result: a token (`entity`, `index`) with `Aggregation::None`, an
/// `entity_group` otherwise. `start`/`end`: character offsets in the text, end exclusive.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_group: Option<String>,
    pub score: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    pub word: String,
    pub start: usize,
    pub end: usize,
}

/// One answer span; `start`/`end` are character offsets in the context (end exclusive); the
/// no-answer is `""` at 0..0.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub score: f64,
    pub start: usize,
    pub end: usize,
    pub answer: String,
}

/// One fill-mask candidate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MaskFill {
    pub score: f64,
    pub token: u32,
    pub token_str: String,
    pub sequence: String,
}

/// The answer to one [`Request`], serialised as HF's pipeline output (untagged).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Response {
    /// Best first. A regression head gives one entry with the raw score.
    TextClassification(Vec<LabelScore>),
    TokenClassification(Vec<Entity>),
    /// Best first, `top_k` of them.
    QuestionAnswering(Vec<Answer>),
    /// `label`: the index of the best choice; `scores`: softmax over the choices, in order.
    MultipleChoice {
        label: usize,
        scores: Vec<f64>,
    },
    /// Labels best first.
    ZeroShotClassification {
        sequence: String,
        labels: Vec<String>,
        scores: Vec<f64>,
    },
    Embeddings(Vec<f32>),
    /// Best first; one list per `[MASK]` when the text has several, as HF.
    FillMask(Vec<MaskFill>),
    FillMasks(Vec<Vec<MaskFill>>),
}

/// What went wrong, by whose fault.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    /// The caller's mistake (a missing field, an empty label list, no `[MASK]`).
    #[error("{0}")]
    BadInput(String),
    /// The input is longer than the model takes and truncation was not asked for.
    #[error("the input is {tokens} tokens, more than the {max} allowed (ask for truncation or shorten it)")]
    TooLong { tokens: usize, max: usize },
    /// This model cannot serve this task.
    #[error("{0}")]
    Unsupported(String),
    /// Ours: the model failed to load or gave unusable outputs.
    #[error("{0}")]
    Model(String),
}

pub type Result<T, E = InferError> = std::result::Result<T, E>;
