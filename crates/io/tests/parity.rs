//! Number-for-number parity with Hugging Face transformers.
//!
//! Oracle: `scripts/make_fixtures.py` builds random-initialised models of several configs with
//! HF transformers (and, for the EMD generator and RTD head that HF lacks, a small PyTorch
//! module following the official code), runs them in float64 and stores the outputs in
//! `fixtures/parity/<name>/expected.safetensors`. We load the same checkpoint files, run the
//! same token rows in f32 and require, per output tensor, over non-padding positions:
//!
//!     max |ours - reference| / max |reference|  <=  1e-4

use deberta_io::inputs::read_token_rows;
use deberta_io::{load_model, output_tensors, read_safetensors, HostTensor, LoadOptions};
use std::path::{Path, PathBuf};

type B = burn::backend::Flex;
const TOLERANCE: f64 = 1e-4;

fn fixture_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/parity")
}

/// Max relative error over rows/positions the mask keeps. `mask` is `[rows, len]`; tensors
/// whose leading dims are `[rows, len]` are masked per position, others compared whole.
fn rel_err(ours: &HostTensor, reference: &HostTensor, mask: &[i64], rows: usize, len: usize) -> f64 {
    assert_eq!(ours.shape, reference.shape, "shape");
    let per_position = ours.shape.len() >= 2 && ours.shape[0] == rows && ours.shape[1] == len;
    let inner: usize = if per_position { ours.shape[2..].iter().product() } else { 1 };
    let (mut max_diff, mut max_ref) = (0f64, 0f64);
    for (k, (&a, &b)) in ours.data.iter().zip(&reference.data).enumerate() {
        if per_position && mask[k / inner] == 0 {
            continue;
        }
        assert!(a.is_finite(), "non-finite output at {k}");
        max_diff = max_diff.max((a as f64 - b as f64).abs());
        max_ref = max_ref.max((b as f64).abs());
    }
    max_diff / max_ref.max(1e-12)
}

fn run_fixture(name: &str) -> Vec<(String, f64)> {
    run_dir(&fixture_root().join(name), name)
}

fn run_dir(dir: &Path, name: &str) -> Vec<(String, f64)> {
    let device = Default::default();
    let loaded =
        load_model::<B>(dir, &LoadOptions::default(), &device).unwrap_or_else(|e| panic!("{name}: {e}"));
    let head = loaded.model.head();
    let rows = read_token_rows(&dir.join("inputs.json"), &loaded.config, head).unwrap();
    let out = loaded.model.forward(&rows.to_batch::<B>(&device), rows.choices);

    let ours = output_tensors(out);
    let expected = read_safetensors(&dir.join("expected.safetensors")).unwrap();
    assert_eq!(ours.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>(), "{name}: output names");
    let mut errors = Vec::new();
    for (key, reference) in &expected {
        let e = rel_err(&ours[key], reference, &rows.attention_mask, rows.rows, rows.len);
        println!("{name:28} {key:18} max rel err {e:.2e}");
        errors.push((key.clone(), e));
    }
    for (key, e) in &errors {
        assert!(*e <= TOLERANCE, "{name}/{key}: relative error {e:.3e} > {TOLERANCE:e}");
    }
    errors
}

macro_rules! parity {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            run_fixture(stringify!($name));
        }
    )*};
}

parity!(
    v3_seqcls_long,
    v2_conv_mlm_legacy,
    nobucket_c2p_tokcls,
    p2c_qa_sharded,
    norel_multichoice,
    v3_emd_generator,
    v3_rtd_discriminator,
    v3_base_model,
    v3_mlm_nonlegacy,
    v3_regression,
);

/// Every fixture directory is covered by a test above.
#[test]
fn all_fixtures_are_tested() {
    let known = [
        "v3_seqcls_long",
        "v2_conv_mlm_legacy",
        "nobucket_c2p_tokcls",
        "p2c_qa_sharded",
        "norel_multichoice",
        "v3_emd_generator",
        "v3_rtd_discriminator",
        "v3_base_model",
        "v3_mlm_nonlegacy",
        "v3_regression",
    ];
    for entry in std::fs::read_dir(fixture_root()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        assert!(known.contains(&name.as_str()), "fixture {name} has no parity test");
    }
}

/// `DEBERTA_PARITY_DIR=/some/dir cargo test --test parity extra_fixture_dir -- --nocapture` checks
/// every fixture directory there (for trying new fixtures before committing them).
#[test]
fn extra_fixture_dir() {
    let Ok(root) = std::env::var("DEBERTA_PARITY_DIR") else { return };
    let mut names: Vec<_> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    for dir in names.iter().filter(|d| d.join("expected.safetensors").is_file()) {
        run_dir(dir, &dir.file_name().unwrap().to_string_lossy());
    }
}

/// The committed result of `scripts/check_hf_loads_our_save.sh`: HF transformers loaded what
/// `deberta convert` saved for every fixture with no missing keys, and reproduced the outputs.
#[test]
fn hf_loads_what_we_save() {
    let path = fixture_root().join("../hf_loads_our_save.json");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let report = report.as_object().unwrap();
    for entry in std::fs::read_dir(fixture_root()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        let r = report.get(&name).unwrap_or_else(|| panic!("{name} missing from {}", path.display()));
        assert_eq!(r["missing_backbone_keys"].as_array().unwrap().len(), 0, "{name}");
        if r["architecture"] == r["loaded_as"] {
            assert_eq!(r["missing_keys"].as_array().unwrap().len(), 0, "{name}");
            assert_eq!(r["unexpected_keys"].as_array().unwrap().len(), 0, "{name}");
        }
        for (key, e) in r["max_rel_err"].as_object().unwrap() {
            assert!(e.as_f64().unwrap() <= TOLERANCE, "{name}/{key}: {e}");
        }
    }
}
