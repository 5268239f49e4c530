use crate::backend::{asset, cast_module, init_dtype, parse_device, parse_dtype, Dtype};
use crate::with_backend;
use anyhow::{Context, Result};
use burn::prelude::*;
use deberta_io::inputs::read_token_rows;
use deberta_io::{load_model, output_tensors, write_safetensors, LoadOptions};
use deberta_model::Head;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// HF model directory (config.json + weights). Default: the bundled tiny model.
    #[arg(long)]
    model: Option<PathBuf>,
    /// JSON with input_ids / attention_mask / token_type_ids. Default: the bundled example.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Where to write the outputs (safetensors).
    #[arg(long, default_value = "forward_output.safetensors")]
    output: PathBuf,
    /// Use this head instead of the config's `architectures` (base, seq-cls, multiple-choice,
    /// token-classification, qa, mlm, rtd, emd).
    #[arg(long, value_parser = parse_head)]
    head: Option<Head>,
    /// Initialise head weights the checkpoint lacks instead of failing.
    #[arg(long)]
    init_missing_head: bool,
    /// cpu, cuda or cuda:N
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    device: crate::backend::Device,
    /// f32, or bf16 (weights cast after loading, every activation bf16; outputs written as f32).
    #[arg(long, default_value = "f32", value_parser = parse_dtype)]
    dtype: Dtype,
}

pub fn parse_head(s: &str) -> Result<Head, String> {
    Head::from_cli_name(s).ok_or_else(|| {
        format!(
            "unknown head {s:?} (base, seq-cls, multiple-choice, token-classification, qa, mlm, rtd, emd)"
        )
    })
}

pub fn run(args: Args) -> Result<()> {
    let model_dir = args.model.clone().unwrap_or_else(|| asset("tiny-deberta-v3"));
    let input = args.input.clone().unwrap_or_else(|| asset("tiny-input.json"));
    with_backend!(args.device, |B, device| run_on::<B>(&args, model_dir, input, &device))
}

fn run_on<B: Backend>(args: &Args, model_dir: PathBuf, input: PathBuf, device: &B::Device) -> Result<()> {
    init_dtype::<B>(device, args.dtype)?;
    let options = LoadOptions { head: args.head, init_missing_head: args.init_missing_head };
    let loaded = load_model::<B>(&model_dir, &options, device).context("loading the model")?;
    for name in &loaded.initialised {
        tracing::warn!("{name} was not in the checkpoint: initialised randomly");
    }
    let head = loaded.model.head();
    let rows = read_token_rows(&input, &loaded.config, head)?;
    tracing::info!(
        "{} ({}) from {}: {} rows x {} tokens",
        head.architecture(),
        loaded.weights_file.display(),
        model_dir.display(),
        rows.rows,
        rows.len
    );
    // Refuse an input whose activations cannot fit before the forward allocates them.
    loaded
        .config
        .check_batch_memory(rows.rows * rows.choices.unwrap_or(1), rows.len, false)
        .with_context(|| format!("{}", input.display()))?;
    let model = cast_module(loaded.model, args.dtype);
    let out = model.forward(&rows.to_batch::<B>(device), rows.choices);

    let tensors = output_tensors(out);
    if let Some((name, _)) = tensors.iter().find(|(_, t)| t.data.iter().any(|v| !v.is_finite())) {
        tracing::warn!(
            "output `{name}` holds NaN or infinite values (non-finite weights in {}?)",
            loaded.weights_file.display()
        );
    }
    write_safetensors(&args.output, &tensors)?;
    for (name, t) in &tensors {
        println!("{name}: {:?}", t.shape);
    }
    println!("wrote {}", args.output.display());
    Ok(())
}
