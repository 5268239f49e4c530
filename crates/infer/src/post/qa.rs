//! Extractive QA as HF's `QuestionAnsweringPipeline` (`select_starts_ends`, `decode_spans`,
//! word-aligned character spans): per window, softmax of the start and end logits over the
//! context (and `[CLS]`), span score = p(start) x p(end), the `top_k` best spans of each
//! window pooled across windows; the no-answer scores p(start=[CLS]) x p(end=[CLS]), its lowest
//! over the windows.

use crate::types::Answer;
use deberta_tokenizer::Encoding;

pub(crate) struct QaDecode {
    pub top_k: usize,
    pub handle_impossible: bool,
    pub max_answer_len: usize,
}

/// Probabilities over the window's context tokens and `[CLS]` (others get none).
fn probabilities(logits: &[f32], desired: &[bool]) -> Vec<f64> {
    let masked: Vec<f64> =
        logits.iter().zip(desired).map(|(&x, &d)| if d { x as f64 } else { -10000.0 }).collect();
    let max = masked.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = masked.iter().map(|x| (x - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.into_iter().map(|x| x / sum).collect()
}

pub(crate) fn answers(
    context: &str,
    windows: &[Encoding],
    logits: &[(&[f32], &[f32])],
    options: &QaDecode,
) -> Vec<Answer> {
    let chars: Vec<char> = context.chars().collect();
    let mut min_null = f64::INFINITY;
    let mut answers: Vec<Answer> = Vec::new();
    for (w, &(start_logits, end_logits)) in windows.iter().zip(logits) {
        let n = w.len();
        let desired: Vec<bool> = (0..n).map(|i| i == 0 || w.sequence_ids[i] == Some(1)).collect();
        let mut start = probabilities(&start_logits[..n], &desired);
        let mut end = probabilities(&end_logits[..n], &desired);
        min_null = min_null.min(start[0] * end[0]);
        start[0] = 0.0;
        end[0] = 0.0;
        // Every span of at most max_answer_len tokens (end not before start), best first. As HF,
        // 2 top_k + 10 are kept (word alignment may merge some) before dropping spans outside
        // the context.
        let mut spans: Vec<(f64, usize, usize)> = Vec::new();
        for (s, &p_start) in start.iter().enumerate() {
            for (e, &p_end) in end.iter().enumerate().take(n.min(s + options.max_answer_len)).skip(s) {
                spans.push((p_start * p_end, s, e));
            }
        }
        spans.sort_by(|a, b| b.0.total_cmp(&a.0));
        spans.truncate(2 * options.top_k + 10);
        for (score, s, e) in spans {
            if !desired[s] || !desired[e] {
                continue;
            }
            let (a, b) = word_span(w, &chars, s, e);
            let text: String = chars[a.min(chars.len())..b.min(chars.len())].iter().collect();
            // Equal answers (ignoring case, as HF) add up: overlapping windows, or spans that
            // align to the same words.
            match answers.iter_mut().find(|x| x.answer.to_lowercase() == text.to_lowercase()) {
                Some(x) => x.score += score,
                None => answers.push(Answer { score, start: a, end: b, answer: text }),
            }
        }
    }
    if options.handle_impossible {
        answers.push(Answer { score: min_null, start: 0, end: 0, answer: String::new() });
    }
    answers.sort_by(|a, b| b.score.total_cmp(&a.score));
    answers.truncate(options.top_k);
    answers
}

/// Character range of the words of tokens `s..=e` (HF's `align_to_words`): a word starts at a
/// context token whose first character is whitespace (SentencePiece's `▁` covers the space
/// before a word) or at the window's first context token.
fn word_span(w: &Encoding, chars: &[char], s: usize, e: usize) -> (usize, usize) {
    let is_context = |i: usize| w.sequence_ids.get(i) == Some(&Some(1));
    if !is_context(s) || !is_context(e) {
        return (w.offsets[s].0, w.offsets[e].1);
    }
    let starts_word = |i: usize| {
        !is_context(i.wrapping_sub(1))
            || i == 0
            || chars.get(w.offsets[i].0).is_some_and(|c| c.is_whitespace())
    };
    let mut first = s;
    while !starts_word(first) {
        first -= 1;
    }
    let mut last = e;
    while is_context(last + 1) && !starts_word(last + 1) {
        last += 1;
    }
    (w.offsets[first].0, w.offsets[last].1)
}
