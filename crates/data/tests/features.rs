//! Model inputs and answer decoding with a real DeBERTa-style SentencePiece model
//! (`fixtures/tokenizer/deberta_style.model`): SQuAD windows and answer positions, span
//! decoding with the no-answer rule, first-sub-token NER labels, and text-pair encodings.

use deberta_data::metrics;
use deberta_data::squad::{decode_answers, qa_features, AnswerOptions, QaFeature, QaOptions};
use deberta_data::tasks::conll::{ner_features, read_conll, CONLL2003_LABELS, IGNORE_INDEX};
use deberta_data::tasks::glue::GlueTask;
use deberta_data::tasks::squad::{read_squad, SquadExample};
use deberta_data::tasks::swag::{encode_choices, read_swag};
use deberta_data::tasks::{encode_texts, TaskError};
use deberta_tokenizer::DebertaTokenizer;
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

fn tokenizer() -> DebertaTokenizer {
    DebertaTokenizer::from_path(fixtures().join("tokenizer/deberta_style.model")).unwrap()
}

fn squad() -> Vec<SquadExample> {
    read_squad(fixtures().join("tasks/squad/dev-v2.0.json")).unwrap()
}

/// Characters `[start, end)` of `s`.
fn chars(s: &str, start: usize, end: usize) -> String {
    s.chars().skip(start).take(end - start).collect()
}

/// Small windows so the contexts overflow into several.
const WINDOWS: QaOptions = QaOptions { max_length: 32, stride: 8, pad_to_max_length: false };

#[test]
fn squad_windows_and_answer_positions() {
    let tok = tokenizer();
    let examples = squad();
    let features = qa_features(&tok, &examples, &WINDOWS).unwrap();
    assert!(features.len() > examples.len(), "the contexts should need several windows");
    for (i, example) in examples.iter().enumerate() {
        let windows: Vec<&QaFeature> = features.iter().filter(|f| f.example_index == i).collect();
        assert!(!windows.is_empty());
        let question = tok.encode(example.question.trim_start(), None, &Default::default()).unwrap();
        let mut found = 0;
        for f in &windows {
            let e = &f.encoding;
            assert!(e.len() <= WINDOWS.max_length);
            // [CLS] question [SEP] context [SEP]
            assert_eq!(e.input_ids[..question.len()], question.input_ids[..]);
            assert_eq!(*e.input_ids.last().unwrap(), tok.sep_id());
            match example.training_answer() {
                Some(a) if (f.start_position, f.end_position) != (0, 0) => {
                    assert!(f.start_position <= f.end_position);
                    let (s, end) = (e.offsets[f.start_position].0, e.offsets[f.end_position].1);
                    assert_eq!(chars(&example.context, s, end).trim(), a.text, "{}", example.id);
                    found += 1;
                }
                _ => assert_eq!((f.start_position, f.end_position), (0, 0)),
            }
        }
        if example.training_answer().is_some() {
            assert!(found >= 1, "{}: no window holds the answer", example.id);
        }
        // Consecutive windows share `stride` context tokens.
        for pair in windows.windows(2) {
            let context = |f: &QaFeature| -> Vec<u32> {
                (0..f.encoding.len())
                    .filter(|&t| f.encoding.sequence_ids[t] == Some(1))
                    .map(|t| f.encoding.input_ids[t])
                    .collect()
            };
            let (a, b) = (context(pair[0]), context(pair[1]));
            assert_eq!(a[a.len() - WINDOWS.stride..], b[..WINDOWS.stride]);
        }
    }
    let padded =
        qa_features(&tok, &examples[..1], &QaOptions { pad_to_max_length: true, ..WINDOWS }).unwrap();
    assert!(padded.iter().all(|f| f.encoding.len() == WINDOWS.max_length));
}

#[test]
fn question_too_long_is_an_error_naming_it() {
    let mut examples = squad();
    examples.truncate(1);
    examples[0].question = "why ".repeat(100);
    let err = qa_features(&tokenizer(), &examples, &WINDOWS).unwrap_err();
    assert!(matches!(&err, TaskError::Example { id, .. } if id == "q1"), "{err}");
}

/// Logits that point at each example's training answer (in every window that holds it) and,
/// for unanswerable questions, at `[CLS]`.
fn oracle_logits(features: &[QaFeature], examples: &[SquadExample]) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let mut starts = Vec::new();
    let mut ends = Vec::new();
    for f in features {
        // Longer than the window, as a padded batch would be.
        let n = f.encoding.len() + 5;
        let (mut s, mut e) = (vec![-5.0f32; n], vec![-5.0f32; n]);
        // Context tokens a little above question tokens, so the best starts and ends (n_best)
        // include context tokens even in windows dominated by the question.
        for t in 0..f.encoding.len() {
            if f.encoding.sequence_ids[t] == Some(1) {
                s[t] = -4.0;
                e[t] = -4.0;
            }
        }
        if examples[f.example_index].training_answer().is_none() {
            s[0] = 6.0;
            e[0] = 6.0;
        } else {
            s[0] = 1.0;
            e[0] = 1.0;
            if f.start_position != 0 {
                s[f.start_position] = 8.0;
                e[f.end_position] = 8.0;
            }
        }
        starts.push(s);
        ends.push(e);
    }
    (starts, ends)
}

#[test]
fn decoding_recovers_answers_and_no_answers() {
    let tok = tokenizer();
    let examples = squad();
    let features = qa_features(&tok, &examples, &WINDOWS).unwrap();
    let (starts, ends) = oracle_logits(&features, &examples);
    let preds = decode_answers(&examples, &features, &starts, &ends, &AnswerOptions::default()).unwrap();
    for (p, e) in preds.iter().zip(&examples) {
        assert_eq!(p.id, e.id);
        match e.training_answer() {
            Some(a) => {
                assert_eq!(p.text, a.text);
                assert_eq!((p.start, p.end), (a.start, a.start + a.text.chars().count()));
                assert_eq!(p.score_diff, 2.0 - 16.0);
            }
            None => assert_eq!(p.text, ""),
        }
    }
    let golds: Vec<Vec<&str>> = examples.iter().map(|e| e.gold_texts()).collect();
    let texts: Vec<&str> = preds.iter().map(|p| p.text.as_str()).collect();
    let scores = metrics::squad_v2(&golds, &texts).unwrap();
    assert_eq!((scores.all.exact, scores.all.f1, scores.all.total), (100.0, 100.0, 6));
    assert_eq!(scores.no_ans.unwrap().total, 2);

    // A threshold above every score difference always answers; SQuAD 1.1 mode too.
    for options in [
        AnswerOptions { null_threshold: 100.0, ..Default::default() },
        AnswerOptions { allow_no_answer: false, ..Default::default() },
    ] {
        let preds = decode_answers(&examples, &features, &starts, &ends, &options).unwrap();
        assert!(preds.iter().all(|p| !p.text.is_empty() && p.text == p.best_span), "{preds:?}");
    }
}

#[test]
fn decoding_respects_span_rules() {
    let tok = tokenizer();
    let examples = squad();
    let features = qa_features(&tok, &examples[..1], &QaOptions::default()).unwrap();
    assert_eq!(features.len(), 1);
    let f = &features[0];
    let context: Vec<usize> =
        (0..f.encoding.len()).filter(|&t| f.encoding.sequence_ids[t] == Some(1)).collect();
    let (first, last) = (context[0], *context.last().unwrap());
    let mut s = vec![0.0f32; f.encoding.len()];
    let mut e = vec![0.0f32; f.encoding.len()];
    // The best start lies after the best end, and the best end is a question token: both
    // combinations are invalid, so the runner-up span wins.
    s[last] = 9.0;
    e[first] = 8.0;
    e[1] = 10.0;
    s[first] = 7.0;
    e[first + 2] = 6.0;
    let options = AnswerOptions { allow_no_answer: false, ..Default::default() };
    let p = &decode_answers(&examples[..1], &features, &[s.clone()], &[e.clone()], &options).unwrap()[0];
    assert_eq!(
        p.text,
        chars(&examples[0].context, f.encoding.offsets[first].0, f.encoding.offsets[first].1).trim()
    );
    // With max_answer_length 1 only single-token spans remain.
    let short = AnswerOptions { max_answer_length: 1, ..options };
    let p = &decode_answers(&examples[..1], &features, &[s], &[e], &short).unwrap()[0];
    assert_eq!(p.end - p.start, p.text.chars().count());
    assert!(!p.text.contains(' '));

    let err = decode_answers(&examples[..1], &features, &[vec![0.0f32; 3]], &[vec![0.0f32; 3]], &options);
    assert!(matches!(err, Err(TaskError::Example { .. })));
    let none: &[Vec<f32>] = &[];
    assert!(matches!(
        decode_answers(&examples[..1], &features, none, none, &options),
        Err(TaskError::Invalid(_))
    ));
}

#[test]
fn ner_labels_on_first_subtokens() {
    let tok = tokenizer();
    let sentences = read_conll(fixtures().join("tasks/conll/train.txt"), &CONLL2003_LABELS).unwrap();
    let features = ner_features(&tok, &sentences, 64).unwrap();
    let mut split_words = 0;
    for (s, f) in sentences.iter().zip(&features) {
        let e = &f.encoding;
        assert_eq!((e.input_ids[0], *e.input_ids.last().unwrap()), (tok.cls_id(), tok.sep_id()));
        assert_eq!(f.labels.len(), e.len());
        assert_eq!(f.word_ids.len(), e.len());
        let labelled: Vec<i64> = f.labels.iter().copied().filter(|&l| l != IGNORE_INDEX).collect();
        assert_eq!(labelled, s.tags.iter().map(|&t| t as i64).collect::<Vec<_>>());
        // Tokens of a word are contiguous, the first carries the label, and their offsets lie
        // within the word in the space-joined sentence.
        let joined = s.words.join(" ");
        for t in 1..e.len() - 1 {
            let w = f.word_ids[t].unwrap();
            let first = f.word_ids[t - 1] != Some(w);
            assert_eq!(f.labels[t] != IGNORE_INDEX, first);
            split_words += usize::from(!first);
            assert!(s.words[w].contains(chars(&joined, e.offsets[t].0, e.offsets[t].1).trim()));
        }
        let predicted = f.word_predictions(&f.labels.iter().map(|&l| l.max(0) as usize).collect::<Vec<_>>());
        assert_eq!(predicted, s.tags.iter().map(|&t| Some(t)).collect::<Vec<_>>());
    }
    assert!(split_words > 0, "some word should need several pieces");

    // Truncation keeps [CLS] ... [SEP] within max_length; cut words predict nothing.
    let short = ner_features(&tok, &sentences[1..2], 5).unwrap();
    let f = &short[0];
    assert_eq!(f.encoding.len(), 5);
    let predicted = f.word_predictions(&[0; 5]);
    assert_eq!(predicted.len(), sentences[1].words.len());
    assert!(predicted.last().unwrap().is_none());
    assert!(ner_features(&tok, &sentences, 1).is_err());
}

#[test]
fn text_pairs_and_choices() {
    let tok = tokenizer();
    let mnli = GlueTask::Mnli.read(fixtures().join("tasks/glue/MNLI/dev_matched.tsv")).unwrap();
    let encodings = encode_texts(&tok, &mnli.examples, 12).unwrap();
    assert_eq!(encodings.len(), mnli.examples.len());
    for (e, x) in encodings.iter().zip(&mnli.examples) {
        assert!(e.len() <= 12);
        let full = tok.encode(&x.text_a, x.text_b.as_deref(), &Default::default()).unwrap();
        if full.len() <= 12 {
            assert_eq!(e.input_ids, full.input_ids);
        }
        assert_eq!(e.token_type_ids.iter().filter(|&&t| t == 1).count() > 0, x.text_b.is_some());
    }
    let swag = read_swag(fixtures().join("tasks/swag/val.csv")).unwrap();
    let choices = encode_choices(&tok, &swag, 64).unwrap();
    assert_eq!(choices.len(), swag.len());
    for (c, x) in choices.iter().zip(&swag) {
        assert_eq!(c.len(), 4);
        for (e, (a, b)) in c.iter().zip(x.pairs()) {
            assert_eq!(e.input_ids, tok.encode(a, Some(&b), &Default::default()).unwrap().input_ids);
        }
    }
}
