use crate::flags::HeadArg;
use anyhow::{Context, Result};
use deberta_io::{load_model, save_model, LoadOptions};
use deberta_model::Head;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// HF model directory to read (safetensors, sharded safetensors or pytorch_model.bin).
    #[arg(long)]
    model: PathBuf,
    /// Directory to write config.json + model.safetensors to.
    #[arg(long)]
    out: PathBuf,
    /// The head to load (default: the config's `architectures`).
    #[arg(long, value_enum)]
    head: Option<HeadArg>,
    #[arg(long)]
    init_missing_head: bool,
}

pub fn run(args: Args) -> Result<()> {
    type B = crate::backend::Cpu;
    let options = LoadOptions {
        head: args.head.map(Head::from),
        init_missing_head: args.init_missing_head,
        ..LoadOptions::default()
    };
    let loaded = load_model::<B>(&args.model, &options, &Default::default()).context("loading the model")?;
    for name in &loaded.ignored {
        tracing::info!("not carried over: {name}");
    }
    save_model(&loaded.model, &loaded.config, &args.out)?;
    println!("wrote {} to {}", loaded.model.head().architecture(), args.out.display());
    Ok(())
}
