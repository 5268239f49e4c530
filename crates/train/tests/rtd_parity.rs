//! Gradient parity of one RTD step with PyTorch (`scripts/make_rtd_fixture.py`, float64):
//! both losses and every parameter gradient of the generator and of the discriminator
//! (including E_delta) within 1e-4 relative (max |ours - ref| / max |ref| per tensor).

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use deberta_io::{load_model, read_model_dir, read_safetensors, LoadOptions};
use deberta_train::debug::{read_rtd_batch, rtd_step_gradients, DELTA_KEY};
use std::path::Path;

type B = Autodiff<Flex>;

#[test]
fn one_rtd_step_matches_pytorch() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/rtd_step");
    let device = Default::default();
    let gen = load_model::<B>(&dir.join("generator"), &LoadOptions::default(), &device).unwrap();
    let disc = load_model::<B>(&dir.join("discriminator"), &LoadOptions::default(), &device).unwrap();
    let (_, tensors) = read_model_dir(&dir.join("discriminator")).unwrap();
    let delta = Tensor::<B, 2>::from_data(tensors[DELTA_KEY].to_burn(), &device);
    let (masked, replacements) =
        read_rtd_batch::<B>(&dir.join("batch.json"), gen.config.vocab_size, &device).unwrap();
    let ours = rtd_step_gradients(
        gen.model,
        &gen.config,
        disc.model,
        &disc.config,
        Some(delta),
        &masked,
        replacements,
        50.0,
    );
    let expected = read_safetensors(&dir.join("expected.safetensors")).unwrap();
    assert_eq!(ours.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>());
    let mut worst = (0.0, String::new());
    for (key, reference) in &expected {
        let got = &ours[key];
        assert_eq!(got.shape, reference.shape, "{key}");
        let max_ref = reference.data.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
        let max_diff =
            got.data.iter().zip(&reference.data).fold(0f32, |m, (a, b)| m.max((a - b).abs())) as f64;
        if max_ref == 0.0 {
            // The discriminator's own word embedding is unused under GDES.
            assert_eq!(max_diff, 0.0, "{key}: expected no gradient");
            continue;
        }
        let err = max_diff / max_ref;
        if err > worst.0 {
            worst = (err, key.clone());
        }
        assert!(err <= 1e-4, "{key}: relative error {err:.3e}");
    }
    println!("{} tensors, worst relative error {:.2e} ({})", expected.len(), worst.0, worst.1);
}
