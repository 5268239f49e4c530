//! Trajectory parity with the PyTorch reference loop (`scripts/rtd_trajectory.py`, float64):
//! 20 steps of GDES, ES (coupled joint loss), NES and MLM-only from the same initial weights,
//! masked batches and sampling uniforms, through the step function real runs use. Every loss of
//! every step within 1e-4 relative; gradient norms (before clipping) within 1e-4 relative; the
//! learning rate of the official `warmup_linear` schedule to 1e-12.
//!
//! The longer (300-step) comparison is `scripts/trajectory_parity.sh` -> results/trajectory_parity.md.

use burn::backend::{Autodiff, Flex};
use std::path::Path;

type B = Autodiff<Flex>;

fn check(variant: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/trajectory").join(variant);
    let expected: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let ours = deberta_train::debug::rtd_steps::<B>(&dir, None, &Default::default()).unwrap();
    assert_eq!(ours.len(), expected.len());
    assert!(ours.len() >= 20);
    let mut worst = 0f64;
    for (o, e) in ours.iter().zip(&expected) {
        let o = o.to_json();
        assert_eq!(o["step"], e["step"]);
        let lr = (o["lr"].as_f64().unwrap() - e["lr"].as_f64().unwrap()).abs();
        assert!(lr < 1e-12, "{variant} step {}: lr {} vs {}", e["step"], o["lr"], e["lr"]);
        for key in
            ["mlm_loss", "rtd_loss", "generator_grad_norm", "discriminator_grad_norm", "replaced_fraction"]
        {
            let Some(r) = e.get(key).and_then(|v| v.as_f64()) else { continue };
            let got = o[key].as_f64().unwrap_or(f64::NAN);
            let rel = (got - r).abs() / r.abs().max(1e-12);
            worst = worst.max(rel);
            assert!(
                rel <= 1e-4,
                "{variant} step {}: {key} ours {got} reference {r} (rel {rel:.2e})",
                e["step"]
            );
        }
    }
    println!("{variant}: {} steps, worst relative error {worst:.2e}", ours.len());
}

#[test]
fn gdes_trajectory_matches_pytorch() {
    check("gdes");
}

#[test]
fn es_trajectory_matches_pytorch() {
    check("es");
}

#[test]
fn nes_trajectory_matches_pytorch() {
    check("nes");
}

#[test]
fn mlm_trajectory_matches_pytorch() {
    check("mlm");
}
