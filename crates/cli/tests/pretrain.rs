//! `deberta pretrain` end to end on a small model: resume through the CLI is bit-identical to an
//! uninterrupted run, a non-finite loss stops the run keeping the last good checkpoint, every
//! objective/sharing variant runs and exports, and bad input gets a clear error.

mod common;

use common::{deberta, pretrain_args, pretrain_workspace, repo};
use std::path::{Path, PathBuf};

fn workspace(name: &str) -> PathBuf {
    pretrain_workspace("pretrain", name)
}

fn common(dir: &Path, out: &str) -> Vec<String> {
    let mut args = pretrain_args(dir, out);
    args.extend(["--seq-len", "40"].map(str::to_string));
    args
}

fn run(args: Vec<String>, extra: &[&str]) -> (bool, String, String) {
    let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
    all.extend(extra);
    deberta(&all)
}

fn losses(metrics: &Path) -> Vec<String> {
    std::fs::read_to_string(metrics)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            format!("{} {} {}", v["step"], v["mlm_loss"], v["rtd_loss"])
        })
        .collect()
}

#[test]
fn resume_through_the_cli_is_bit_identical() {
    let dir = workspace("resume");
    let (ok, _, err) = run(common(&dir, "straight"), &["--steps", "6", "--checkpoint-every", "3"]);
    assert!(ok, "{err}");
    let (ok, stdout, err) =
        run(common(&dir, "resumed"), &["--steps", "6", "--checkpoint-every", "3", "--stop-at", "3"]);
    assert!(ok && stdout.contains("stopped at step 3"), "{stdout}{err}");
    assert!(!dir.join("resumed/discriminator").exists());
    // A killed run may have logged steps after its last checkpoint: they are dropped on resume.
    let metrics = dir.join("resumed/metrics.jsonl");
    let mut text = std::fs::read_to_string(&metrics).unwrap();
    text.push_str("{\"step\": 4, \"mlm_loss\": 0.0}\n");
    std::fs::write(&metrics, text).unwrap();
    let (ok, _, err) = run(common(&dir, "resumed"), &["--steps", "6", "--resume"]);
    assert!(ok, "{err}");
    for file in ["discriminator/model.safetensors", "generator/model.safetensors"] {
        let a = std::fs::read(dir.join("straight").join(file)).unwrap();
        let b = std::fs::read(dir.join("resumed").join(file)).unwrap();
        assert!(a == b, "{file} differs after resuming");
    }
    assert_eq!(losses(&dir.join("straight/metrics.jsonl")), losses(&metrics));
    assert!(dir.join("resumed/loss.png").exists());
    // The export is an HF directory with the tokenizer beside the weights.
    for f in ["config.json", "model.safetensors", "spm.model", "tokenizer_config.json"] {
        assert!(dir.join("straight/discriminator").join(f).exists(), "{f}");
    }
    let config = std::fs::read_to_string(dir.join("straight/discriminator/config.json")).unwrap();
    assert!(config.contains("DebertaV2ForReplacedTokenDetection"), "{config}");
    // The checkpoints kept: the newest two.
    let mut kept: Vec<String> = std::fs::read_dir(dir.join("straight/checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    kept.sort();
    assert_eq!(kept, vec!["latest", "step-00000003", "step-00000006"]);
}

#[test]
fn a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint() {
    let dir = workspace("nan");
    let (ok, _, err) = run(
        common(&dir, "run"),
        &["--steps", "6", "--checkpoint-every", "1", "--lr", "1e30", "--warmup-steps", "0"],
    );
    assert!(!ok);
    assert!(err.contains("not finite") && err.contains("Last good checkpoint"), "{err}");
    let latest = std::fs::read_to_string(dir.join("run/checkpoints/latest")).unwrap();
    assert!(err.contains(latest.trim()), "{err} / {latest}");
    assert!(!dir.join("run/discriminator").exists());
}

#[test]
fn every_variant_runs_and_exports() {
    let dir = workspace("variants");
    for (name, extra) in [
        ("es", vec!["--embedding-sharing", "es"]),
        ("nes", vec!["--embedding-sharing", "nes"]),
        ("mlm", vec!["--objective", "mlm"]),
    ] {
        let mut args = vec!["--steps", "2"];
        args.extend(extra);
        let (ok, stdout, err) = run(common(&dir, name), &args);
        assert!(ok, "{name}: {err}");
        let exported = if name == "mlm" { "model" } else { "discriminator" };
        assert!(stdout.contains(&format!("{name}/{exported}")), "{name}: {stdout}");
    }
    // Continue pre-training from an export (HF directories, new run directory).
    let init = dir.join("es").to_string_lossy().to_string();
    let (ok, _, err) = run(common(&dir, "continued"), &["--steps", "1", "--init-from", &init]);
    // --init-from conflicts with --config: the config comes from the checkpoint.
    assert!(!ok && err.contains("--config"), "{err}");
    let p = |s: &str| dir.join(s).to_string_lossy().to_string();
    let (ok, _, err) = deberta(&[
        "pretrain",
        "--corpus",
        &p("corpus.txt"),
        "--init-from",
        &init,
        "--seq-len",
        "40",
        "--batch-size",
        "2",
        "--steps",
        "1",
        "--out",
        &p("continued"),
    ]);
    assert!(ok, "{err}");
}

#[test]
fn bad_input_gets_clear_errors() {
    let dir = workspace("bad");
    std::fs::write(dir.join("empty.txt"), "\n\n").unwrap();
    let mut args = common(&dir, "empty");
    args[2] = dir.join("empty.txt").to_string_lossy().to_string();
    let (ok, _, err) = run(args, &["--steps", "1"]);
    assert!(!ok && err.contains("no tokens"), "{err}");

    let (ok, _, err) = run(common(&dir, "none"), &["--resume"]);
    assert!(!ok && err.contains("no checkpoint"), "{err}");

    let (ok, _, err) = run(common(&dir, "twice"), &["--steps", "1"]);
    assert!(ok, "{err}");
    let (ok, _, err) = run(common(&dir, "twice"), &["--steps", "1"]);
    assert!(!ok && err.contains("--resume"), "{err}");

    let missing = dir.join("missing.txt").to_string_lossy().to_string();
    let mut args = common(&dir, "missing");
    args[2] = missing.clone();
    let (ok, _, err) = run(args, &[]);
    assert!(!ok && err.contains(&missing), "{err}");

    std::fs::write(dir.join("latin1.txt"), b"ok line\ncaf\xe9\n").unwrap();
    let mut args = common(&dir, "latin1");
    args[2] = dir.join("latin1.txt").to_string_lossy().to_string();
    let (ok, _, err) = run(args, &["--steps", "1"]);
    assert!(!ok && err.contains("latin1.txt:2") && err.contains("UTF-8"), "{err}");
}

/// The committed result of `scripts/check_pretrain_export.py`: HF transformers loaded the exported
/// discriminator and generator with no missing backbone keys, its DebertaV2Tokenizer gave our
/// ids, its outputs matched `deberta forward`, and the exported embedding was E_G + E_delta.
#[test]
fn hf_loads_the_pretraining_export() {
    let text = std::fs::read_to_string(repo().join("fixtures/pretrain_export_hf.json")).unwrap();
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    for (name, head) in [("discriminator", "mask_predictions."), ("generator", "lm_predictions.")] {
        let r = &report[name];
        assert_eq!(r["missing_keys"], serde_json::json!([]), "{name}");
        let unexpected = r["unexpected_keys"].as_array().unwrap();
        assert!(unexpected.iter().all(|k| k.as_str().unwrap().starts_with(head)), "{name}: {unexpected:?}");
        assert_eq!(r["tokenizer_ids_equal"], true, "{name}");
        assert!(r["last_hidden_state_rel_err"].as_f64().unwrap() < 1e-4, "{name}");
    }
    let d = &report["discriminator"];
    assert_eq!(d["embedding_equals_e_g_plus_delta_max_abs_err"].as_f64(), Some(0.0));
    assert_eq!(d["delta_nonzero"], true);
}

#[test]
fn held_out_evaluation_is_logged_at_its_cadence() {
    let dir = workspace("eval");
    let args = ["--steps", "6", "--eval-every", "3", "--eval-lines", "4", "--checkpoint-every", "6"];
    let (ok, stdout, err) = run(common(&dir, "a"), &args);
    assert!(ok, "{err}");
    assert!(stdout.contains("held-out: {"), "{stdout}");
    // Logs into a pipe are plain text: no colour codes, no progress bar redraws.
    assert!(err.contains("held out at step 3") && !err.contains('\x1b') && !err.contains('\r'), "{err:?}");
    let evals = |run: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.join(run).join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v.get("eval_rtd_auc").is_some())
            .collect()
    };
    let a = evals("a");
    let steps: Vec<u64> = a.iter().map(|v| v["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, vec![0, 3, 6]);
    // Before any step (hand-derived): HF's N(0, 0.02) initialisation gives nearly uniform
    // generator logits, so the MLM loss is ln(8001) = 8.987 and almost every sample differs from
    // the original; the RTD logits are near 0, so the loss is lambda ln 2 = 6.931.
    let first = &a[0];
    let f = |k: &str| first[k].as_f64().unwrap();
    assert!((f("eval_mlm_loss") - 8001f64.ln()).abs() < 0.02 * 8001f64.ln(), "{first}");
    assert!((f("eval_rtd_loss") - 10.0 * 2f64.ln()).abs() < 0.03 * 10.0 * 2f64.ln(), "{first}");
    assert!(f("eval_replaced_fraction") > 0.99, "{first}");
    for v in &a {
        for k in ["eval_mlm_accuracy", "eval_rtd_accuracy", "eval_rtd_auc", "eval_replaced_fraction"] {
            let x = v[k].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&x), "{k} = {x}");
        }
    }
    // The masks and samples are fixed: a second run logs identical evaluations.
    let (ok, _, err) = run(common(&dir, "b"), &args);
    assert!(ok, "{err}");
    assert_eq!(a, evals("b"));
    // A resumed run keeps the held-out split it started with (it decides the training lines),
    // even when asked for another: it ends bit-identical to the uninterrupted run.
    let (ok, _, err) = run(common(&dir, "c"), &[&args[..], &["--stop-at", "3"]].concat());
    assert!(ok, "{err}");
    let (ok, _, err) = run(common(&dir, "c"), &["--steps", "6", "--resume", "--eval-lines", "9"]);
    assert!(ok, "{err}");
    let weights = |run: &str| std::fs::read(dir.join(run).join("discriminator/model.safetensors")).unwrap();
    assert!(weights("a") == weights("c"), "the resumed run differs");
    // (Without --eval-every the resumed run evaluates at every step: the cadence is not a setting.)
    let c: Vec<_> = evals("c").into_iter().filter(|v| v["step"].as_u64().unwrap() % 3 == 0).collect();
    assert_eq!(a, c);
}
