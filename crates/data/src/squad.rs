//! Extractive question answering around the model: SQuAD examples become windows
//! `[CLS] question [SEP] context-window [SEP]` with the answer's token positions, and the
//! model's start/end logits become answer texts, as HF's `run_qa.py`
//! (`prepare_train_features`, `prepare_validation_features`, `postprocess_qa_predictions`)
//! does. Deliberate differences, none of which changes a correct prediction:
//!
//! - HF's walk to the answer's first token runs past the window's last context token into
//!   `[SEP]`/padding (their offsets `(0, 0)` compare below any start), so an answer starting on
//!   a window's last token gets a wrong label there; here the search stays inside the context.
//! - An answer's text is trimmed of surrounding whitespace: a DeBERTa piece's offsets include
//!   the space before the word (`▁word`), which HF leaves in the prediction (the official
//!   metric ignores it, a reader would not).
//! - When no span is valid at all HF predicts the placeholder `"empty"`; here that is `""`.

use crate::tasks::squad::SquadExample;
use crate::tasks::{Result, TaskError};
use deberta_tokenizer::{DebertaTokenizer, EncodeOptions, Encoding, Padding, Truncation};
use rayon::prelude::*;

/// Window layout. HF's defaults: 384 tokens, windows overlapping by 128.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QaOptions {
    pub max_length: usize,
    /// Context tokens shared by consecutive windows.
    pub stride: usize,
    /// Pad every window to `max_length` (HF's `pad_to_max_length`); otherwise unpadded.
    pub pad_to_max_length: bool,
}

impl Default for QaOptions {
    fn default() -> Self {
        QaOptions { max_length: 384, stride: 128, pad_to_max_length: false }
    }
}

/// One window of one example.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QaFeature {
    /// Index of the example in the slice the features were made from.
    pub example_index: usize,
    /// `sequence_ids[i] == Some(1)` marks context tokens; their `offsets` are character ranges
    /// in the context.
    pub encoding: Encoding,
    /// Token positions of the training answer (first and last token, inclusive), both 0 (the
    /// `[CLS]` token) when the question has no answer or the answer is not inside this window.
    pub start_position: usize,
    pub end_position: usize,
}

/// The windows of every example, in example order. The question is stripped of leading
/// whitespace (some SQuAD questions have a lot, which would only waste window space) and never
/// truncated: a question too long for `max_length` is an error naming it.
pub fn qa_features(
    tokenizer: &DebertaTokenizer,
    examples: &[SquadExample],
    options: &QaOptions,
) -> Result<Vec<QaFeature>> {
    let encode = EncodeOptions {
        max_length: Some(options.max_length),
        truncation: Some(Truncation::OnlySecond),
        stride: options.stride,
        return_overflowing: true,
        padding: if options.pad_to_max_length { Padding::MaxLength } else { Padding::None },
        ..EncodeOptions::default()
    };
    let per_example = examples
        .par_iter()
        .enumerate()
        .map(|(example_index, example)| {
            let mut main =
                tokenizer
                    .encode(example.question.trim_start(), Some(&example.context), &encode)
                    .map_err(|e| TaskError::Example { id: example.id.clone(), message: e.to_string() })?;
            let overflow = std::mem::take(&mut main.overflowing);
            let answer = example.training_answer().map(|a| (a.start, a.start + a.text.chars().count()));
            Ok(std::iter::once(main)
                .chain(overflow)
                .map(|encoding| {
                    let (start_position, end_position) = answer_positions(&encoding, answer);
                    QaFeature { example_index, encoding, start_position, end_position }
                })
                .collect::<Vec<_>>())
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(per_example.into_iter().flatten().collect())
}

fn is_context(encoding: &Encoding, position: usize) -> bool {
    encoding.sequence_ids.get(position) == Some(&Some(1))
}

/// First and last token of the character range `answer` in this window, or `(0, 0)`.
fn answer_positions(encoding: &Encoding, answer: Option<(usize, usize)>) -> (usize, usize) {
    let Some((start_char, end_char)) = answer else {
        return (0, 0);
    };
    let context: Vec<usize> = (0..encoding.len()).filter(|&i| is_context(encoding, i)).collect();
    let (Some(&first), Some(&last)) = (context.first(), context.last()) else {
        return (0, 0);
    };
    let offsets = &encoding.offsets;
    if offsets[first].0 > start_char || offsets[last].1 < end_char {
        return (0, 0);
    }
    // Offsets grow along the context, so these are HF's two walks without their overrun.
    let start = context.iter().rev().find(|&&i| offsets[i].0 <= start_char).copied().unwrap_or(first);
    let end = context.iter().find(|&&i| offsets[i].1 >= end_char).copied().unwrap_or(last);
    (start, end)
}

/// Answer decoding. HF's defaults: 20 best starts x 20 best ends, answers up to 30 tokens,
/// "no answer" when the null score beats the best span by more than 0.
#[derive(Clone, Debug, PartialEq)]
pub struct AnswerOptions {
    pub n_best: usize,
    pub max_answer_length: usize,
    /// Predict "" when `null_score - best_span_score > null_threshold`.
    pub null_threshold: f64,
    /// SQuAD 2.0: unanswerable questions exist; false (SQuAD 1.1) always predicts a span.
    pub allow_no_answer: bool,
}

impl Default for AnswerOptions {
    fn default() -> Self {
        AnswerOptions { n_best: 20, max_answer_length: 30, null_threshold: 0.0, allow_no_answer: true }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct QaPrediction {
    pub id: String,
    /// The answer, "" for no answer.
    pub text: String,
    /// Character range of `text` in the context (`start == end` for no answer).
    pub start: usize,
    pub end: usize,
    /// The best span's text, also when "" is predicted (for inspecting the threshold).
    pub best_span: String,
    /// `null_score - best_span_score` (the null score: the lowest `start[0] + end[0]` over the
    /// example's windows); infinite when no span is valid. Tuning `null_threshold` on a dev
    /// set uses these.
    pub score_diff: f64,
}

/// A candidate span: score and character range in the context.
struct Span {
    score: f64,
    start: usize,
    end: usize,
}

/// One prediction per example from the logits of its features (`start_logits[i]` belongs to
/// `features[i]` and may be longer than its encoding, e.g. padded to the batch).
pub fn decode_answers<L: AsRef<[f32]>>(
    examples: &[SquadExample],
    features: &[QaFeature],
    start_logits: &[L],
    end_logits: &[L],
    options: &AnswerOptions,
) -> Result<Vec<QaPrediction>> {
    if start_logits.len() != features.len() || end_logits.len() != features.len() {
        return Err(TaskError::Invalid(format!(
            "{} features but {} start and {} end logit rows",
            features.len(),
            start_logits.len(),
            end_logits.len()
        )));
    }
    let mut by_example: Vec<Vec<usize>> = vec![Vec::new(); examples.len()];
    for (i, f) in features.iter().enumerate() {
        let slot = by_example.get_mut(f.example_index).ok_or_else(|| {
            TaskError::Invalid(format!(
                "feature {i} is of example {}, past the {} examples",
                f.example_index,
                examples.len()
            ))
        })?;
        slot.push(i);
    }
    examples
        .iter()
        .zip(&by_example)
        .map(|(example, feature_ids)| {
            let mut null_score = f64::INFINITY;
            let mut spans = Vec::new();
            for &i in feature_ids {
                let (f, starts, ends) = (&features[i], start_logits[i].as_ref(), end_logits[i].as_ref());
                if starts.len() < f.encoding.len() || ends.len() < f.encoding.len() {
                    return Err(TaskError::Example {
                        id: example.id.clone(),
                        message: format!(
                            "{} logits for a window of {} tokens",
                            starts.len().min(ends.len()),
                            f.encoding.len()
                        ),
                    });
                }
                null_score = null_score.min(starts[0] as f64 + ends[0] as f64);
                spans.extend(feature_spans(f, starts, ends, options));
            }
            Ok(choose(example, null_score, spans, options))
        })
        .collect()
}

/// Valid spans among the `n_best` best starts and ends of one window: both inside the context,
/// end not before start, at most `max_answer_length` tokens.
fn feature_spans(f: &QaFeature, starts: &[f32], ends: &[f32], options: &AnswerOptions) -> Vec<Span> {
    let len = f.encoding.len();
    let best = |logits: &[f32]| {
        let mut idx: Vec<usize> = (0..len).collect();
        idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        idx.truncate(options.n_best);
        idx
    };
    let ends_best = best(ends);
    let mut out = Vec::new();
    for s in best(starts) {
        for &e in &ends_best {
            if !is_context(&f.encoding, s)
                || !is_context(&f.encoding, e)
                || e < s
                || e - s >= options.max_answer_length
            {
                continue;
            }
            out.push(Span {
                score: starts[s] as f64 + ends[e] as f64,
                start: f.encoding.offsets[s].0,
                end: f.encoding.offsets[e].1,
            });
        }
    }
    out
}

/// The best span with some text, or no answer when the null score wins by the threshold.
fn choose(
    example: &SquadExample,
    null_score: f64,
    mut spans: Vec<Span>,
    options: &AnswerOptions,
) -> QaPrediction {
    // Stable: among equal scores the earlier window and start win, as in HF's sorted().
    spans.sort_by(|a, b| b.score.total_cmp(&a.score));
    let byte_at: Vec<usize> = example
        .context
        .char_indices()
        .map(|(b, _)| b)
        .chain(std::iter::once(example.context.len()))
        .collect();
    let chars = byte_at.len() - 1;
    let best = spans.iter().find_map(|span| {
        let (start, end) = (span.start.min(chars), span.end.min(chars));
        let raw = example.context.get(byte_at[start]..byte_at[end.max(start)])?;
        let text = raw.trim();
        let lead = raw[..raw.len() - raw.trim_start().len()].chars().count();
        (!text.is_empty()).then(|| (span.score, start + lead, start + lead + text.chars().count(), text))
    });
    let id = example.id.clone();
    match best {
        Some((score, start, end, text)) => {
            let score_diff = null_score - score;
            if options.allow_no_answer && score_diff > options.null_threshold {
                QaPrediction { id, text: String::new(), start: 0, end: 0, best_span: text.into(), score_diff }
            } else {
                QaPrediction { id, text: text.into(), start, end, best_span: text.into(), score_diff }
            }
        }
        None => QaPrediction {
            id,
            text: String::new(),
            start: 0,
            end: 0,
            best_span: String::new(),
            score_diff: f64::INFINITY,
        },
    }
}
