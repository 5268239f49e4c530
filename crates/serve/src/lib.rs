//! `deberta serve`: an HTTP inference server with dynamic batching, laid out as HF's
//! text-embeddings-inference:
//!
//! - [`http`], the router: axum handlers and their JSON shapes (TEI's routes, HF pipeline tasks,
//!   OpenAI-compatible embeddings), the concurrency limit (429) and request metrics;
//! - [`infer`], the core: tokenization on the blocking pool, one queued job per input, and the
//!   answers post-processed; [`batcher`] picks which queued jobs share a forward pass by a
//!   padded-token budget;
//! - [`backend`], the model on a thread of its own.
//!
//! [`load`] is a load generator for it.

pub mod backend;
pub mod batcher;
pub mod error;
pub mod http;
pub mod infer;
pub mod load;
pub mod metrics;
pub mod types;

pub use deberta_infer::Pooling;

use burn::prelude::Backend;
use deberta_infer::{InferError, PipelineOptions, Preprocessor, Task};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Config(String),
    #[error("loading the model: {0}")]
    Load(#[from] InferError),
    #[error("listening on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub model_dir: PathBuf,
    /// Default: the model directory's.
    pub tokenizer: Option<PathBuf>,
    /// The name `/info` and `/v1/embeddings` give (default: the model directory's name).
    pub model_id: Option<String>,
    pub addr: SocketAddr,
    /// Padded tokens (longest row x rows) per forward pass.
    pub max_batch_tokens: usize,
    /// Requests per forward pass (default: no limit beyond tokens).
    pub max_batch_requests: Option<usize>,
    /// Requests handled at once; more are refused with 429.
    pub max_concurrent_requests: usize,
    /// Inputs in one request.
    pub max_client_batch_size: usize,
    /// Tokens per input (default: the model's `finetune.json`, else 512).
    pub max_input_length: Option<usize>,
    /// Threads tokenizing and post-processing (default: the cores).
    pub tokenization_workers: Option<usize>,
    pub pooling: Pooling,
    /// Run the encoder's Linear layers in int8 (CPU; see `deberta_infer::PipelineOptions::int8`).
    pub int8: bool,
}

impl ServeOptions {
    pub fn new(model_dir: PathBuf, addr: SocketAddr) -> Self {
        ServeOptions {
            model_dir,
            tokenizer: None,
            model_id: None,
            addr,
            max_batch_tokens: 16384,
            max_batch_requests: None,
            max_concurrent_requests: 512,
            max_client_batch_size: 32,
            max_input_length: None,
            tokenization_workers: None,
            pooling: Pooling::default(),
            int8: false,
        }
    }
}

/// The class whose probability ranks texts in `/rerank`: the only one, else the NLI head's
/// entailment label, else the second of two (the positive class of a binary classifier).
fn relevant_label(pre: &deberta_infer::Preprocessor) -> Option<String> {
    let labels = pre.id2label();
    match labels.len() {
        1 => Some(labels[0].clone()),
        n => pre.entailment().or((n == 2).then_some(1)).map(|i| labels[i].clone()),
    }
}

/// Loads the model, listens on `options.addr`, calls `on_ready` with the bound address, and
/// serves until SIGTERM or Ctrl-C; then finishes the requests in flight and returns.
pub fn serve<B: Backend>(
    options: ServeOptions,
    device: B::Device,
    on_ready: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    for (flag, v) in [
        ("--max-batch-tokens", options.max_batch_tokens),
        ("--max-concurrent-requests", options.max_concurrent_requests),
        ("--max-client-batch-size", options.max_client_batch_size),
        ("--max-batch-requests", options.max_batch_requests.unwrap_or(1)),
        ("--tokenization-workers", options.tokenization_workers.unwrap_or(1)),
    ] {
        if v == 0 {
            return Err(ServeError::Config(format!("{flag} must be at least 1")));
        }
    }
    let pipeline = PipelineOptions {
        tokenizer: options.tokenizer.clone(),
        max_length: options.max_input_length,
        int8: options.int8,
        ..PipelineOptions::default()
    };
    let pre = Preprocessor::load(&options.model_dir, &pipeline)?;
    if options.max_batch_tokens < pre.max_input_length() {
        return Err(ServeError::Config(format!(
            "--max-batch-tokens {} is less than the longest input, {} tokens (--max-input-length): \
             raise it or lower --max-input-length",
            options.max_batch_tokens,
            pre.max_input_length()
        )));
    }
    let metrics = Arc::new(metrics::Metrics::new());
    let alive = Arc::new(AtomicBool::new(false));
    let budget =
        batcher::Budget { max_tokens: options.max_batch_tokens, max_requests: options.max_batch_requests };
    let model = backend::spawn::<B>(
        options.model_dir.clone(),
        pipeline,
        device,
        budget,
        metrics.clone(),
        alive.clone(),
    )?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = options.tokenization_workers.unwrap_or(cores);
    let (scores, relevant) = if pre.tasks().contains(&Task::TextClassification) {
        (pre.scoring(), relevant_label(&pre))
    } else {
        (deberta_infer::Scoring::Softmax, None)
    };
    let model_id = options.model_id.clone().unwrap_or_else(|| {
        let dir = options.model_dir.canonicalize().unwrap_or_else(|_| options.model_dir.clone());
        dir.file_name().map_or("model".into(), |n| n.to_string_lossy().into_owned())
    });
    let info = types::Info {
        model_id,
        model_type: pre.head().architecture().to_string(),
        tasks: pre.tasks().iter().map(|t| t.name().to_string()).collect(),
        id2label: pre.id2label().to_vec(),
        pooling: format!("{:?}", options.pooling).to_lowercase(),
        max_input_length: pre.max_input_length(),
        max_batch_tokens: options.max_batch_tokens,
        max_batch_requests: options.max_batch_requests,
        max_concurrent_requests: options.max_concurrent_requests,
        max_client_batch_size: options.max_client_batch_size,
        tokenization_workers: workers,
        version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let state = Arc::new(http::AppState {
        infer: infer::Infer::new(pre, model.jobs, alive, metrics.clone()),
        info,
        pooling: options.pooling,
        scores,
        relevant,
        limit: Arc::new(tokio::sync::Semaphore::new(options.max_concurrent_requests)),
        metrics,
    });
    // The runtime only moves bytes and waits; tokenization has the blocking pool, the model its
    // own thread (and the rayon pool).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads((cores / 4).clamp(1, 4))
        .max_blocking_threads(workers)
        .enable_all()
        .build()?;
    let served = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(options.addr)
            .await
            .map_err(|source| ServeError::Bind { addr: options.addr, source })?;
        on_ready(listener.local_addr()?);
        axum::serve(listener, http::router(state.clone())).with_graceful_shutdown(shutdown_signal()).await?;
        Ok::<(), ServeError>(())
    });
    // In-flight requests are answered; let the model thread finish its queue and end.
    state.infer.close();
    drop(state);
    let _ = model.handle.join();
    served
}

/// Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing the requests in flight");
}
