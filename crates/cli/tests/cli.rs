//! The `deberta` binary end to end: built-in defaults, parity through the CLI, and bad input.

mod common;

use common::{deberta, repo, scratch};
use std::path::PathBuf;

fn tmp(name: &str) -> PathBuf {
    scratch("cli", name)
}

#[test]
fn forward_runs_on_built_in_defaults() {
    let out = tmp("default.safetensors");
    let (ok, stdout, stderr) = deberta(&["forward", "--output", out.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("last_hidden_state: [3, 40, 128]") && stdout.contains("logits: [3, 2]"),
        "{stdout}"
    );
    let t = deberta_io::read_safetensors(&out).unwrap();
    assert!(t["logits"].data.iter().all(|v| v.is_finite()));
    // The output file is never a default in the working directory.
    let (ok, _, stderr) = deberta(&["forward"]);
    assert!(!ok && stderr.contains("--output <OUTPUT>"), "{stderr}");
}

/// The CLI writes what the parity fixture expects (QA: start/end logits under HF names).
#[test]
fn forward_output_matches_hf() {
    let (ours, expected) = forward_qa_fixture("qa.safetensors", &[]);
    assert_eq!(ours.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>());
    // Row 0 has no padding, so every position of it counts.
    let (a, b) = (&ours["start_logits"].data[..40], &expected["start_logits"].data[..40]);
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    let err = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale;
    assert!(err < 1e-4, "{err}");
}

/// `deberta forward` (with `extra` flags) on the sharded QA parity fixture into `out_name`: our
/// outputs and HF's.
fn forward_qa_fixture(out_name: &str, extra: &[&str]) -> (deberta_io::TensorMap, deberta_io::TensorMap) {
    let dir = repo().join("fixtures/parity/p2c_qa_sharded");
    let out = tmp(out_name);
    let (model, input) = (dir.to_str().unwrap(), dir.join("inputs.json"));
    let mut args = vec!["forward", "--model", model, "--input", input.to_str().unwrap()];
    args.extend(["--output", out.to_str().unwrap()]);
    args.extend(extra);
    let (ok, _, stderr) = deberta(&args);
    assert!(ok, "{stderr}");
    let ours = deberta_io::read_safetensors(&out).unwrap();
    (ours, deberta_io::read_safetensors(&dir.join("expected.safetensors")).unwrap())
}

/// `--dtype int8` stays close to HF (cosine of row 0's last hidden state, which has no padding),
/// and is refused where it does not apply.
#[test]
fn forward_in_int8_tracks_hf() {
    let (ours, expected) = forward_qa_fixture("qa-int8.safetensors", &["--dtype", "int8"]);
    let row = ours["last_hidden_state"].shape[1..].iter().product::<usize>();
    let (a, b) = (&ours["last_hidden_state"].data[..row], &expected["last_hidden_state"].data[..row]);
    let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| *p as f64 * *q as f64).sum::<f64>();
    let cos = dot(a, b) / (dot(a, a) * dot(b, b)).sqrt();
    assert!(cos >= 0.999, "int8 vs HF cosine {cos}");
    let (ok, _, stderr) = deberta(&["bench", "--train", "--dtype", "int8", "--preset", "tiny"]);
    assert!(!ok && stderr.contains("--train runs in f32"), "{stderr}");
}

#[test]
fn bad_input_is_a_clear_error() {
    let bad = tmp("ragged.json");
    std::fs::write(&bad, r#"{"input_ids": [[1, 5, 2], [1, 2]]}"#).unwrap();
    let (ok, _, stderr) = deberta(&["forward", "--input", bad.to_str().unwrap(), "--output", "/dev/null"]);
    assert!(!ok);
    assert!(stderr.contains("ragged.json") && stderr.contains("ragged"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let (ok, _, stderr) = deberta(&["forward", "--model", "/nonexistent-model", "--output", "/dev/null"]);
    assert!(!ok && stderr.contains("/nonexistent-model/config.json"), "{stderr}");

    let (ok, _, stderr) = deberta(&["forward", "--head", "bogus"]);
    assert!(!ok && stderr.contains("invalid value 'bogus' for '--head"), "{stderr}");
}

/// Enumerated flags are checked by the parser, which names the flag and lists the values, and
/// `--help` lists them too.
#[test]
fn enumerated_flags_list_their_values() {
    let bad = [
        ("pretrain", "--embedding-sharing", "gdes, es, nes"),
        ("pretrain", "--objective", "rtd, mlm"),
        ("pretrain", "--preset", "tiny, xsmall, small, base, large"),
        ("bench", "--dtype", "f32, bf16, int8"),
        ("tokenize", "--truncation", "longest_first, only_first, only_second"),
    ];
    for (command, flag, values) in bad {
        let (ok, _, stderr) = deberta(&[command, flag, "bogus"]);
        assert!(!ok && stderr.contains(&format!("invalid value 'bogus' for '{flag}")), "{stderr}");
        assert!(stderr.contains(&format!("[possible values: {values}]")), "{stderr}");
    }
    let (ok, help, _) = deberta(&["pretrain", "--help"]);
    assert!(ok && help.contains("- gdes:") && help.contains("- nes:"), "{help}");
    let (ok, _, stderr) = deberta(&["bench", "--device", "tpu"]);
    assert!(!ok && stderr.contains("expected cpu, cuda or cuda:N"), "{stderr}");
}
