//! Metrics against scikit-learn, scipy, seqeval and the official SQuAD 2.0 script
//! (`scripts/make_metric_fixtures.py` wrote the expected values): floats to 1e-9, counts exact.

use deberta_data::metrics::{self, Metric, MetricError};
use deberta_data::tasks::Label;
use serde_json::Value;
use std::path::PathBuf;

const TOL: f64 = 1e-9;

fn fixture(name: &str) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/metrics").join(name);
    let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    match &v["data"] {
        Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    }
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect()
}

/// `expected` null means NaN (JSON has no NaN).
fn close(name: &str, what: &str, got: f64, expected: &Value) {
    match expected.as_f64() {
        None => assert!(got.is_nan(), "{name} {what}: expected NaN, got {got}"),
        Some(e) => assert!((got - e).abs() <= TOL, "{name} {what}: got {got}, expected {e}"),
    }
}

#[test]
fn classification_matches_sklearn() {
    for case in fixture("classification.json") {
        let name = case["name"].as_str().unwrap();
        let (p, r) = (usizes(&case["predictions"]), usizes(&case["references"]));
        close(name, "accuracy", metrics::accuracy(&p, &r).unwrap(), &case["accuracy"]);
        close(name, "macro_f1", metrics::macro_f1(&p, &r).unwrap(), &case["macro_f1"]);
        close(name, "matthews", metrics::matthews_corrcoef(&p, &r).unwrap(), &case["matthews"]);
        if !case["f1"].is_null() {
            close(name, "f1", metrics::binary_f1(&p, &r).unwrap(), &case["f1"]);
        }
    }
}

#[test]
fn correlations_match_scipy() {
    for case in fixture("correlation.json") {
        let name = case["name"].as_str().unwrap();
        let (x, y) = (floats(&case["x"]), floats(&case["y"]));
        close(name, "pearson", metrics::pearson(&x, &y).unwrap(), &case["pearson"]);
        close(name, "spearman", metrics::spearman(&x, &y).unwrap(), &case["spearman"]);
    }
}

#[test]
fn average_ranks_share_ties() {
    assert_eq!(metrics::average_ranks(&[3.0, 1.0, 3.0, 2.0, 3.0]), vec![4.0, 1.0, 4.0, 2.0, 4.0]);
}

#[test]
fn evaluate_dispatches_by_label_kind() {
    let classes = |v: &[usize]| v.iter().map(|&c| Label::Class(c)).collect::<Vec<_>>();
    let got =
        metrics::evaluate(&[Metric::Accuracy, Metric::F1], &classes(&[1, 0, 1, 1]), &classes(&[1, 0, 0, 1]))
            .unwrap();
    assert_eq!(got[0], ("accuracy", 0.75));
    assert_eq!(got[1].0, "f1");
    assert!((got[1].1 - 0.8).abs() < TOL);
    let scores = [Label::Score(1.0), Label::Score(2.0)];
    assert_eq!(
        metrics::evaluate(&[Metric::Accuracy], &scores, &scores),
        Err(MetricError::LabelKind { metric: "accuracy", expected: "class" })
    );
    let got = metrics::evaluate(&[Metric::Pearson], &scores, &scores).unwrap();
    assert!(got[0].0 == "pearson" && (got[0].1 - 1.0).abs() < TOL);
    assert_eq!(metrics::accuracy(&[1, 2], &[1]), Err(MetricError::Length { predictions: 2, references: 1 }));
    assert_eq!(metrics::accuracy::<usize>(&[], &[]), Err(MetricError::Empty));
}

#[test]
fn squad_normalize_answer_matches_official() {
    let data = fixture("squad_v2.json");
    for pair in data[0]["normalize"].as_array().unwrap() {
        let (input, expected) = (pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
        assert_eq!(metrics::normalize_answer(input), expected, "normalize_answer({input:?})");
    }
}

#[test]
fn squad_v2_matches_official_script() {
    let data = fixture("squad_v2.json");
    for case in data[0]["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let golds: Vec<Vec<String>> = case["golds"].as_array().unwrap().iter().map(strings).collect();
        let preds = strings(&case["predictions"]);
        for (i, (g, p)) in golds.iter().zip(&preds).enumerate() {
            let mut gold: Vec<&str> =
                g.iter().map(String::as_str).filter(|a| !metrics::normalize_answer(a).is_empty()).collect();
            if gold.is_empty() {
                gold.push("");
            }
            let best = |f: fn(&str, &str) -> f64| gold.iter().map(|a| f(a, p)).fold(0.0, f64::max);
            close(name, &format!("exact[{i}]"), best(metrics::squad_exact), &case["per_question_exact"][i]);
            close(name, &format!("f1[{i}]"), best(metrics::squad_f1), &case["per_question_f1"][i]);
        }
        let got = metrics::squad_v2(&golds, &preds).unwrap().to_map();
        let expected = case["scores"].as_object().unwrap();
        assert_eq!(got.keys().collect::<Vec<_>>(), {
            let mut k: Vec<&String> = expected.keys().collect();
            k.sort();
            k
        });
        for (k, v) in expected {
            close(name, k, got[k], v);
        }
    }
}

#[test]
fn entities_match_seqeval() {
    for case in fixture("entities.json") {
        let name = case["name"].as_str().unwrap();
        let gold: Vec<Vec<String>> = case["gold"].as_array().unwrap().iter().map(strings).collect();
        let pred: Vec<Vec<String>> = case["predicted"].as_array().unwrap().iter().map(strings).collect();
        // get_entities on the flattened sequence (an `O` after each sentence), as seqeval does.
        for (seqs, key) in [(&gold, "gold_entities"), (&pred, "predicted_entities")] {
            let flat: Vec<&str> =
                seqs.iter().flat_map(|s| s.iter().map(String::as_str).chain(std::iter::once("O"))).collect();
            let got: Vec<(String, usize, usize)> =
                metrics::entities(&flat).into_iter().map(|e| (e.kind, e.start, e.end)).collect();
            let expected: Vec<(String, usize, usize)> = case[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    (
                        e[0].as_str().unwrap().to_string(),
                        e[1].as_u64().unwrap() as usize,
                        e[2].as_u64().unwrap() as usize,
                    )
                })
                .collect();
            assert_eq!(got, expected, "{name} {key}");
        }
        let scores = metrics::entity_scores(&gold, &pred).unwrap();
        close(name, "precision", scores.overall.precision(), &case["precision"]);
        close(name, "recall", scores.overall.recall(), &case["recall"]);
        close(name, "f1", scores.overall.f1(), &case["f1"]);
        close(name, "accuracy", scores.accuracy, &case["accuracy"]);
        let per_type = case["per_type"].as_object().unwrap();
        for (kind, expected) in per_type {
            let c = scores.per_type[kind];
            assert_eq!(c.gold as u64, expected["support"].as_u64().unwrap(), "{name} {kind} support");
            close(name, &format!("{kind} precision"), c.precision(), &expected["precision"]);
            close(name, &format!("{kind} recall"), c.recall(), &expected["recall"]);
            close(name, &format!("{kind} f1"), c.f1(), &expected["f1"]);
        }
        if !per_type.is_empty() {
            assert_eq!(scores.per_type.len(), per_type.len(), "{name}: entity types");
        }
    }
}

#[test]
fn entity_scores_reject_ragged_input() {
    let gold = vec![vec!["B-PER", "O"]];
    assert_eq!(
        metrics::entity_scores(&gold, &[vec!["O"]]),
        Err(MetricError::Length { predictions: 1, references: 2 })
    );
    assert_eq!(metrics::entity_scores::<&str, &str>(&[vec![]], &[vec![]]), Err(MetricError::Empty));
}

#[test]
fn roc_auc_matches_sklearn() {
    // scikit-learn's documented example: roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) = 0.75.
    let auc = metrics::roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]).unwrap();
    assert!((auc - 0.75).abs() < TOL, "{auc}");
    // Many ties (scores rounded to 0.1): numpy default_rng(3), 40 draws; sklearn 1.x gives
    // 0.519345238095238.
    const SCORES: [f64; 40] = [
        0.1, 0.2, 0.8, 0.6, 0.1, 0.4, 0.5, 0.2, 0.7, 0.1, 0.4, 0.5, 0.4, 0.6, 0.7, 1.0, 0.3, 0.6, 0.7, 0.3,
        0.0, 1.0, 0.3, 0.3, 0.9, 0.6, 0.5, 0.8, 0.0, 0.7, 0.4, 0.1, 0.7, 0.9, 0.2, 0.6, 0.3, 0.7, 0.7, 0.2,
    ];
    const LABELS: [u8; 40] = [
        0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 1, 0, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0,
        1, 0, 1, 1, 1, 0,
    ];
    let labels: Vec<bool> = LABELS.iter().map(|&l| l == 1).collect();
    let auc = metrics::roc_auc(&SCORES, &labels).unwrap();
    assert!((auc - 0.519345238095238).abs() < TOL, "{auc}");
    assert!(metrics::roc_auc(&[0.3, 0.2], &[true, true]).unwrap().is_nan());
    assert!(matches!(metrics::roc_auc(&[0.3], &[true, false]), Err(MetricError::Length { .. })));
}
