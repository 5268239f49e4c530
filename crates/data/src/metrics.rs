//! Evaluation metrics computed as the official scripts compute them, so reported numbers are
//! comparable with published ones: scikit-learn's accuracy, F1 and Matthews correlation
//! (GLUE), scipy's Pearson and Spearman correlations (STS-B), the official SQuAD 2.0
//! `evaluate-v2.0.py` (exact match and token F1 after `normalize_answer`), and seqeval's default
//! entity-level precision/recall/F1 (CoNLL-2003, conlleval semantics).
//!
//! `scripts/make_metric_fixtures.py` runs those libraries on seeded random inputs (ties,
//! single-class and empty cases included) and `tests/metrics.rs` compares to 1e-9.
//!
//! Undefined values follow the libraries: a precision, recall or F1 with a zero denominator is 0
//! (sklearn's and seqeval's `zero_division="warn"`), Matthews correlation is 0 when either
//! side has a single class, and a correlation with a constant input is NaN (scipy).

use crate::tasks::Label;
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetricError {
    #[error("{predictions} predictions for {references} references")]
    Length { predictions: usize, references: usize },
    #[error("nothing to score")]
    Empty,
    #[error("{metric} needs {expected} labels")]
    LabelKind { metric: &'static str, expected: &'static str },
}

pub type Result<T> = std::result::Result<T, MetricError>;

/// A sentence(-pair) task metric, named as HF's `evaluate` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Metric {
    Accuracy,
    /// Binary F1 of class 1.
    F1,
    /// Unweighted mean of the per-class F1 scores.
    MacroF1,
    Matthews,
    Pearson,
    Spearman,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::F1 => "f1",
            Metric::MacroF1 => "macro_f1",
            Metric::Matthews => "matthews_correlation",
            Metric::Pearson => "pearson",
            Metric::Spearman => "spearmanr",
        }
    }

    /// The usual metrics for a label space: correlations for regression (`num_classes == 0`),
    /// accuracy and F1 for two classes, accuracy and macro F1 otherwise.
    pub fn defaults(num_classes: usize) -> &'static [Metric] {
        match num_classes {
            0 => &[Metric::Pearson, Metric::Spearman],
            2 => &[Metric::Accuracy, Metric::F1],
            _ => &[Metric::Accuracy, Metric::MacroF1],
        }
    }
}

/// `metrics` of `predictions` against `references`, as `(name, value)` in the order asked.
/// Classification metrics need [`Label::Class`] on both sides, correlations [`Label::Score`].
pub fn evaluate(
    metrics: &[Metric],
    predictions: &[Label],
    references: &[Label],
) -> Result<Vec<(&'static str, f64)>> {
    same_length(predictions, references)?;
    let class_pair =
        |metric| Ok::<_, MetricError>((classes(metric, predictions)?, classes(metric, references)?));
    let score_pair =
        |metric| Ok::<_, MetricError>((scores(metric, predictions)?, scores(metric, references)?));
    metrics
        .iter()
        .map(|&metric| {
            let value = match metric {
                Metric::Accuracy => class_pair(metric).and_then(|(p, r)| accuracy(&p, &r)),
                Metric::F1 => class_pair(metric).and_then(|(p, r)| binary_f1(&p, &r)),
                Metric::MacroF1 => class_pair(metric).and_then(|(p, r)| macro_f1(&p, &r)),
                Metric::Matthews => class_pair(metric).and_then(|(p, r)| matthews_corrcoef(&p, &r)),
                Metric::Pearson => score_pair(metric).and_then(|(p, r)| pearson(&p, &r)),
                Metric::Spearman => score_pair(metric).and_then(|(p, r)| spearman(&p, &r)),
            }?;
            Ok((metric.name(), value))
        })
        .collect()
}

fn classes(metric: Metric, labels: &[Label]) -> Result<Vec<usize>> {
    labels
        .iter()
        .map(|l| match l {
            Label::Class(c) => Ok(*c),
            Label::Score(_) => Err(MetricError::LabelKind { metric: metric.name(), expected: "class" }),
        })
        .collect()
}

fn scores(metric: Metric, labels: &[Label]) -> Result<Vec<f64>> {
    labels
        .iter()
        .map(|l| match l {
            Label::Score(s) => Ok(*s),
            Label::Class(_) => Err(MetricError::LabelKind { metric: metric.name(), expected: "score" }),
        })
        .collect()
}

fn same_length<A, B>(predictions: &[A], references: &[B]) -> Result<()> {
    if predictions.len() != references.len() {
        return Err(MetricError::Length { predictions: predictions.len(), references: references.len() });
    }
    if predictions.is_empty() {
        return Err(MetricError::Empty);
    }
    Ok(())
}

/// `a / b`, or 0 when `b` is 0 (sklearn's and seqeval's default for undefined ratios).
fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        a / b
    }
}

pub fn accuracy<T: PartialEq>(predictions: &[T], references: &[T]) -> Result<f64> {
    same_length(predictions, references)?;
    let correct = predictions.iter().zip(references).filter(|(p, r)| p == r).count();
    Ok(correct as f64 / predictions.len() as f64)
}

/// Per class: (true positives, predicted count, reference count).
fn class_counts(predictions: &[usize], references: &[usize]) -> BTreeMap<usize, (usize, usize, usize)> {
    let mut counts: BTreeMap<usize, (usize, usize, usize)> = BTreeMap::new();
    for (&p, &r) in predictions.iter().zip(references) {
        counts.entry(p).or_default().1 += 1;
        let c = counts.entry(r).or_default();
        c.2 += 1;
        if p == r {
            c.0 += 1;
        }
    }
    counts
}

/// sklearn's F-score from counts: `2 tp / (reference + predicted)`.
fn f1_from_counts((tp, predicted, reference): (usize, usize, usize)) -> f64 {
    ratio(2.0 * tp as f64, (reference + predicted) as f64)
}

/// `f1_score(references, predictions)`: F1 of class 1 (every other class is negative).
pub fn binary_f1(predictions: &[usize], references: &[usize]) -> Result<f64> {
    same_length(predictions, references)?;
    let positive = |x: &usize| usize::from(*x == 1);
    let p: Vec<usize> = predictions.iter().map(positive).collect();
    let r: Vec<usize> = references.iter().map(positive).collect();
    Ok(f1_from_counts(class_counts(&p, &r).get(&1).copied().unwrap_or_default()))
}

/// `f1_score(references, predictions, average="macro")`: over the classes that occur on either
/// side.
pub fn macro_f1(predictions: &[usize], references: &[usize]) -> Result<f64> {
    same_length(predictions, references)?;
    let counts = class_counts(predictions, references);
    Ok(counts.values().map(|&c| f1_from_counts(c)).sum::<f64>() / counts.len() as f64)
}

/// `matthews_corrcoef(references, predictions)`, the multiclass form (for two classes it is
/// the usual `(tp tn - fp fn) / sqrt(...)`), 0 when a side has one class only.
pub fn matthews_corrcoef(predictions: &[usize], references: &[usize]) -> Result<f64> {
    same_length(predictions, references)?;
    let counts = class_counts(predictions, references);
    let n = predictions.len() as f64;
    let correct = counts.values().map(|c| c.0 as f64).sum::<f64>();
    let dot = |f: fn(&(usize, usize, usize)) -> f64| counts.values().map(f).sum::<f64>();
    let cov_ytyp = correct * n - dot(|c| c.2 as f64 * c.1 as f64);
    let cov_ypyp = n * n - dot(|c| (c.1 as f64).powi(2));
    let cov_ytyt = n * n - dot(|c| (c.2 as f64).powi(2));
    if cov_ypyp * cov_ytyt == 0.0 {
        return Ok(0.0);
    }
    Ok(cov_ytyp / (cov_ytyt * cov_ypyp).sqrt())
}

/// `scipy.stats.pearsonr(x, y).statistic`; NaN when either side is constant.
pub fn pearson(x: &[f64], y: &[f64]) -> Result<f64> {
    same_length(x, y)?;
    let centered = |v: &[f64]| {
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        v.iter().map(|a| a - mean).collect::<Vec<f64>>()
    };
    let (xm, ym) = (centered(x), centered(y));
    let norm = |v: &[f64]| v.iter().map(|a| a * a).sum::<f64>().sqrt();
    let (nx, ny) = (norm(&xm), norm(&ym));
    if nx == 0.0 || ny == 0.0 {
        return Ok(f64::NAN);
    }
    let r = xm.iter().zip(&ym).map(|(a, b)| (a / nx) * (b / ny)).sum::<f64>();
    Ok(r.clamp(-1.0, 1.0))
}

/// `scipy.stats.spearmanr(x, y).statistic`: Pearson on ranks, ties sharing their average rank.
pub fn spearman(x: &[f64], y: &[f64]) -> Result<f64> {
    same_length(x, y)?;
    pearson(&average_ranks(x), &average_ranks(y))
}

/// `sklearn.metrics.roc_auc_score(labels, scores)` for binary labels: the probability that a
/// random positive scores above a random negative, ties counting half (the Mann-Whitney form).
/// NaN when either class is absent (scikit-learn raises there).
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Result<f64> {
    same_length(scores, labels)?;
    let positives = labels.iter().filter(|&&l| l).count() as f64;
    let negatives = labels.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return Ok(f64::NAN);
    }
    let ranks = average_ranks(scores);
    let rank_sum: f64 = ranks.iter().zip(labels).filter(|(_, &l)| l).map(|(r, _)| r).sum();
    Ok((rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives))
}

/// `scipy.stats.rankdata(v)`: 1-based ranks, tied values get the mean of their ranks.
pub fn average_ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut ranks = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        // Positions i..=j hold ranks i+1..=j+1.
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = rank;
        }
        i = j + 1;
    }
    ranks
}

/// The official SQuAD `normalize_answer`: lowercase, drop ASCII punctuation, replace the words
/// a/an/the by a space, collapse whitespace.
pub fn normalize_answer(s: &str) -> String {
    let lowered = s.to_lowercase();
    let no_punct: String = lowered.chars().filter(|c| !c.is_ascii_punctuation()).collect();
    // `re.sub(r'\b(a|an|the)\b', ' ', text)`: with word boundaries on both sides the match is
    // always a whole run of word characters, so replacing whole runs is the same thing.
    let mut no_articles = String::with_capacity(no_punct.len());
    let mut rest = no_punct.as_str();
    while let Some(start) = rest.find(is_word_char) {
        no_articles.push_str(&rest[..start]);
        let word = &rest[start..];
        let len = word.find(|c: char| !is_word_char(c)).unwrap_or(word.len());
        let run = &word[..len];
        no_articles.push_str(if matches!(run, "a" | "an" | "the") { " " } else { run });
        rest = &word[len..];
    }
    no_articles.push_str(rest);
    no_articles.split(is_python_whitespace).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ")
}

/// Python's `\w` on `str`: letters, numbers and `_`.
fn is_word_char(c: char) -> bool {
    use unicode_categories::UnicodeCategories;
    c == '_' || c.is_letter() || c.is_number()
}

/// What Python's `str.split()` splits on: Unicode whitespace plus the ASCII separators
/// U+001C..U+001F, which Rust does not count as whitespace.
fn is_python_whitespace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

fn answer_tokens(s: &str) -> Vec<String> {
    normalize_answer(s).split(' ').filter(|w| !w.is_empty()).map(str::to_string).collect()
}

/// `compute_exact`: 1 if the normalised answers are equal.
pub fn squad_exact(gold: &str, prediction: &str) -> f64 {
    f64::from(u8::from(normalize_answer(gold) == normalize_answer(prediction)))
}

/// `compute_f1`: token-overlap F1 of the normalised answers (1 if both are empty, 0 if one is).
pub fn squad_f1(gold: &str, prediction: &str) -> f64 {
    let (gold, pred) = (answer_tokens(gold), answer_tokens(prediction));
    if gold.is_empty() || pred.is_empty() {
        return f64::from(u8::from(gold == pred));
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for t in &gold {
        *counts.entry(t).or_default() += 1;
    }
    let mut same = 0usize;
    for t in &pred {
        if let Some(c) = counts.get_mut(t.as_str()).filter(|c| **c > 0) {
            *c -= 1;
            same += 1;
        }
    }
    if same == 0 {
        return 0.0;
    }
    let precision = same as f64 / pred.len() as f64;
    let recall = same as f64 / gold.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

/// Exact match and F1 in percent over a set of questions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SquadSplit {
    pub exact: f64,
    pub f1: f64,
    pub total: usize,
}

/// What `evaluate-v2.0.py` prints: totals, and the `HasAns_`/`NoAns_` splits when the data
/// has such questions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SquadScores {
    pub all: SquadSplit,
    pub has_ans: Option<SquadSplit>,
    pub no_ans: Option<SquadSplit>,
}

impl SquadScores {
    /// The script's keys and values (`exact`, `f1`, `total`, `HasAns_exact`, ...).
    pub fn to_map(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (prefix, split) in [("", Some(self.all)), ("HasAns_", self.has_ans), ("NoAns_", self.no_ans)] {
            if let Some(s) = split {
                out.insert(format!("{prefix}exact"), s.exact);
                out.insert(format!("{prefix}f1"), s.f1);
                out.insert(format!("{prefix}total"), s.total as f64);
            }
        }
        out
    }
}

/// SQuAD 2.0 scores of `predictions[i]` against the gold answer texts `golds[i]` (an empty list:
/// unanswerable, where only "" scores). Each question scores its best match over its answers;
/// answers that normalise to nothing count as "", as in the official script.
pub fn squad_v2<G: AsRef<str>, P: AsRef<str>>(golds: &[Vec<G>], predictions: &[P]) -> Result<SquadScores> {
    same_length(predictions, golds)?;
    let mut per_question = Vec::with_capacity(golds.len());
    for (answers, prediction) in golds.iter().zip(predictions) {
        let prediction = prediction.as_ref();
        let mut gold: Vec<&str> =
            answers.iter().map(AsRef::as_ref).filter(|a| !normalize_answer(a).is_empty()).collect();
        if gold.is_empty() {
            gold.push("");
        }
        let best =
            |score: fn(&str, &str) -> f64| gold.iter().map(|g| score(g, prediction)).fold(0.0, f64::max);
        per_question.push((!answers.is_empty(), best(squad_exact), best(squad_f1)));
    }
    let split = |keep: &dyn Fn(bool) -> bool| {
        let chosen: Vec<_> = per_question.iter().filter(|q| keep(q.0)).collect();
        let total = chosen.len();
        (total > 0).then(|| SquadSplit {
            exact: 100.0 * chosen.iter().map(|q| q.1).sum::<f64>() / total as f64,
            f1: 100.0 * chosen.iter().map(|q| q.2).sum::<f64>() / total as f64,
            total,
        })
    };
    Ok(SquadScores {
        all: split(&|_| true).ok_or(MetricError::Empty)?,
        has_ans: split(&|has| has),
        no_ans: split(&|has| !has),
    })
}

/// An entity: type and inclusive token range, as seqeval's `get_entities` returns it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Entity {
    pub kind: String,
    pub start: usize,
    pub end: usize,
}

/// seqeval's `get_entities` (default, non-strict mode): the prefix is the tag's first
/// character (`B`, `I`, `E`, `S`, `O`), the type what follows the first `-`. An entity starts at
/// `B`/`S`, at an `I`/`E` after `O` or `E`/`S`, and at any change of type; it ends before the
/// next `B`/`S`/`O`, after `E`/`S`, and at a change of type. So `I-PER I-PER` is one entity
/// (IOB1) and `B-PER I-LOC` two. An empty tag reads as `O`.
pub fn entities<S: AsRef<str>>(tags: &[S]) -> Vec<Entity> {
    let mut out = Vec::new();
    let (mut prev_tag, mut prev_type) = ('O', String::new());
    let mut begin = 0;
    for (i, chunk) in tags.iter().map(AsRef::as_ref).chain(std::iter::once("O")).enumerate() {
        let mut chars = chunk.chars();
        let tag = chars.next().unwrap_or('O');
        let rest = chars.as_str();
        let kind = rest.split_once('-').map_or(rest, |(_, t)| t);
        let kind = if kind.is_empty() { "_" } else { kind };
        if chunk_ends(prev_tag, tag, &prev_type, kind) {
            out.push(Entity { kind: prev_type.clone(), start: begin, end: i - 1 });
        }
        if chunk_starts(prev_tag, tag, &prev_type, kind) {
            begin = i;
        }
        prev_tag = tag;
        prev_type = kind.to_string();
    }
    out
}

/// seqeval's `end_of_chunk`.
fn chunk_ends(prev_tag: char, tag: char, prev_type: &str, kind: &str) -> bool {
    matches!(prev_tag, 'E' | 'S')
        || (matches!(prev_tag, 'B' | 'I') && matches!(tag, 'B' | 'S' | 'O'))
        || (prev_tag != 'O' && prev_tag != '.' && prev_type != kind)
}

/// seqeval's `start_of_chunk`.
fn chunk_starts(prev_tag: char, tag: char, prev_type: &str, kind: &str) -> bool {
    matches!(tag, 'B' | 'S')
        || (matches!(prev_tag, 'E' | 'S' | 'O') && matches!(tag, 'E' | 'I'))
        || (tag != 'O' && tag != '.' && prev_type != kind)
}

/// Entity counts of one type (or all).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EntityCounts {
    /// Predicted entities that are gold entities (same type and span).
    pub correct: usize,
    pub predicted: usize,
    pub gold: usize,
}

impl EntityCounts {
    pub fn precision(&self) -> f64 {
        ratio(self.correct as f64, self.predicted as f64)
    }
    pub fn recall(&self) -> f64 {
        ratio(self.correct as f64, self.gold as f64)
    }
    /// seqeval's `2 p r / (p + r)` (0 when both are 0).
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        ratio(2.0 * p * r, p + r)
    }
}

/// seqeval's report: micro-averaged (`overall_*` in HF's `run_ner`) and per entity type.
#[derive(Clone, Debug, PartialEq)]
pub struct EntityScores {
    pub overall: EntityCounts,
    pub per_type: BTreeMap<String, EntityCounts>,
    /// Token-level accuracy (seqeval's `accuracy_score`).
    pub accuracy: f64,
}

/// Entity-level scores of tag sequences, one per sentence; entities never cross sentences.
pub fn entity_scores<S: AsRef<str>, T: AsRef<str>>(
    gold: &[Vec<S>],
    predicted: &[Vec<T>],
) -> Result<EntityScores> {
    same_length(predicted, gold)?;
    for (g, p) in gold.iter().zip(predicted) {
        if g.len() != p.len() {
            return Err(MetricError::Length { predictions: p.len(), references: g.len() });
        }
    }
    // seqeval's flattening: the sentences joined with an `O` after each.
    fn flat<S: AsRef<str>>(sentences: &[Vec<S>]) -> Vec<&str> {
        sentences.iter().flat_map(|s| s.iter().map(AsRef::as_ref).chain(std::iter::once("O"))).collect()
    }
    let (gold_flat, pred_flat) = (flat(gold), flat(predicted));
    let tokens = gold_flat.len() - gold.len();
    if tokens == 0 {
        return Err(MetricError::Empty);
    }
    let correct_tokens = gold_flat.iter().zip(&pred_flat).filter(|(g, p)| g == p).count() - gold.len();
    let gold_entities = entities(&gold_flat);
    let gold_set: std::collections::HashSet<&Entity> = gold_entities.iter().collect();
    let mut per_type: BTreeMap<String, EntityCounts> = BTreeMap::new();
    for e in &gold_entities {
        per_type.entry(e.kind.clone()).or_default().gold += 1;
    }
    for e in &entities(&pred_flat) {
        let c = per_type.entry(e.kind.clone()).or_default();
        c.predicted += 1;
        c.correct += usize::from(gold_set.contains(e));
    }
    let overall = per_type.values().fold(EntityCounts::default(), |a, c| EntityCounts {
        correct: a.correct + c.correct,
        predicted: a.predicted + c.predicted,
        gold: a.gold + c.gold,
    });
    Ok(EntityScores { overall, per_type, accuracy: correct_tokens as f64 / tokens as f64 })
}
