//! Token classification as HF's `TokenClassificationPipeline` (`gather_pre_entities`,
//! `aggregate`, `group_entities`): softmax per token, `O` results dropped.

use crate::preprocess::Preprocessor;
use crate::types::{Aggregation, Entity};
use deberta_tokenizer::Encoding;
use deberta_train::finetune::task::{argmax, softmax};

/// One non-special token before aggregation.
struct PreEntity {
    word: String,
    scores: Vec<f64>,
    start: usize,
    end: usize,
    index: usize,
    is_subword: bool,
}

/// A labelled token or word.
struct Labelled {
    entity: String,
    score: f64,
    index: usize,
    word: String,
    start: usize,
    end: usize,
}

pub(crate) fn entities(
    pre: &Preprocessor,
    text: &str,
    encoding: &Encoding,
    rows: &[Vec<f32>],
    aggregation: Aggregation,
) -> Vec<Entity> {
    let tok = pre.tokenizer();
    let chars: Vec<char> = text.chars().collect();
    let slice = |a: usize, b: usize| chars[a.min(chars.len())..b.min(chars.len())].iter().collect::<String>();
    let label = |i: usize| pre.labels().get(i).cloned().unwrap_or_else(|| format!("LABEL_{i}"));
    let mut pre_entities = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        if encoding.sequence_ids.get(index).copied().flatten().is_none() {
            continue;
        }
        let id = encoding.input_ids[index];
        let (start, end) = encoding.offsets[index];
        // HF's fallback for tokenizers without a continuing-subword prefix (SentencePiece): a
        // token continues a word unless a space is just before or at its start.
        let mut is_subword = start > 0 && !slice(start - 1, start + 1).contains(' ');
        let mut word = tok.id_to_token(id).unwrap_or_default();
        if id == tok.unk_id() {
            word = slice(start, end);
            is_subword = false;
        }
        pre_entities.push(PreEntity { word, scores: softmax(row), start, end, index, is_subword });
    }
    let labelled: Vec<Labelled> = match aggregation {
        Aggregation::None | Aggregation::Simple => pre_entities
            .into_iter()
            .map(|p| {
                let c = argmax(&p.scores);
                Labelled {
                    entity: label(c),
                    score: p.scores[c],
                    index: p.index,
                    word: p.word,
                    start: p.start,
                    end: p.end,
                }
            })
            .collect(),
        Aggregation::First => {
            let mut words: Vec<Vec<PreEntity>> = Vec::new();
            for p in pre_entities {
                match words.last_mut() {
                    Some(w) if p.is_subword => w.push(p),
                    _ => words.push(vec![p]),
                }
            }
            words
                .into_iter()
                .map(|w| {
                    let c = argmax(&w[0].scores);
                    let pieces: Vec<&str> = w.iter().map(|p| p.word.as_str()).collect();
                    Labelled {
                        entity: label(c),
                        score: w[0].scores[c],
                        index: w[0].index,
                        word: tokens_to_string(&pieces),
                        start: w[0].start,
                        end: w[w.len() - 1].end,
                    }
                })
                .collect()
        }
    };
    let out: Vec<Entity> = if aggregation == Aggregation::None {
        labelled
            .into_iter()
            .map(|l| Entity {
                entity: Some(l.entity),
                entity_group: None,
                score: l.score,
                index: Some(l.index),
                word: l.word,
                start: l.start,
                end: l.end,
            })
            .collect()
    } else {
        group(labelled)
    };
    out.into_iter().filter(|e| e.entity.as_deref().or(e.entity_group.as_deref()) != Some("O")).collect()
}

/// `B-`/`I-` prefix and type; a label without a prefix counts as `I-`.
fn tag(name: &str) -> (bool, &str) {
    if let Some(t) = name.strip_prefix("B-") {
        (true, t)
    } else if let Some(t) = name.strip_prefix("I-") {
        (false, t)
    } else {
        (false, name)
    }
}

/// Adjacent entities of one type, each `B-` starting a new group (HF's `group_entities`).
fn group(entities: Vec<Labelled>) -> Vec<Entity> {
    let mut groups: Vec<Vec<Labelled>> = Vec::new();
    for e in entities {
        let joins = groups.last().is_some_and(|g| {
            let (b, t) = tag(&e.entity);
            let (_, last) = tag(&g[g.len() - 1].entity);
            t == last && !b
        });
        match groups.last_mut() {
            Some(g) if joins => g.push(e),
            _ => groups.push(vec![e]),
        }
    }
    groups
        .into_iter()
        .map(|g| {
            let name = g[0].entity.split_once('-').map_or(g[0].entity.as_str(), |(_, t)| t).to_string();
            let pieces: Vec<&str> = g.iter().map(|e| e.word.as_str()).collect();
            Entity {
                entity: None,
                entity_group: Some(name),
                score: g.iter().map(|e| e.score).sum::<f64>() / g.len() as f64,
                index: None,
                word: tokens_to_string(&pieces),
                start: g[0].start,
                end: g[g.len() - 1].end,
            }
        })
        .collect()
}

/// HF's `convert_tokens_to_string` through DeBERTa-v3's Metaspace decoder: `▁` becomes a space,
/// and the first token loses its leading one.
fn tokens_to_string(pieces: &[&str]) -> String {
    let mut out = String::new();
    for (i, p) in pieces.iter().enumerate() {
        let s = p.replace('\u{2581}', " ");
        match s.strip_prefix(' ') {
            Some(rest) if i == 0 => out.push_str(rest),
            _ => out.push_str(&s),
        }
    }
    out
}
