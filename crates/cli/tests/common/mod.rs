//! Helpers shared by the CLI test binaries: running `deberta`, and where files live.

// Each test binary compiles this module on its own and uses only some of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs the `deberta` binary: (success, stdout, stderr).
pub fn deberta(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_deberta")).args(args).output().unwrap();
    (
        out.status.success(),
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

/// Runs `deberta` expecting a clean failure (no panic) whose stderr holds every `expect`.
pub fn fails(args: &[&str], expect: &[&str]) {
    let (ok, _, stderr) = deberta(args);
    assert!(!ok, "deberta {} succeeded", args.join(" "));
    assert!(!stderr.contains("panicked"), "{stderr}");
    for e in expect {
        assert!(stderr.contains(e), "expected {e:?} in:\n{stderr}");
    }
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
