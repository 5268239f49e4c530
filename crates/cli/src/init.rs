use crate::flags::{preset_parser, HeadArg};
use anyhow::{bail, Context, Result};
use burn::prelude::*;
use deberta_model::config::{preset_json, PRESETS};
use deberta_model::{DebertaConfig, DebertaModel, Head};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// A DeBERTa-V3 shape.
    #[arg(long, conflicts_with = "config", value_parser = preset_parser())]
    preset: Option<String>,
    /// An HF config.json to use instead of a preset.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override the vocabulary size (e.g. a small one for demos).
    #[arg(long)]
    vocab_size: Option<usize>,
    /// Number of labels for classification heads.
    #[arg(long)]
    num_labels: Option<usize>,
    #[arg(long, value_enum, default_value_t = HeadArg::Base)]
    head: HeadArg,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    out: PathBuf,
    /// Write into --out even if it is not empty (replacing a model there).
    #[arg(long)]
    force: bool,
}

/// The config JSON of `--preset` or `--config`.
pub fn config_json(preset: Option<&str>, config: Option<&Path>) -> Result<serde_json::Value> {
    Ok(match (preset, config) {
        (Some(p), None) => {
            preset_json(p).with_context(|| format!("unknown preset {p:?} (one of {})", PRESETS.join(", ")))?
        }
        (None, Some(path)) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", path.display()))?
        }
        _ => bail!("give --preset or --config"),
    })
}

/// `--out` must be new or empty unless `--force`: a model there would be overwritten.
fn refuse_non_empty(out: &Path, force: bool) -> Result<()> {
    let non_empty = match std::fs::read_dir(out) {
        Ok(mut entries) => entries.next().is_some(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            bail!("--out {}: not a directory", out.display())
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", out.display())),
    };
    if non_empty && !force {
        bail!("--out {} is not empty (it may hold a model): choose another directory, or pass --force to overwrite", out.display());
    }
    Ok(())
}

pub fn run(args: Args) -> Result<()> {
    let mut json = config_json(args.preset.as_deref(), args.config.as_deref())?;
    if let Some(v) = args.vocab_size {
        json["vocab_size"] = v.into();
    }
    if let Some(n) = args.num_labels {
        json["num_labels"] = n.into();
    }
    let serde_json::Value::Object(map) = json else { bail!("config is not a JSON object") };
    let config = DebertaConfig::from_map(map)?;
    let head = Head::from(args.head);
    config.check_head(head)?;
    config.check_memory(head, 1.0)?;
    refuse_non_empty(&args.out, args.force)?;
    type B = crate::backend::Cpu;
    let device = Default::default();
    B::seed(&device, args.seed);
    let model = DebertaModel::<B>::new(&config, head, &device);
    deberta_io::save_model(&model, &config, &args.out)?;
    println!("wrote a random {} to {}", head.architecture(), args.out.display());
    Ok(())
}
