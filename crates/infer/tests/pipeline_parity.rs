//! The pipeline against HF transformers' pipelines on tiny random models
//! (fixtures/pipeline, made by scripts/make_pipeline_fixtures.py): the token ids fed to the
//! model must be HF's exactly; labels, words, offsets and answers exactly; scores and
//! embeddings within 1e-4.

use deberta_infer::{Engine, PipelineOptions, Prepared, Preprocessor, Request};
use serde_json::Value;
use std::path::{Path, PathBuf};

type B = burn::backend::Flex;

const TOLERANCE: f64 = 1e-4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/pipeline")
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).unwrap()).unwrap()
}

/// Integer fields compared exactly; other numbers within the tolerance.
const EXACT: [&str; 5] = ["start", "end", "index", "label", "token"];

/// Largest absolute difference between two JSON values of the same shape, panicking on any
/// structural or exact-field mismatch.
fn compare(ours: &Value, theirs: &Value, key: &str, what: &str) -> f64 {
    match (ours, theirs) {
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            if EXACT.contains(&key) {
                assert_eq!(a, b, "{what}: {key}");
                0.0
            } else {
                (a - b).abs()
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{what}: {key} lengths: ours {ours}, HF {theirs}");
            a.iter().zip(b).map(|(x, y)| compare(x, y, key, what)).fold(0.0, f64::max)
        }
        (Value::Object(a), Value::Object(b)) => {
            let (ka, kb): (Vec<&String>, Vec<&String>) = (a.keys().collect(), b.keys().collect());
            assert_eq!(ka, kb, "{what}: keys: ours {ours}, HF {theirs}");
            a.iter().map(|(k, v)| compare(v, &b[k], k, what)).fold(0.0, f64::max)
        }
        _ => {
            assert_eq!(ours, theirs, "{what}: {key}");
            0.0
        }
    }
}

/// Runs every case of `task` in one engine batch and returns the largest score difference.
fn check(task: &str, model: &str, options: PipelineOptions) -> f64 {
    let all = expected();
    let cases = all[task].as_array().unwrap_or_else(|| panic!("no {task} cases"));
    let dir = fixtures().join(model);
    let pre = Preprocessor::load(&dir, &options).unwrap();
    let device = Default::default();
    let engine = Engine::<B>::load(&dir, &options, &device).unwrap();
    let mut prepared: Vec<Prepared> = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let mut request = case["request"].clone();
        request["task"] = Value::from(task);
        let request: Request = serde_json::from_value(request).unwrap();
        let p = pre.prepare(&request, false).unwrap();
        let ids: Vec<Vec<u32>> = serde_json::from_value(case["ids"].clone()).unwrap();
        let ours: Vec<Vec<u32>> = p.row_ids().iter().map(|r| r.to_vec()).collect();
        assert_eq!(ours, ids, "{task} case {i}: token ids differ from HF's");
        prepared.push(p);
    }
    let refs: Vec<&Prepared> = prepared.iter().collect();
    let raws = engine.forward(&refs).unwrap();
    let mut worst = 0f64;
    for (i, ((case, p), raw)) in cases.iter().zip(&prepared).zip(raws).enumerate() {
        let ours = serde_json::to_value(pre.finish(p, raw).unwrap()).unwrap();
        let what = format!("{task} case {i} {}", case["request"]);
        let diff = compare(&ours, &case["expected"], "", &what);
        assert!(diff <= TOLERANCE, "{what}: differs by {diff}: ours {ours}, HF {}", case["expected"]);
        worst = worst.max(diff);
    }
    println!("{task}: {} cases, max abs diff {worst:.2e}", cases.len());
    worst
}

fn options() -> PipelineOptions {
    let e = expected();
    PipelineOptions {
        tokenizer: Some(fixtures().join("spm.model")),
        max_length: Some(e["max_length"].as_u64().unwrap() as usize),
        doc_stride: None,
        int8: false,
    }
}

#[test]
fn text_classification() {
    check("text-classification", "nli", options());
}

#[test]
fn zero_shot_classification() {
    check("zero-shot-classification", "nli", options());
}

#[test]
fn feature_extraction() {
    check("feature-extraction", "nli", options());
}

#[test]
fn token_classification() {
    check("token-classification", "ner", options());
}

#[test]
fn question_answering() {
    let e = expected();
    let options = PipelineOptions {
        max_length: Some(e["qa_max_length"].as_u64().unwrap() as usize),
        doc_stride: Some(e["qa_doc_stride"].as_u64().unwrap() as usize),
        ..options()
    };
    check("question-answering", "qa", options);
}

#[test]
fn multiple_choice() {
    check("multiple-choice", "mc", options());
}

#[test]
fn fill_mask() {
    check("fill-mask", "mlm", options());
}
