//! Fine-tuning datasets: readers for the benchmark file layouts (GLUE, XNLI, SWAG, SQuAD,
//! CoNLL-2003) and for caller-described CSV/TSV/JSONL files, each returning typed examples, plus
//! the step from examples to tokenizer encodings.
//!
//! Every reader fails with a [`TaskError`] that names the file, and for a bad row its line
//! (`path:line: message`), so a broken download is found without a debugger. A file without
//! examples is an error too: training on nothing is never what was meant.

pub mod conll;
pub mod generic;
pub mod glue;
pub mod squad;
pub mod swag;
mod table;
pub mod xnli;

use deberta_tokenizer::{DebertaTokenizer, EncodeOptions, Encoding, Truncation};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A bad row (or JSON value); `line` is 1-based.
    #[error("{path}:{line}: {message}")]
    Row { path: PathBuf, line: u64, message: String },
    /// A problem with the file as a whole (missing header column, bad JSON structure, ...).
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{path}: no examples")]
    Empty { path: PathBuf },
    /// Turning one example into model inputs failed (e.g. a question longer than `max_length`).
    #[error("example {id}: {message}")]
    Example { id: String, message: String },
    /// Inputs that do not fit together (e.g. logits for a different number of features).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Tokenizer(#[from] deberta_tokenizer::TokenizerError),
}

pub type Result<T> = std::result::Result<T, TaskError>;

pub(crate) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> TaskError + '_ {
    move |source| TaskError::Io { path: path.to_path_buf(), source }
}

/// The target of a sentence (pair) task.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Label {
    /// Index into the dataset's label list.
    Class(usize),
    /// Regression target (STS-B similarity, a sentiment rating).
    Score(f64),
}

/// One sentence or sentence pair with its label (`None` in unlabelled test files).
#[derive(Clone, Debug, PartialEq)]
pub struct TextExample {
    pub text_a: String,
    pub text_b: Option<String>,
    pub label: Option<Label>,
}

/// The examples of one file and the label names their class indices refer to.
#[derive(Clone, Debug)]
pub struct TextDataset {
    pub path: PathBuf,
    /// Class names, index = class id; empty for regression.
    pub labels: Vec<String>,
    pub examples: Vec<TextExample>,
}

impl TextDataset {
    pub fn is_regression(&self) -> bool {
        self.labels.is_empty()
    }
    /// Outputs of the classification head: the class count, or 1 for regression.
    pub fn num_labels(&self) -> usize {
        self.labels.len().max(1)
    }
    /// Whether every example has a label (a test file has none).
    pub fn is_labelled(&self) -> bool {
        self.examples.iter().all(|e| e.label.is_some())
    }
}

/// How a label column is read.
#[derive(Clone, Debug, PartialEq)]
pub enum LabelSpec {
    /// These class names, in id order; any other value is an error.
    Classes(Vec<String>),
    /// The sorted distinct values found in the file (use the training set's list for dev/test
    /// files, via [`LabelSpec::Classes`], so ids agree).
    Infer,
    /// Floating-point targets.
    Regression,
}

impl LabelSpec {
    pub(crate) fn classes(names: &[&str]) -> Self {
        LabelSpec::Classes(names.iter().map(|s| s.to_string()).collect())
    }
}

/// A row read before its label is interpreted (the label list may depend on all rows).
pub(crate) struct RawExample {
    pub line: u64,
    pub text_a: String,
    pub text_b: Option<String>,
    pub label: Option<String>,
}

/// Interprets the raw labels of `rows` under `spec` (surrounding whitespace ignored); errors name
/// the row's line.
pub(crate) fn finish_dataset(path: &Path, rows: Vec<RawExample>, spec: &LabelSpec) -> Result<TextDataset> {
    if rows.is_empty() {
        return Err(TaskError::Empty { path: path.to_path_buf() });
    }
    let labels: Vec<String> = match spec {
        LabelSpec::Classes(names) => names.clone(),
        LabelSpec::Infer => {
            let mut names: Vec<String> =
                rows.iter().filter_map(|r| r.label.as_deref().map(|l| l.trim().to_string())).collect();
            names.sort();
            names.dedup();
            names
        }
        LabelSpec::Regression => Vec::new(),
    };
    let row_error = |line: u64, message: String| TaskError::Row { path: path.to_path_buf(), line, message };
    let examples = rows
        .into_iter()
        .map(|r| {
            let label = match (&r.label, spec) {
                (None, _) => None,
                (Some(value), LabelSpec::Regression) => {
                    let score: f64 = value
                        .trim()
                        .parse()
                        .map_err(|_| row_error(r.line, format!("label {value:?} is not a number")))?;
                    if !score.is_finite() {
                        return Err(row_error(r.line, format!("label {value:?} is not finite")));
                    }
                    Some(Label::Score(score))
                }
                (Some(value), _) => {
                    let id = labels.iter().position(|l| l == value.trim()).ok_or_else(|| {
                        row_error(r.line, format!("unknown label {value:?} (expected one of {labels:?})"))
                    })?;
                    Some(Label::Class(id))
                }
            };
            Ok(TextExample { text_a: r.text_a, text_b: r.text_b, label })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(TextDataset { path: path.to_path_buf(), labels, examples })
}

/// `[CLS] a [SEP] (b [SEP])` for each example, cut to `max_length` tokens (`longest_first`, as
/// HF's `run_glue` does), unpadded: the batcher pads to the longest in the batch.
pub fn encode_texts(
    tokenizer: &DebertaTokenizer,
    examples: &[TextExample],
    max_length: usize,
) -> Result<Vec<Encoding>> {
    let inputs: Vec<(&str, Option<&str>)> =
        examples.iter().map(|e| (e.text_a.as_str(), e.text_b.as_deref())).collect();
    Ok(tokenizer.encode_batch(&inputs, &truncating(max_length, Truncation::LongestFirst))?)
}

/// Options that cut to `max_length` with `strategy` and neither pad nor keep overflow.
pub(crate) fn truncating(max_length: usize, strategy: Truncation) -> EncodeOptions {
    EncodeOptions { max_length: Some(max_length), truncation: Some(strategy), ..EncodeOptions::default() }
}
