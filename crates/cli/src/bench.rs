//! `deberta bench`: tokens/s of a random-weight model on fixed shapes (median of timed runs
//! after warm-up) and the process's peak RSS. Compare with `scripts/bench_pytorch.py` on the same
//! machine in the same session; never assert wall-clock in tests.

use crate::backend::{cast_module, init_dtype, Dtype};
use crate::flags::{preset_parser, Inference};
use crate::init::config_json;
use crate::with_backend;
use anyhow::{bail, Context, Result};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use deberta_model::{Batch, DebertaConfig, DebertaModel, Head};
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// Model shape.
    #[arg(long, default_value = "base", value_parser = preset_parser())]
    preset: String,
    #[arg(long, default_value_t = 8)]
    batch: usize,
    #[arg(long, default_value_t = 128)]
    seq_len: usize,
    /// Timed runs (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Time one full RTD training step (generator and discriminator forward, backward, AdamW;
    /// GDES; the generator half as deep) instead of inference.
    #[arg(long)]
    train: bool,
    /// Print a JSON line last.
    #[arg(long)]
    json: bool,
    /// CPU: run the generic op-by-op path instead of the fused kernels (attention, Linear+GELU,
    /// AdamW), to measure what they gain.
    #[arg(long)]
    no_fused: bool,
    // --dtype applies to inference only (see `run`).
    #[command(flatten)]
    inference: Inference,
}

pub fn run(args: Args) -> Result<()> {
    if args.runs == 0 || args.batch == 0 || args.seq_len == 0 {
        bail!("--runs, --batch and --seq-len must be positive");
    }
    args.inference.runtime.start()?;
    deberta_model::fast::set_enabled(!args.no_fused);
    let serde_json::Value::Object(map) = config_json(Some(&args.preset), None)? else {
        unreachable!("presets are objects")
    };
    let config = DebertaConfig::from_map(map)?;
    // Refuse a shape whose activations cannot fit before the first forward allocates them.
    config
        .check_batch_memory(args.batch, args.seq_len, args.train)
        .with_context(|| format!("--batch {} --seq-len {}", args.batch, args.seq_len))?;
    if args.train {
        if args.inference.dtype != Dtype::F32 {
            bail!("--train runs in f32 (burn 0.21 has no mixed-precision training); drop --dtype");
        }
        return with_backend!(args.inference.runtime.device, |B, device| bench_train::<
            burn::backend::Autodiff<B>,
        >(&args, &config, &device));
    }
    with_backend!(args.inference.runtime.device, |B, device| bench_inference::<B>(&args, &config, &device))
}

/// Median seconds of `runs` calls after `warmup` calls.
fn time_runs(args: &Args, mut step: impl FnMut()) -> f64 {
    for _ in 0..args.warmup {
        step();
    }
    let mut times: Vec<f64> = (0..args.runs)
        .map(|_| {
            let t = Instant::now();
            step();
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn report(args: &Args, mode: &str, median: f64) {
    let (b, l) = (args.batch, args.seq_len);
    let tokens_per_second = (b * l) as f64 / median;
    let peak = peak_rss_bytes();
    println!(
        "{mode} {} batch {b} x {l}: median {:.1} ms, {tokens_per_second:.0} tokens/s, peak RSS {:.0} MiB",
        args.preset,
        median * 1e3,
        peak.unwrap_or(0) as f64 / 1048576.0
    );
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "mode": mode, "preset": args.preset, "batch": b, "seq_len": l,
                "median_seconds": median, "tokens_per_second": tokens_per_second,
                "peak_rss_bytes": peak, "runs": args.runs, "dtype": format!("{:?}", args.inference.dtype).to_lowercase(),
                "device": format!("{:?}", args.inference.runtime.device).to_lowercase(),
            })
        );
    }
}

fn bench_train<B: AutodiffBackend>(args: &Args, config: &DebertaConfig, device: &B::Device) -> Result<()> {
    use deberta_train::masking::{mask_row, MaskingConfig};
    use deberta_train::optim::{AdamW, AdamWConfig};
    use deberta_train::rtd::{Discriminator, EmbeddingSharing, MaskedBatch, RtdTrainer};
    use rand::{Rng, SeedableRng};

    B::seed(device, 0);
    let mut gen_config = config.clone();
    gen_config.num_hidden_layers = (config.num_hidden_layers / 2).max(1);
    let mut generator = DebertaModel::<B>::new(&gen_config, Head::EnhancedMaskDecoderLm, device);
    let mut discriminator = Discriminator::new(
        DebertaModel::<B>::new(config, Head::ReplacedTokenDetection, device),
        EmbeddingSharing::Gdes,
    );
    let mut trainer = RtdTrainer {
        sharing: EmbeddingSharing::Gdes,
        lambda: 50.0,
        generator_opt: AdamW::new(AdamWConfig::default()),
        discriminator_opt: AdamW::new(AdamWConfig::default()),
    };
    let (b, l) = (args.batch, args.seq_len);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let masking = MaskingConfig::for_length(l, 128000);
    let (mut ids, mut labels) = (Vec::new(), Vec::new());
    for _ in 0..b {
        let mut row: Vec<i64> = (0..l).map(|_| rng.random_range(4..128000)).collect();
        row[0] = 1;
        row[l - 1] = 2;
        let m = mask_row(&row, |t| t < 4, &masking, &mut rng);
        ids.extend(m.input_ids);
        labels.extend(m.labels);
    }
    let batch = Batch {
        input_ids: Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [b, l]), device),
        attention_mask: Tensor::<B, 2, Int>::ones([b, l], device),
        token_type_ids: None,
    };
    let masked = MaskedBatch::new(batch, labels);
    let uniforms: Vec<f32> = (0..masked.picks.len()).map(|_| rng.random()).collect();
    let median = time_runs(args, || {
        let (g, d, _) = trainer.step(1e-4, generator.clone(), discriminator.clone(), &masked, &uniforms);
        generator = g;
        discriminator = d;
        // The discriminator's AdamW update may still be queued on an asynchronous backend.
        B::sync(device).expect("backend sync");
    });
    report(args, "train", median);
    Ok(())
}

fn bench_inference<B: Backend>(args: &Args, config: &DebertaConfig, device: &B::Device) -> Result<()> {
    init_dtype::<B>(device, args.inference.dtype)?;
    B::seed(device, 0);
    let mut model = cast_module(DebertaModel::<B>::new(config, Head::Base, device), args.inference.dtype);
    if args.inference.dtype == Dtype::Int8 {
        model.quantize_int8()?;
    }
    let (b, l) = (args.batch, args.seq_len);
    let ids: Vec<i64> = (0..b * l).map(|k| (4 + (k * 7919) % (config.vocab_size - 4)) as i64).collect();
    let batch = Batch {
        input_ids: Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [b, l]), device),
        attention_mask: Tensor::<B, 2, Int>::ones([b, l], device),
        token_type_ids: None,
    };
    let median = time_runs(args, || {
        let out = model.forward(&batch, None).last_hidden_state();
        // Reading back a value forces the (possibly asynchronous) backend to finish.
        let _: f32 = out.sum().into_scalar().elem();
    });
    report(args, "inference", median);
    Ok(())
}

/// `VmHWM` from /proc (Linux); `None` elsewhere.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
