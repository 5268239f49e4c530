//! CoNLL-2003 named entities: one `word POS chunk tag` line per word, a blank line between
//! sentences, `-DOCSTART-` lines between documents. The word is the first field and the tag the
//! last, so two-column files (`word tag`, e.g. WikiANN) read too. The released English files
//! use IOB1 (`I-` starts an entity unless it continues one of the same type); the entity metric
//! ([`crate::metrics::entity_scores`]) handles both IOB1 and BIO, as seqeval does.
//!
//! Model inputs label each word on its first sub-token and give the other sub-tokens
//! [`IGNORE_INDEX`], as HF's `run_ner` does with `label_all_tokens = False`.

use super::{io_error, Result, TaskError};
use deberta_tokenizer::{DebertaTokenizer, Encoding};
use rayon::prelude::*;
use std::io::BufRead;
use std::path::Path;

/// HF's `conll2003` label order.
pub const CONLL2003_LABELS: [&str; 9] =
    ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"];

/// The label of sub-tokens that carry none (special tokens, non-first sub-tokens): the default
/// `ignore_index` of cross-entropy.
pub const IGNORE_INDEX: i64 = -100;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NerSentence {
    pub words: Vec<String>,
    /// Index into the label list per word.
    pub tags: Vec<usize>,
}

/// Reads a CoNLL file whose tags are all in `labels` (an unknown tag is an error naming its
/// line, so a train/dev label mismatch is caught before training).
pub fn read_conll(path: impl AsRef<Path>, labels: &[&str]) -> Result<Vec<NerSentence>> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(io_error(path))?;
    let mut sentences = Vec::new();
    let mut current = NerSentence::default();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let row_error =
            |message: String| TaskError::Row { path: path.to_path_buf(), line: i as u64 + 1, message };
        let line = line.map_err(|e| row_error(e.to_string()))?;
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() || fields[0] == "-DOCSTART-" {
            if !current.words.is_empty() {
                sentences.push(std::mem::take(&mut current));
            }
            continue;
        }
        let [word, .., tag] = fields[..] else {
            return Err(row_error(format!("expected a word and a tag, found {line:?}")));
        };
        let id = labels
            .iter()
            .position(|l| *l == tag)
            .ok_or_else(|| row_error(format!("unknown tag {tag:?} (expected one of {labels:?})")))?;
        current.words.push(word.to_string());
        current.tags.push(id);
    }
    if !current.words.is_empty() {
        sentences.push(current);
    }
    if sentences.is_empty() {
        return Err(TaskError::Empty { path: path.to_path_buf() });
    }
    Ok(sentences)
}

/// One sentence as model input.
#[derive(Clone, Debug, PartialEq)]
pub struct NerFeature {
    /// `[CLS] sub-tokens [SEP]`; offsets are into the words joined by single spaces.
    pub encoding: Encoding,
    /// The word's tag id on its first sub-token, [`IGNORE_INDEX`] elsewhere.
    pub labels: Vec<i64>,
    /// The word each token belongs to (`None` for `[CLS]`/`[SEP]`).
    pub word_ids: Vec<Option<usize>>,
    pub num_words: usize,
}

impl NerFeature {
    /// Word-level predictions from per-token ones, read at each word's first sub-token (the
    /// position trained on). `None` for words cut off by `max_length` or with no tokens at all
    /// (text the normaliser removes); an evaluator decides what those count as.
    pub fn word_predictions(&self, token_predictions: &[usize]) -> Vec<Option<usize>> {
        let mut out = vec![None; self.num_words];
        for (position, &label) in self.labels.iter().enumerate() {
            if label == IGNORE_INDEX {
                continue;
            }
            let word = self.word_ids.get(position).copied().flatten();
            if let (Some(slot), Some(&p)) =
                (word.and_then(|w| out.get_mut(w)), token_predictions.get(position))
            {
                *slot = Some(p);
            }
        }
        out
    }
}

/// Model inputs for `sentences`, each cut to `max_length` tokens (at least 2, for `[CLS]` and
/// `[SEP]`). Each word is tokenized on its own, as HF's `is_split_into_words` does, so a
/// sub-token never spans two words.
pub fn ner_features(
    tokenizer: &DebertaTokenizer,
    sentences: &[NerSentence],
    max_length: usize,
) -> Result<Vec<NerFeature>> {
    let budget = max_length.checked_sub(2).ok_or_else(|| {
        TaskError::Invalid(format!("max_length {max_length} leaves no room for [CLS] and [SEP]"))
    })?;
    Ok(sentences.par_iter().map(|s| sentence_feature(tokenizer, s, budget)).collect())
}

fn sentence_feature(tokenizer: &DebertaTokenizer, sentence: &NerSentence, budget: usize) -> NerFeature {
    let mut f = NerFeature {
        encoding: Encoding::default(),
        labels: Vec::new(),
        word_ids: Vec::new(),
        num_words: sentence.words.len(),
    };
    let push = |f: &mut NerFeature, id: u32, offsets: (usize, usize), word: Option<usize>, label: i64| {
        f.encoding.input_ids.push(id);
        f.encoding.token_type_ids.push(0);
        f.encoding.attention_mask.push(1);
        f.encoding.offsets.push(offsets);
        f.encoding.sequence_ids.push(word.map(|_| 0));
        f.word_ids.push(word);
        f.labels.push(label);
    };
    push(&mut f, tokenizer.cls_id(), (0, 0), None, IGNORE_INDEX);
    let mut word_start = 0;
    'words: for (w, (word, &tag)) in sentence.words.iter().zip(&sentence.tags).enumerate() {
        for (k, token) in tokenizer.tokenize(word).into_iter().enumerate() {
            if f.word_ids.len() > budget {
                break 'words;
            }
            let label = if k == 0 { tag as i64 } else { IGNORE_INDEX };
            push(&mut f, token.id, (word_start + token.start, word_start + token.end), Some(w), label);
        }
        word_start += word.chars().count() + 1;
    }
    push(&mut f, tokenizer.sep_id(), (0, 0), None, IGNORE_INDEX);
    f
}
