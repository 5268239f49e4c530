//! `deberta bench`: tokens/s of a random-weight model on fixed shapes (median of timed runs
//! after warm-up) and the process's peak RSS. Compare with `scripts/bench_pytorch.py` on the same
//! machine in the same session; never assert wall-clock in tests.

use crate::backend::parse_device;
use crate::with_backend;
use anyhow::{bail, Context, Result};
use burn::prelude::*;
use deberta_model::config::{preset_json, PRESETS};
use deberta_model::{Batch, DebertaConfig, DebertaModel, Head};
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// Model shape: tiny, xsmall, small, base, large.
    #[arg(long, default_value = "base")]
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
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Print a JSON line last.
    #[arg(long)]
    json: bool,
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    device: crate::backend::Device,
}

pub fn run(args: Args) -> Result<()> {
    if args.runs == 0 || args.batch == 0 || args.seq_len == 0 {
        bail!("--runs, --batch and --seq-len must be positive");
    }
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new().num_threads(n).build_global().context("setting --threads")?;
    }
    let json = preset_json(&args.preset)
        .with_context(|| format!("unknown preset {:?} (one of {})", args.preset, PRESETS.join(", ")))?;
    let serde_json::Value::Object(map) = json else { unreachable!("presets are objects") };
    let config = DebertaConfig::from_map(map)?;
    with_backend!(args.device, |B, device| bench_inference::<B>(&args, &config, &device))
}

fn bench_inference<B: Backend>(args: &Args, config: &DebertaConfig, device: &B::Device) -> Result<()> {
    B::seed(device, 0);
    let model = DebertaModel::<B>::new(config, Head::Base, device);
    let (b, l) = (args.batch, args.seq_len);
    let ids: Vec<i64> = (0..b * l).map(|k| (4 + (k * 7919) % (config.vocab_size - 4)) as i64).collect();
    let batch = Batch {
        input_ids: Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [b, l]), device),
        attention_mask: Tensor::<B, 2, Int>::ones([b, l], device),
        token_type_ids: None,
    };
    let step = || {
        let out = model.forward(&batch, None).last_hidden_state();
        // Reading back a value forces the (possibly asynchronous) backend to finish.
        let _: f32 = out.sum().into_scalar().elem();
    };
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
    let median = times[times.len() / 2];
    let tokens_per_second = (b * l) as f64 / median;
    let peak = peak_rss_bytes();
    println!(
        "inference {} batch {b} x {l}: median {:.1} ms, {tokens_per_second:.0} tokens/s, peak RSS {:.0} MiB",
        args.preset,
        median * 1e3,
        peak.unwrap_or(0) as f64 / 1048576.0
    );
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "mode": "inference", "preset": args.preset, "batch": b, "seq_len": l,
                "median_seconds": median, "tokens_per_second": tokens_per_second,
                "peak_rss_bytes": peak, "runs": args.runs,
            })
        );
    }
    Ok(())
}

/// `VmHWM` from /proc (Linux); `None` elsewhere.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
