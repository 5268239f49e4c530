//! `deberta debug ...`: numerical introspection for checking against a reference.

use anyhow::{Context, Result};
use burn::backend::Autodiff;
use burn::prelude::*;
use deberta_io::{load_model, read_model_dir, write_safetensors, LoadOptions};
use deberta_train::debug::{read_rtd_batch, rtd_step_gradients, DELTA_KEY};
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Losses and every parameter gradient of one generator and one discriminator step (GDES)
    /// on a fixed batch, under checkpoint names (`generator.*`, `discriminator.*`).
    RtdStep(RtdStepArgs),
    /// A pre-training trajectory on a fixture from `scripts/rtd_trajectory.py` (its weights,
    /// masked batches, sampling uniforms and settings): one JSON record per step (losses,
    /// gradient norms, learning rate), as `metrics.jsonl` holds them.
    RtdSteps(RtdStepsArgs),
}

#[derive(clap::Args)]
pub struct RtdStepsArgs {
    /// The fixture directory.
    #[arg(long)]
    fixture: PathBuf,
    /// Steps to run (default: all the fixture holds).
    #[arg(long)]
    steps: Option<u64>,
    /// Where to write the JSON list of step records.
    #[arg(long)]
    output: PathBuf,
}

#[derive(clap::Args)]
pub struct RtdStepArgs {
    /// Generator directory (EMD head).
    #[arg(long)]
    generator: PathBuf,
    /// Discriminator directory (RTD head); `deberta.embeddings.word_embeddings._weight`, if
    /// present, is E_delta.
    #[arg(long)]
    discriminator: PathBuf,
    /// JSON with input_ids (with [MASK] at picks), attention_mask, labels, replacements.
    #[arg(long)]
    batch: PathBuf,
    #[arg(long)]
    output: PathBuf,
    /// RTD loss weight (default: the batch file's `lambda`, else 50).
    #[arg(long)]
    lambda: Option<f64>,
}

pub fn run(command: Command) -> Result<()> {
    match command {
        Command::RtdStep(args) => rtd_step(args),
        Command::RtdSteps(args) => rtd_steps(args),
    }
}

fn rtd_steps(args: RtdStepsArgs) -> Result<()> {
    type B = Autodiff<crate::backend::Cpu>;
    let reports = deberta_train::debug::rtd_steps::<B>(&args.fixture, args.steps, &Default::default())?;
    let records: Vec<serde_json::Value> = reports.iter().map(|r| r.to_json()).collect();
    let text = serde_json::to_string_pretty(&records)? + "\n";
    deberta_io::tensors::write_atomic(&args.output, text.as_bytes())?;
    if let Some(last) = reports.last() {
        println!(
            "{} steps: last mlm_loss {:.6} rtd_loss {:.6} -> {}",
            reports.len(),
            last.stats.mlm_loss,
            last.stats.rtd_loss,
            args.output.display()
        );
    }
    Ok(())
}

fn rtd_step(args: RtdStepArgs) -> Result<()> {
    type B = Autodiff<crate::backend::Cpu>;
    let device = Default::default();
    let options = LoadOptions::default();
    let gen = load_model::<B>(&args.generator, &options, &device).context("loading the generator")?;
    let disc =
        load_model::<B>(&args.discriminator, &options, &device).context("loading the discriminator")?;
    let (_, tensors) = read_model_dir(&args.discriminator)?;
    let delta = tensors.get(DELTA_KEY).map(|t| Tensor::<B, 2>::from_data(t.to_burn(), &device));
    let (masked, replacements) =
        read_rtd_batch::<B>(&args.batch, gen.config.vocab_size.min(disc.config.vocab_size), &device)?;
    let lambda = match args.lambda {
        Some(l) => l,
        None => {
            let text = std::fs::read_to_string(&args.batch)?;
            let v: serde_json::Value = serde_json::from_str(&text)?;
            v["lambda"].as_f64().unwrap_or(50.0)
        }
    };
    let out = rtd_step_gradients(
        gen.model,
        &gen.config,
        disc.model,
        &disc.config,
        delta,
        &masked,
        replacements,
        lambda,
    );
    write_safetensors(&args.output, &out)?;
    println!(
        "mlm_loss {:.6}  rtd_loss {:.6}  ({} tensors) -> {}",
        out["mlm_loss"].data[0],
        out["rtd_loss"].data[0],
        out.len(),
        args.output.display()
    );
    Ok(())
}
