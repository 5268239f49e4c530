//! `deberta serve`: the HTTP inference server (the work is in deberta-serve), and
//! `deberta bench-serve`, its load generator.

use crate::backend::Dtype;
use crate::flags::Inference;
use crate::with_backend;
use anyhow::{Context, Result};
use deberta_serve::{Pooling, ServeOptions};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum PoolingArg {
    /// The `[CLS]` token's state.
    Cls,
    /// The mean over the text's tokens.
    Mean,
}

#[derive(clap::Args)]
pub struct Args {
    /// An HF model directory (config.json, weights, tokenizer), e.g. one `deberta finetune` wrote.
    #[arg(long)]
    model: PathBuf,
    /// spm.model, tokenizer.json or a directory with one (default: the model directory's).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// The model name in /info and /v1/embeddings answers (default: the directory's name).
    #[arg(long)]
    model_id: Option<String>,
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// 0: any free port (the address is printed on stdout).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Padded tokens (longest input x inputs) per forward pass.
    #[arg(long, default_value_t = 16384)]
    max_batch_tokens: usize,
    /// Inputs per forward pass (default: as many as --max-batch-tokens allows).
    #[arg(long)]
    max_batch_requests: Option<usize>,
    /// Requests handled at once; more are answered 429.
    #[arg(long, default_value_t = 512)]
    max_concurrent_requests: usize,
    /// Inputs in one request; more are answered 413.
    #[arg(long, default_value_t = 32)]
    max_client_batch_size: usize,
    /// Tokens per input; longer ones are answered 413 unless the request asks to truncate
    /// (default: the model's finetune.json, else 512).
    #[arg(long)]
    max_input_length: Option<usize>,
    /// Threads tokenizing requests (default: all cores).
    #[arg(long)]
    tokenization_workers: Option<usize>,
    /// How /embed and /v1/embeddings pool the token states.
    #[arg(long, value_enum, default_value = "mean")]
    pooling: PoolingArg,
    #[command(flatten)]
    inference: Inference,
}

pub fn run(args: Args) -> Result<()> {
    let runtime = args.inference.runtime;
    runtime.start()?;
    if args.inference.dtype == Dtype::Bf16 {
        anyhow::bail!("--dtype bf16: serve runs in f32 or int8");
    }
    let mut options = ServeOptions::new(args.model.clone(), SocketAddr::new(args.host, args.port));
    options.tokenizer = args.tokenizer;
    options.model_id = args.model_id;
    options.max_batch_tokens = args.max_batch_tokens;
    options.max_batch_requests = args.max_batch_requests;
    options.max_concurrent_requests = args.max_concurrent_requests;
    options.max_client_batch_size = args.max_client_batch_size;
    options.max_input_length = args.max_input_length;
    options.tokenization_workers = args.tokenization_workers;
    options.int8 = args.inference.dtype == Dtype::Int8;
    options.pooling = match args.pooling {
        PoolingArg::Cls => Pooling::Cls,
        PoolingArg::Mean => Pooling::Mean,
    };
    let ready = |addr: SocketAddr| {
        println!("listening on http://{addr}");
        let _ = std::io::stdout().flush();
    };
    with_backend!(runtime.device, |B, device| deberta_serve::serve::<B>(options, device, ready))
        .with_context(|| format!("serving {}", args.model.display()))
}

#[derive(clap::Args)]
pub struct BenchArgs {
    /// The server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Input lengths in tokens, sent in equal shares.
    #[arg(long, value_delimiter = ',', default_values_t = [16, 64, 256])]
    lengths: Vec<usize>,
    /// Concurrent clients, one run each.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 8, 64])]
    concurrency: Vec<usize>,
    /// Requests per run.
    #[arg(long, default_value_t = 256)]
    requests: usize,
    /// Overload run: this many times the server's --max-concurrent-requests clients (0: none).
    #[arg(long, default_value_t = 4)]
    overload: usize,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

pub fn bench(args: BenchArgs) -> Result<()> {
    let options = deberta_serve::load::LoadOptions {
        url: args.url,
        lengths: args.lengths,
        concurrency: args.concurrency,
        requests: args.requests,
        overload_factor: args.overload,
    };
    let report = deberta_serve::load::run(&options)?;
    print!("{}", report.markdown());
    if let Some(path) = args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
