//! `LoadOptions::int8` on HF checkpoints: the int8 model against HF transformers' float64 outputs
//! (`fixtures/parity/*/expected.safetensors`, see tests/parity.rs) and against the same checkpoint
//! in f32, by the cosine over non-padding positions; and the int8 path must actually have run
//! (outputs differ from f32).

use deberta_io::inputs::read_token_rows;
use deberta_io::{load_model, output_tensors, read_safetensors, LoadOptions};
use std::path::Path;

type B = burn::backend::Flex;

/// Cosine of `a` and `b` over the positions whose mask is 1 (`[rows, len, ...]` tensors).
fn masked_cosine(a: &[f32], b: &[f32], mask: &[i64]) -> f64 {
    let inner = a.len() / mask.len();
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (k, (&x, &y)) in a.iter().zip(b).enumerate() {
        if mask[k / inner] == 1 {
            dot += x as f64 * y as f64;
            na += x as f64 * x as f64;
            nb += y as f64 * y as f64;
        }
    }
    dot / (na.sqrt() * nb.sqrt())
}

#[test]
fn int8_model_tracks_hf_and_f32() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/parity/v3_base_model");
    let device = Default::default();
    let run = |int8: bool| {
        let options = LoadOptions { int8, ..LoadOptions::default() };
        let loaded = load_model::<B>(&dir, &options, &device).unwrap();
        let rows = read_token_rows(&dir.join("inputs.json"), &loaded.config, loaded.model.head()).unwrap();
        let out = output_tensors(loaded.model.forward(&rows.to_batch::<B>(&device), rows.choices));
        (out["last_hidden_state"].data.clone(), rows.attention_mask)
    };
    let (f32_out, mask) = run(false);
    let (int8_out, _) = run(true);
    let expected = read_safetensors(&dir.join("expected.safetensors")).unwrap();
    let hf = &expected["last_hidden_state"].data;
    let (vs_hf, vs_f32) = (masked_cosine(&int8_out, hf, &mask), masked_cosine(&int8_out, &f32_out, &mask));
    println!("v3_base_model last_hidden_state cosine: int8 vs HF {vs_hf:.6}, int8 vs f32 {vs_f32:.6}");
    assert!(vs_hf >= 0.999 && vs_f32 >= 0.999, "int8 vs HF {vs_hf}, vs f32 {vs_f32}");
    assert!(int8_out != f32_out, "the int8 path did not run");
}
