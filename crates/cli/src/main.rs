//! `deberta`: the command line. Each subcommand parses its flags and calls into the library
//! crates; the work lives there.

mod backend;
mod bench;
mod convert;
mod debug;
mod evaluate;
mod finetune;
mod flags;
mod forward;
mod init;
mod predict;
mod pretrain;
mod serve;
mod tokenize;
mod train_tokenizer;
mod vocab;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "deberta", version, about = "DeBERTa-v2/v3 in Rust: inference, checkpoints, training")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a model on token ids and write its outputs as safetensors.
    Forward(forward::Args),
    /// Numerical introspection (gradients of one RTD step, ...).
    #[command(subcommand)]
    Debug(debug::Command),
    /// Measure inference throughput on random weights.
    Bench(bench::Args),
    /// Tokenize JSONL texts into DeBERTa inputs (ids identical to the sentencepiece library).
    Tokenize(tokenize::Args),
    /// Train a DeBERTa-v3-style spm.model (unigram, byte fallback, nmt_nfkc).
    TrainTokenizer(train_tokenizer::Args),
    /// Pre-train a DeBERTaV3 (RTD + GDES, or the ES/NES/MLM baselines); no arguments: a tiny
    /// model on the bundled corpus.
    Pretrain(Box<pretrain::Args>),
    /// Fine-tune on a task (GLUE, XNLI, SWAG, SQuAD, CoNLL-2003, CSV/JSONL); keeps the best
    /// epoch's model as an HF directory.
    Finetune(Box<finetune::Args>),
    /// Score a fine-tuned model on a task's data with the official metrics; writes predictions.
    Evaluate(Box<evaluate::Args>),
    /// Run a fine-tuned model on JSON lines; prints one JSON line per input.
    Predict(predict::Args),
    /// Create a randomly initialised model (HF-style init) as an HF directory.
    Init(init::Args),
    /// Load a checkpoint (any supported format) and save it as config.json + model.safetensors.
    Convert(convert::Args),
    /// Serve a model over HTTP with dynamic batching (TEI-style routes, HF pipeline tasks,
    /// OpenAI-compatible /v1/embeddings).
    Serve(Box<serve::Args>),
    /// Load-test a running `deberta serve`: throughput and latency at several concurrencies,
    /// then an overload run past its concurrency limit.
    BenchServe(serve::BenchArgs),
}

fn main() {
    backend::keep_freed_memory();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Plain text in files and pipes: colour codes only on a terminal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Forward(args) => forward::run(args),
        Command::Init(args) => init::run(args),
        Command::Finetune(args) => finetune::run(*args),
        Command::Evaluate(args) => evaluate::run(*args),
        Command::Predict(args) => predict::run(args),
        Command::Pretrain(args) => pretrain::run(*args),
        Command::Tokenize(args) => tokenize::run(args),
        Command::TrainTokenizer(args) => train_tokenizer::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Debug(command) => debug::run(command),
        Command::Convert(args) => convert::run(args),
        Command::Serve(args) => serve::run(*args),
        Command::BenchServe(args) => serve::bench(args),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
