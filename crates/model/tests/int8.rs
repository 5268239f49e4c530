//! The int8 path (`deberta_model::int8`): the micro-kernels of every instruction set this CPU has
//! against exact integer sums computed here from the unpacked matrices; the quantisers against
//! hand-derived values; the dense layer bit-identical across instruction sets; a model in int8
//! against the same model in f32. The HF-checkpoint check is deberta-io's `tests/int8.rs`.

use burn::backend::Flex;
use burn::module::{ModuleMapper, Param};
use burn::prelude::*;
use deberta_model::int8::{
    kernel, pack_panels, quantize_channel, quantize_row, Epilogue, Isa, PackedLinear, AMX_ROWS, NR,
};
use deberta_model::{Batch, DebertaConfig, DebertaModel, Head};

/// A deterministic pseudo-random stream (xorshift), so the oracle needs no crate.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn f32(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

fn isas() -> Vec<Isa> {
    let isas: Vec<Isa> = Isa::ALL.into_iter().filter(|i| i.available()).collect();
    println!("instruction sets tested: {isas:?}");
    isas
}

/// `tile` for `rows` of `a` (`[mr, depth]`) times `q` (`[depth, d_out]`), panel `p`, on `isa`.
fn run_tile(isa: Isa, a: &[u8], mr: usize, q: &[i8], depth: usize, d_out: usize, p: usize) -> Vec<i32> {
    let packed = pack_panels(q, depth, d_out);
    let panel = &packed[p * depth * NR..(p + 1) * depth * NR];
    let mut tile = vec![7i32; mr * NR];
    kernel(isa, &a[..mr * depth], depth, mr, panel, depth, &mut tile);
    tile
}

/// Sums a human can check: extreme u8 x i8 products whose pairs overflow an i16 (the
/// `vpmaddubsw` trap), a ramp, a sign pattern, and padding columns that must stay 0.
#[test]
fn kernels_give_hand_computed_sums() {
    let depth = 8;
    let d_out = 5; // one panel, columns 5..64 are padding
    #[rustfmt::skip]
    let a: [u8; 16] = [
        255, 255, 255, 255, 255, 255, 255, 255,
        0, 1, 2, 3, 4, 5, 6, 7,
    ];
    // q[k][n]: column 0 all 127, column 1 all -128, column 2 alternating +-1, column 3 = k,
    // column 4 = 0.
    let q: Vec<i8> =
        (0..depth).flat_map(|k| [127, -128, if k % 2 == 0 { 1 } else { -1 }, k as i8, 0]).collect();
    #[rustfmt::skip]
    let want = [
        // 8 x 255 x 127, 8 x 255 x -128, 0, 255 x (0+...+7) = 255 x 28, 0
        [259_080, -261_120, 0, 7_140, 0],
        // 127 x 28, -128 x 28, (0-1+2-3+4-5+6-7) = -4, 0+1+4+...+49 = 140, 0
        [3_556, -3_584, -4, 140, 0],
    ];
    for isa in isas() {
        let tile = run_tile(isa, &a, 2, &q, depth, d_out, 0);
        for (i, want) in want.iter().enumerate() {
            assert_eq!(&tile[i * NR..i * NR + d_out], want, "{isa:?} row {i}");
            assert!(tile[i * NR + d_out..(i + 1) * NR].iter().all(|&v| v == 0), "{isa:?}: padding columns");
        }
    }
}

/// Every row count a kernel takes (1..=MR, or 1..=AMX_ROWS for AMX: one or two tiles of rows),
/// several panels, a deep input (a multiple of 64, which AMX needs) and one that is not, full u8 /
/// i8 ranges: each instruction set equals the i64 sum over the unpacked matrices exactly.
#[test]
fn kernels_equal_exact_integer_sums() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for (depth, d_out) in [(3072, 150), (200, 70)] {
        let a: Vec<u8> = (0..AMX_ROWS * depth).map(|_| rng.next() as u8).collect();
        let q: Vec<i8> = (0..depth * d_out).map(|_| rng.next() as i8).collect();
        let exact: Vec<i64> = (0..AMX_ROWS * d_out)
            .map(|t| {
                (0..depth).map(|k| a[t / d_out * depth + k] as i64 * q[k * d_out + t % d_out] as i64).sum()
            })
            .collect();
        for isa in isas() {
            for mr in 1..=isa.block_rows() {
                for p in 0..d_out.div_ceil(NR) {
                    let tile = run_tile(isa, &a, mr, &q, depth, d_out, p);
                    for i in 0..mr {
                        for c in 0..NR.min(d_out - p * NR) {
                            let n = p * NR + c;
                            let want = exact[i * d_out + n];
                            assert_eq!(
                                tile[i * NR + c] as i64,
                                want,
                                "{isa:?}: {mr} rows, row {i}, column {n}"
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn weight_quantiser_matches_hand_derived_values() {
    // max |w| = 1.27: scale 0.01; 0.5 / 0.01 = 50, 0.254 / 0.01 = 25.4 -> 25, -0.255 -> -25.5 -> -26
    // (ties to even).
    let (scale, q) = quantize_channel(&[0.5, -1.27, 0.254, -0.255, 0.0]);
    assert!((scale - 0.01).abs() < 1e-9, "scale {scale}");
    assert_eq!(q, [50, -127, 25, -26, 0]);
    assert_eq!(quantize_channel(&[0.0, 0.0]), (1.0, vec![0, 0]));
}

#[test]
fn activation_quantiser_matches_hand_derived_values() {
    // Range [-4, 11.9375] = 255 / 16: scale 1/16, zero 4 x 16 = 64; u = 16 x + 64, ties to even.
    let x = [-4.0, 0.0, 0.03125, 0.09375, 11.9375, -0.0625];
    let mut u = [9u8; 7];
    let (scale, zero) = quantize_row(&x, &mut u);
    assert_eq!((scale, zero), (0.0625, 64));
    assert_eq!(u, [0, 64, 64, 66, 255, 63, 9]);
    // All positive: the range is widened to 0, so zero = 0 and max -> 255.
    let (scale, zero) = quantize_row(&[1.0, 2.55], &mut u);
    assert_eq!((scale, zero), (0.01, 0));
    assert_eq!(&u[..2], [100, 255]);
    assert_eq!(quantize_row(&[0.0, 0.0], &mut u), (1.0, 0));
    let (scale, _) = quantize_row(&[1.0, f32::NAN], &mut u);
    assert!(scale.is_nan(), "a NaN row must give NaN outputs, got scale {scale}");
}

/// The dense layer (quantiser, kernel, epilogue) on every instruction set equals the scalar one
/// bit for bit, and approximates the f32 product.
#[test]
fn dense_is_identical_across_instruction_sets() {
    // 133 rows: a whole row chunk and a partial one, ending in a partial micro-tile; an input width
    // that AMX takes (a multiple of 64) and one that it passes to its fallback.
    for d_in in [200, 256] {
        dense_matches_scalar(133, d_in, 130);
    }
}

fn dense_matches_scalar(rows: usize, d_in: usize, d_out: usize) {
    let mut rng = Rng(42);
    let w: Vec<f32> = (0..d_in * d_out).map(|_| rng.f32() * 0.1).collect();
    let bias: Vec<f32> = (0..d_out).map(|_| rng.f32()).collect();
    let x: Vec<f32> = (0..rows * d_in).map(|_| rng.f32() * 3.0).collect();
    let residual: Vec<f32> = (0..rows * d_out).map(|_| rng.f32()).collect();
    let source = burn_flex::FlexTensor::from_data(TensorData::new(w.clone(), [d_in, d_out]));
    let layer = PackedLinear::new(&w, d_in, d_out, Some(bias.clone()), source);
    let exact: Vec<f32> = (0..rows * d_out)
        .map(|t| {
            let (r, n) = (t / d_out, t % d_out);
            (0..d_in).map(|k| x[r * d_in + k] * w[k * d_out + n]).sum::<f32>() + bias[n] + residual[t]
        })
        .collect();
    let scalar = deberta_model::int8::dense_rows(Isa::Scalar, &[&layer], &x, Epilogue::Residual(&residual));
    let cos = cosine(&scalar[0], &exact);
    assert!(cos > 0.9999, "int8 dense vs f32: cosine {cos}");
    for isa in isas() {
        for epilogue in [Epilogue::None, Epilogue::Gelu, Epilogue::Residual(&residual)] {
            let want = deberta_model::int8::dense_rows(Isa::Scalar, &[&layer], &x, epilogue);
            let got = deberta_model::int8::dense_rows(isa, &[&layer, &layer], &x, epilogue);
            for g in &got {
                assert!(g.iter().zip(&want[0]).all(|(a, b)| a.to_bits() == b.to_bits()), "{isa:?} differs");
            }
        }
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

fn hidden(model: &DebertaModel<Flex>, batch: &Batch<Flex>) -> Vec<f32> {
    model.forward(batch, None).last_hidden_state().into_data().to_vec().unwrap()
}

fn batch(rows: usize, len: usize, vocab: usize, device: &burn::tensor::Device<Flex>) -> Batch<Flex> {
    let ids: Vec<i64> = (0..rows * len).map(|k| (4 + (k * 7919) % (vocab - 4)) as i64).collect();
    // The last row is padded after half its length.
    let mask: Vec<i64> = (0..rows * len).map(|k| (k / len + 1 < rows || k % len < len / 2) as i64).collect();
    let t = |v: Vec<i64>| Tensor::<Flex, 2, Int>::from_data(TensorData::new(v, [rows, len]), device);
    Batch { input_ids: t(ids), attention_mask: t(mask), token_type_ids: None }
}

/// A small model in int8 against itself in f32 (cosine of the last hidden state), and a model
/// whose weights changed after packing runs in f32 (the packed weights no longer match).
#[test]
fn model_in_int8_tracks_f32() {
    let config = DebertaConfig::from_json_str(
        r#"{"vocab_size": 64, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 256, "max_position_embeddings": 64, "type_vocab_size": 0,
        "relative_attention": true, "position_buckets": 8, "max_relative_positions": -1,
        "pos_att_type": ["p2c", "c2p"], "norm_rel_ebd": "layer_norm", "share_att_key": true,
        "position_biased_input": false, "hidden_act": "gelu", "initializer_range": 0.02}"#,
    )
    .unwrap();
    let device = Default::default();
    Flex::seed(&device, 7);
    let model = DebertaModel::<Flex>::new(&config, Head::Base, &device);
    let batch = batch(3, 40, 64, &device);
    // f32 first: parameters initialise lazily, and a clone taken before would draw its own.
    let f32_out = hidden(&model, &batch);
    let mut quantized = model.clone();
    quantized.quantize_int8().unwrap();
    let int8_out = hidden(&quantized, &batch);
    let cos = cosine(&int8_out, &f32_out);
    println!("int8 vs f32 last_hidden_state cosine: {cos:.6}");
    assert!(cos >= 0.999, "cosine {cos}");
    assert!(int8_out != f32_out, "the int8 path did not run");

    struct Scale;
    impl ModuleMapper<Flex> for Scale {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<Flex, D>>) -> Param<Tensor<Flex, D>> {
            param.map(|t| t.mul_scalar(1.5))
        }
    }
    let changed = quantized.map(&mut Scale);
    let want = hidden(&model.map(&mut Scale), &batch);
    assert_eq!(hidden(&changed, &batch), want, "stale int8 weights were used after the weights changed");
}

/// The base shape with random weights (HF initialisation), 1 x 128 and 8 x 128: the cosine of the
/// last hidden state in int8 with f32. Slow in a debug build:
/// `cargo test --release -p deberta-model --test int8 -- --ignored --nocapture`.
#[test]
#[ignore]
fn base_shape_cosine() {
    let map = match deberta_model::config::preset_json("base") {
        Some(serde_json::Value::Object(map)) => map,
        other => panic!("base preset: {other:?}"),
    };
    let config = DebertaConfig::from_map(map).unwrap();
    let device = Default::default();
    Flex::seed(&device, 0);
    let model = DebertaModel::<Flex>::new(&config, Head::Base, &device);
    for rows in [1, 8] {
        let ids: Vec<i64> =
            (0..rows * 128).map(|k| (4 + (k * 7919) % (config.vocab_size - 4)) as i64).collect();
        let batch = Batch {
            input_ids: Tensor::<Flex, 2, Int>::from_data(TensorData::new(ids, [rows, 128]), &device),
            attention_mask: Tensor::<Flex, 2, Int>::ones([rows, 128], &device),
            token_type_ids: None,
        };
        // f32 first: parameters initialise lazily, and a clone taken before would draw its own.
        let want = hidden(&model, &batch);
        let mut quantized = model.clone();
        quantized.quantize_int8().unwrap();
        let cos = cosine(&hidden(&quantized, &batch), &want);
        println!("base {rows} x 128: int8 vs f32 last_hidden_state cosine {cos:.6}");
        assert!(cos >= 0.999, "cosine {cos}");
    }
}
