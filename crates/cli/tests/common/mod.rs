//! Helpers shared by the CLI test binaries: running `deberta`, and where files live.

// Each test binary compiles this module on its own and uses only some of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs the `deberta` binary: (success, stdout, stderr).
pub fn deberta(args: &[&str]) -> (bool, String, String) {
    let (code, stdout, stderr) = deberta_env(args, &[]);
    (code == Some(0), stdout, stderr)
}

/// Runs the `deberta` binary with `env` added to its environment: (exit code, stdout, stderr);
/// the code is `None` when a signal ended it.
pub fn deberta_env(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_deberta"));
    cmd.args(args).envs(env.iter().copied());
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Runs `deberta` and returns its stdout; fails the test (showing stderr) if the command failed.
pub fn ok(args: &[&str]) -> String {
    let (ok, stdout, stderr) = deberta(args);
    assert!(ok, "deberta {}\n{stderr}", args.join(" "));
    stdout
}

/// Runs `deberta` expecting a clean failure whose stderr holds every `expect`; returns stderr.
pub fn fails(args: &[&str], expect: &[&str]) -> String {
    fails_env(args, &[], expect)
}

/// [`fails`] with `env` added to the environment. A clean failure is an error exit: not success,
/// not a panic (exit 101, "panicked"), not a signal (an allocator abort or the OOM killer).
pub fn fails_env(args: &[&str], env: &[(&str, &str)], expect: &[&str]) -> String {
    let (code, _, stderr) = deberta_env(args, env);
    assert!(
        matches!(code, Some(c) if c != 0 && c != 101),
        "deberta {}: exit {code:?}\n{stderr}",
        args.join(" ")
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    for e in expect {
        assert!(stderr.contains(e), "expected {e:?} in:\n{stderr}");
    }
    stderr
}

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A file or directory under `fixtures/`, as a string for the command line.
pub fn fixture(rel: &str) -> String {
    repo().join("fixtures").join(rel).to_str().unwrap().to_string()
}

/// `name` in the test binary's scratch folder `group`, with whatever an earlier run left there
/// removed (its parent exists).
pub fn scratch(group: &str, name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(group).join(name);
    if path.is_dir() {
        std::fs::remove_dir_all(&path).unwrap();
    } else if path.exists() {
        std::fs::remove_file(&path).unwrap();
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    path
}

/// A fresh directory `group/name` holding a 300-line corpus (`corpus.txt`) and a small
/// discriminator config (`config.json`) for pre-training runs.
pub fn pretrain_workspace(group: &str, name: &str) -> PathBuf {
    let dir = scratch(group, name);
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(repo().join("assets/corpus/text/moby-dick.txt")).unwrap();
    let lines: Vec<&str> = text.lines().take(300).collect();
    std::fs::write(dir.join("corpus.txt"), lines.join("\n")).unwrap();
    let config = serde_json::json!({
        "model_type": "deberta-v2", "vocab_size": 8001, "hidden_size": 32, "num_hidden_layers": 2,
        "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64,
        "relative_attention": true, "position_buckets": 8, "max_relative_positions": -1,
        "pos_att_type": ["p2c", "c2p"], "norm_rel_ebd": "layer_norm", "share_att_key": true,
        "position_biased_input": false, "type_vocab_size": 0, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "layer_norm_eps": 1e-7,
        "pad_token_id": 0
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    dir
}

/// `deberta pretrain` on a [`pretrain_workspace`] `dir` (bundled tokenizer, batch 3) into `dir/out`.
pub fn pretrain_args(dir: &Path, out: &str) -> Vec<String> {
    let p = |s: &str| dir.join(s).to_string_lossy().to_string();
    let spm = repo().join("assets/corpus/spm.model").to_string_lossy().to_string();
    ["pretrain", "--corpus", &p("corpus.txt"), "--tokenizer", &spm, "--config", &p("config.json")]
        .into_iter()
        .chain(["--batch-size", "3", "--out", &p(out)])
        .map(str::to_string)
        .collect()
}
