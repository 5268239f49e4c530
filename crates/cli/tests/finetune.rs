//! `deberta finetune` / `evaluate` / `predict` end to end on a tiny random model and the committed
//! samples of every task format (`fixtures/tasks/`, `fixtures/finetune/`):
//!
//! - every format trains, keeps a best checkpoint, and `evaluate` on it prints exactly the
//!   metrics the training log recorded for the best epoch;
//! - a fixed-seed rerun (dropout on) is bit-identical;
//! - gradient accumulation over micro-batches equals one large batch (the loop's numeric
//!   oracle), for sentence classification and for token classification, whose micro-batches
//!   hold different numbers of labelled tokens;
//! - malformed data, wrong label counts and missing heads are errors naming the file (and line),
//!   never panics.

mod common;

use common::{fails, fixture, ok, scratch};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn tmp(name: &str) -> PathBuf {
    scratch("finetune", name)
}

/// A random tiny DeBERTa-v3 (2 layers, hidden 128) with the DeBERTa-style test tokenizer.
fn tiny_model() -> &'static str {
    static DIR: OnceLock<String> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tmp("tiny");
        let d = dir.to_str().unwrap();
        ok(&[
            "init",
            "--preset",
            "tiny",
            "--vocab-size",
            "2048",
            "--head",
            "base",
            "--seed",
            "1",
            "--out",
            d,
        ]);
        std::fs::copy(fixture("tokenizer/deberta_style.model"), dir.join("spm.model")).unwrap();
        d.to_string()
    })
}

/// Fine-tunes the tiny model with `extra` flags, by default for 2 epochs of batches of 2 at
/// lr 1e-3 after 2 warmup steps; returns the run directory.
fn finetune(name: &str, extra: &[&str]) -> PathBuf {
    let out = tmp(name);
    let mut args = vec!["finetune", "--model", tiny_model(), "--out", out.to_str().unwrap()];
    for (flag, value) in [("--epochs", "2"), ("--batch-size", "2"), ("--lr", "1e-3"), ("--warmup-steps", "2")]
    {
        if !extra.contains(&flag) {
            args.extend_from_slice(&[flag, value]);
        }
    }
    args.extend_from_slice(extra);
    ok(&args);
    out
}

/// The `best/...` metrics of the last line of `metrics.jsonl`.
fn logged_best(run: &Path) -> BTreeMap<String, Value> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    last.as_object()
        .unwrap()
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("best/").map(|k| (k.to_string(), v.clone())))
        .collect()
}

fn printed_metrics(stdout: &str) -> BTreeMap<String, Value> {
    let line = stdout.lines().find(|l| l.starts_with('{')).expect("a JSON line");
    serde_json::from_str(line).unwrap()
}

/// Trains on `data`, evaluates on `dev`, then checks the best checkpoint and that `evaluate`
/// reproduces the logged score exactly.
fn round_trip(name: &str, task_flags: &[&str], data: &str, dev: &str, expect: &[&str]) {
    let mut flags = task_flags.to_vec();
    flags.extend_from_slice(&["--data", data, "--dev", dev]);
    let run = finetune(name, &flags);
    let best = run.join("best");
    for file in ["config.json", "model.safetensors", "spm.model", "tokenizer_config.json", "finetune.json"] {
        assert!(best.join(file).is_file(), "{name}: no {file}");
    }
    let logged = logged_best(&run);
    for key in expect {
        assert!(logged.contains_key(*key), "{name}: {key} not in {logged:?}");
    }
    let mut args = vec!["evaluate", "--model", best.to_str().unwrap(), "--data", dev];
    let preds = tmp(&format!("{name}-predictions"));
    args.extend_from_slice(&["--predictions-dir", preds.to_str().unwrap()]);
    args.extend_from_slice(task_flags);
    let printed = printed_metrics(&ok(&args));
    assert_eq!(printed, logged, "{name}: evaluate differs from the training log");
    // The predictions are those of the best epoch, too.
    let set = Path::new(dev).file_stem().unwrap().to_str().unwrap();
    let file = format!("predictions_{set}.jsonl");
    assert_eq!(
        std::fs::read_to_string(preds.join(&file)).unwrap(),
        std::fs::read_to_string(best.join(&file)).unwrap(),
        "{name}"
    );
}

#[test]
fn glue_pair_and_regression_round_trip() {
    let rte = fixture("tasks/glue/RTE/train.tsv");
    round_trip("rte", &["--task", "rte"], &rte, &rte, &["train/accuracy"]);
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(tmp_path("rte/best/config.json")).unwrap()).unwrap();
    assert_eq!(config["id2label"]["1"], "not_entailment");
    assert_eq!(config["label2id"]["entailment"], 0);
    assert_eq!(config["architectures"][0], "DebertaV2ForSequenceClassification");
    assert_eq!(config["cls_dropout"], 0.3, "RTE's recipe dropout");
    let stsb = fixture("tasks/glue/STS-B/dev.tsv");
    round_trip("stsb", &["--task", "stsb"], &stsb, &stsb, &["dev/pearson", "dev/spearmanr"]);
}

fn tmp_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("finetune").join(rel)
}

#[test]
fn swag_squad_conll_round_trip() {
    let swag = fixture("tasks/swag/val.csv");
    round_trip("swag", &["--task", "swag"], &swag, &swag, &["val/accuracy"]);
    let squad = fixture("tasks/squad/dev-v2.0.json");
    round_trip(
        "squad",
        &["--task", "squad", "--max-length", "48", "--doc-stride", "16"],
        &squad,
        &squad,
        &["dev-v2.0/f1", "dev-v2.0/exact", "dev-v2.0/HasAns_f1", "dev-v2.0/NoAns_f1"],
    );
    let conll = fixture("tasks/conll/train.txt");
    round_trip(
        "conll",
        &["--task", "conll"],
        &conll,
        &conll,
        &["train/f1", "train/precision", "train/recall"],
    );
}

#[test]
fn generic_csv_and_jsonl_round_trip() {
    let cols = ["--text-column", "sentence", "--label-column", "score"];
    let csv = fixture("finetune/ratings.csv");
    let jsonl = fixture("finetune/ratings.jsonl");
    let flags = [&["--task", "regression"][..], &cols].concat();
    round_trip("csv-regression", &flags, &csv, &csv, &["ratings/pearson", "ratings/spearmanr"]);
    round_trip("jsonl-regression", &flags, &jsonl, &jsonl, &["ratings/pearson"]);
    // Classification with labels read from the data, trained on JSONL and scored on CSV.
    let flags = ["--task", "classification", "--text-column", "review", "--label-column", "verdict"];
    let (train, dev) = (fixture("tasks/generic/reviews.jsonl"), fixture("tasks/generic/reviews.csv"));
    round_trip("jsonl-classification", &flags, &train, &dev, &["reviews/accuracy", "reviews/macro_f1"]);
    let card: Value = serde_json::from_str(
        &std::fs::read_to_string(tmp_path("jsonl-classification/best/finetune.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(card["labels"], serde_json::json!(["mixed", "negative", "positive"]));

    // predict prints the label names and probabilities, one line per input.
    let input = tmp("predict-input.jsonl");
    std::fs::write(&input, "{\"text\": \"Loved it\"}\n{\"text\": \"Broke at once\"}\n").unwrap();
    let best = tmp_path("jsonl-classification/best");
    let out = ok(&["predict", "--model", best.to_str().unwrap(), "--input", input.to_str().unwrap()]);
    let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    for l in &lines {
        let p = l["probabilities"].as_object().unwrap();
        assert_eq!(p.len(), 3);
        assert!(p.contains_key(l["label"].as_str().unwrap()));
        assert!((p.values().map(|v| v.as_f64().unwrap()).sum::<f64>() - 1.0).abs() < 1e-9);
    }
}

fn safetensors(path: &Path) -> deberta_io::TensorMap {
    deberta_io::read_safetensors(path).unwrap()
}

/// Metrics log lines without timings.
fn log_without_times(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("elapsed_seconds");
            v
        })
        .collect()
}

#[test]
fn fixed_seed_rerun_is_bit_identical() {
    // Dropout is on (the tiny preset's 0.1), so the per-step backend seeding is exercised.
    let conll = fixture("tasks/conll/train.txt");
    let flags = ["--task", "conll", "--data", &conll, "--dev", &conll, "--seed", "7"];
    let (a, b) = (finetune("seed-a", &flags), finetune("seed-b", &flags));
    let weights = |run: &Path| std::fs::read(run.join("best/model.safetensors")).unwrap();
    assert!(weights(&a) == weights(&b), "same seed, different weights");
    assert_eq!(log_without_times(&a), log_without_times(&b));
    let c = finetune("seed-c", &["--task", "conll", "--data", &conll, "--dev", &conll, "--seed", "8"]);
    assert!(weights(&a) != weights(&c), "the seed changes nothing");
}

/// One optimiser step; the update is made proportional to the gradient (Adam with a huge epsilon,
/// no clipping, no decay, lr 1 from the first step), so any difference in the accumulated
/// gradient shows in the parameters.
fn one_step(name: &str, task: &[&str], batch: &str, accum: &str) -> deberta_io::TensorMap {
    let mut flags = task.to_vec();
    flags.extend_from_slice(&[
        "--batch-size",
        batch,
        "--grad-accum",
        accum,
        "--max-steps",
        "1",
        "--lr",
        "1",
        "--warmup-steps",
        "0",
        "--adam-epsilon",
        "1",
        "--weight-decay",
        "0",
        "--max-grad-norm",
        "0",
        "--dropout",
        "0",
    ]);
    let run = finetune(name, &flags);
    safetensors(&run.join("best/model.safetensors"))
}

fn max_diff(a: &deberta_io::TensorMap, b: &deberta_io::TensorMap) -> f32 {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    a.iter().flat_map(|(k, t)| t.data.iter().zip(&b[k].data).map(|(x, y)| (x - y).abs())).fold(0f32, f32::max)
}

#[test]
fn gradient_accumulation_equals_one_large_batch() {
    // The bare encoder is saved without the `deberta.` prefix.
    let init: deberta_io::TensorMap = safetensors(&Path::new(tiny_model()).join("model.safetensors"))
        .into_iter()
        .map(|(k, v)| (format!("deberta.{k}"), v))
        .collect();
    // RTE: 5 pairs; 2 micro-batches of 3 (3 + 2 rows) vs one batch of 6 (all 5).
    let rte = fixture("tasks/glue/RTE/train.tsv");
    let task = ["--task", "rte", "--data", &rte, "--dev", &rte];
    let accumulated = one_step("accum-rte-3x2", &task, "3", "2");
    let whole = one_step("accum-rte-6x1", &task, "6", "1");
    let diff = max_diff(&accumulated, &whole);
    eprintln!("RTE: accumulated vs whole batch, max |diff| {diff:e}");
    assert!(diff < 1e-5, "accumulated vs whole batch: {diff}");
    // The comparison has teeth: the step moved the encoder, and a step on 3 rows differs.
    let backbone = |m: &deberta_io::TensorMap| {
        m.iter().filter(|(k, _)| k.starts_with("deberta.")).map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    assert!(max_diff(&backbone(&whole), &init) > 1e-3);
    let partial = one_step("accum-rte-3x1", &task, "3", "1");
    let (moved, other) = (max_diff(&backbone(&whole), &init), max_diff(&partial, &whole));
    eprintln!("RTE: the step moved the encoder by up to {moved:e}; a 3-row step differs by {other:e}");
    assert!(other > 1e-4);

    // CoNLL: sentences with different numbers of labelled (first) sub-tokens; the loss is the
    // mean over the step's labelled tokens, not a mean of micro-batch means.
    let conll = fixture("tasks/conll/train.txt");
    let task = ["--task", "conll", "--data", &conll, "--dev", &conll];
    let accumulated = one_step("accum-conll-2x3", &task, "2", "3");
    let whole = one_step("accum-conll-6x1", &task, "6", "1");
    let diff = max_diff(&accumulated, &whole);
    eprintln!("CoNLL: accumulated vs whole batch, max |diff| {diff:e}");
    assert!(diff < 1e-5, "NER accumulated vs whole batch: {diff}");
}

#[test]
fn malformed_data_is_an_error_naming_file_and_line() {
    let out = tmp("malformed");
    let model = tiny_model();
    let train = |task: &str, data: &str, expect: &[&str]| {
        let data = fixture(data);
        let args = ["finetune", "--model", model, "--task", task, "--data", &data, "--dev", &data];
        let mut args = args.to_vec();
        args.extend_from_slice(&["--out", out.to_str().unwrap(), "--epochs", "1"]);
        fails(&args, expect);
    };
    train("sst2", "tasks/malformed/SST-2/dev.tsv", &["malformed/SST-2/dev.tsv:3:", "unknown label"]);
    train("rte", "tasks/malformed/RTE/train.tsv", &["malformed/RTE/train.tsv:3:"]);
    train("stsb", "tasks/malformed/STS-B/dev.tsv", &["malformed/STS-B/dev.tsv:3:", "not a number"]);
    train("cola", "tasks/malformed/CoLA/train.tsv", &["malformed/CoLA/train.tsv:2:"]);
    train("swag", "tasks/malformed/swag.csv", &["malformed/swag.csv:3:", "is not 0 to 3"]);
    train("squad", "tasks/malformed/squad.json", &["malformed/squad.json:6:", "missing field `id`"]);
    train("conll", "tasks/malformed/conll.txt", &["malformed/conll.txt:4:", "B-PERSON"]);
    train("sst2", "tasks/malformed/empty.tsv", &["malformed/empty.tsv", "no examples"]);
    let reviews = ["--text-column", "review", "--label-column", "verdict"];
    let data = fixture("tasks/malformed/reviews_bad_json.jsonl");
    let mut args =
        vec!["finetune", "--model", model, "--task", "classification", "--data", &data, "--dev", &data];
    args.extend_from_slice(&reviews);
    args.extend_from_slice(&["--out", out.to_str().unwrap()]);
    fails(&args, &["malformed/reviews_bad_json.jsonl:3:"]);
    // A good training file with a malformed dev file.
    let good = fixture("tasks/glue/SST-2/dev.tsv");
    let bad = fixture("tasks/malformed/SST-2/dev.tsv");
    let args = ["finetune", "--model", model, "--task", "sst2", "--data", &good, "--dev", &bad, "--out"];
    fails(&[&args[..], &[out.to_str().unwrap()]].concat(), &["malformed/SST-2/dev.tsv:3:"]);
    // evaluate reads the same way, and XNLI rows too.
    fails(
        &["evaluate", "--model", model, "--task", "xnli", "--data", &fixture("tasks/malformed/xnli.tsv")],
        &["malformed/xnli.tsv:3:", "unknown label \"maybe\""],
    );
    // Flags that do not fit.
    fails(
        &["finetune", "--model", model, "--task", "nope", "--data", &good, "--out", "/tmp/x"],
        &["invalid value 'nope' for '--task"],
    );
    fails(
        &["finetune", "--model", model, "--task", "sst2", "--data", &good, "--out", "/tmp/x"],
        &["is a file: give the evaluation file with --dev"],
    );
    fails(
        &[
            "finetune",
            "--model",
            model,
            "--task",
            "regression",
            "--data",
            &good,
            "--dev",
            &good,
            "--out",
            "/tmp/x",
        ],
        &["--text-column"],
    );
    fails(
        &["finetune", "--model", model, "--task", "xnli", "--data", &good, "--dev", &good, "--out", "/tmp/x"],
        &["XNLI has no training set"],
    );
}

#[test]
fn wrong_model_for_the_task_is_an_error() {
    let rte = fixture("tasks/glue/RTE/train.tsv");
    let run = finetune("labels-rte", &["--task", "rte", "--data", &rte, "--dev", &rte, "--epochs", "1"]);
    let best = run.join("best");
    let mnli = fixture("tasks/glue/MNLI/dev_matched.tsv");
    // A 2-label model scored on a 3-label task.
    fails(
        &["evaluate", "--model", best.to_str().unwrap(), "--task", "mnli", "--data", &mnli],
        &["2 labels", "mnli has 3"],
    );
    // Further fine-tuning keeps the head, so the label count must fit too.
    let args =
        ["finetune", "--model", best.to_str().unwrap(), "--task", "mnli", "--data", &mnli, "--dev", &mnli];
    fails(&[&args[..], &["--out", tmp("labels-mnli").to_str().unwrap()]].concat(), &["the task needs 3"]);
    // A model without the task's head cannot be evaluated.
    fails(&["evaluate", "--model", tiny_model(), "--task", "rte", "--data", &rte], &["missing head tensors"]);
    // A tokenizer with more ids than the embedding has rows.
    let tok = fixture("tokenizer/deberta_style.model");
    let small = tmp("small-vocab");
    ok(&["init", "--preset", "tiny", "--vocab-size", "64", "--out", small.to_str().unwrap()]);
    let args = [
        "finetune",
        "--model",
        small.to_str().unwrap(),
        "--tokenizer",
        &tok,
        "--task",
        "rte",
        "--data",
        &rte,
    ];
    fails(&[&args[..], &["--dev", &rte, "--out", "/tmp/x"]].concat(), &["vocab_size 64 is smaller"]);
}
