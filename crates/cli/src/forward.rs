//! `deberta forward`: run a model on token ids and write its outputs as safetensors.

use crate::backend::{asset, cast_module, init_dtype, Dtype};
use crate::flags::{HeadArg, Inference};
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
    #[arg(long)]
    output: PathBuf,
    /// Use this head instead of the config's `architectures`.
    #[arg(long, value_enum)]
    head: Option<HeadArg>,
    /// Initialise head weights the checkpoint lacks instead of failing.
    #[arg(long)]
    init_missing_head: bool,
    #[command(flatten)]
    inference: Inference,
}

pub fn run(args: Args) -> Result<()> {
    let model_dir = args.model.clone().unwrap_or_else(|| asset("tiny-deberta-v3"));
    let input = args.input.clone().unwrap_or_else(|| asset("tiny-input.json"));
    args.inference.runtime.start()?;
    with_backend!(args.inference.runtime.device, |B, device| run_on::<B>(&args, model_dir, input, &device))
}

fn run_on<B: Backend>(args: &Args, model_dir: PathBuf, input: PathBuf, device: &B::Device) -> Result<()> {
    init_dtype::<B>(device, args.inference.dtype)?;
    let options = LoadOptions {
        head: args.head.map(Head::from),
        init_missing_head: args.init_missing_head,
        int8: args.inference.dtype == Dtype::Int8,
    };
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
    let model = cast_module(loaded.model, args.inference.dtype);
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
