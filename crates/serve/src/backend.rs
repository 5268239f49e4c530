//! The model's thread: it owns the [`Engine`], takes queued jobs in token-budget batches and
//! answers each job on its own channel.

use crate::batcher::{next_batch, padded_tokens, Budget, Shape};
use crate::metrics::Metrics;
use burn::prelude::Backend;
use deberta_infer::{Engine, InferError, PipelineOptions, Prepared, RawOutput};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// One tokenized request waiting for the model.
pub struct Job {
    pub prepared: Prepared,
    pub enqueued: Instant,
    pub reply: oneshot::Sender<Result<Done, InferError>>,
}

/// A job's model outputs, with the request handed back for post-processing.
pub struct Done {
    pub prepared: Prepared,
    pub raw: RawOutput,
    pub queue: Duration,
    pub inference: Duration,
}

impl Shape for Job {
    fn rows(&self) -> usize {
        self.prepared.rows()
    }
    fn max_len(&self) -> usize {
        self.prepared.max_len()
    }
}

/// The running model thread.
pub struct ModelThread {
    pub jobs: Sender<Job>,
    pub handle: JoinHandle<()>,
}

/// Loads the model on a thread of its own (the engine never leaves it) and starts the batching
/// loop there; returns once the model is loaded, or with the load error. `alive` is true while
/// the loop runs.
pub fn spawn<B: Backend>(
    model_dir: PathBuf,
    options: PipelineOptions,
    device: B::Device,
    budget: Budget,
    metrics: Arc<Metrics>,
    alive: Arc<AtomicBool>,
) -> Result<ModelThread, InferError> {
    let (jobs, queue) = std::sync::mpsc::channel::<Job>();
    let (loaded_tx, loaded_rx) = std::sync::mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("model".into())
        .spawn(move || {
            let engine = match Engine::<B>::load(&model_dir, &options, &device) {
                Ok(e) => e,
                Err(e) => {
                    let _ = loaded_tx.send(Err(e));
                    return;
                }
            };
            alive.store(true, Ordering::SeqCst);
            let _alive = AliveGuard(alive);
            let _ = loaded_tx.send(Ok(()));
            run(&engine, queue, budget, &metrics);
        })
        .map_err(|e| InferError::Model(format!("starting the model thread: {e}")))?;
    match loaded_rx.recv() {
        Ok(Ok(())) => Ok(ModelThread { jobs, handle }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(InferError::Model("the model thread died while loading the model".into())),
    }
}

/// Clears the health flag when the model thread ends, by return or by panic.
struct AliveGuard(Arc<AtomicBool>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// Batches until every sender is gone (the server shut down).
fn run<B: Backend>(engine: &Engine<B>, queue: Receiver<Job>, budget: Budget, metrics: &Metrics) {
    let mut pending: Vec<Job> = Vec::new();
    loop {
        if pending.is_empty() {
            match queue.recv() {
                Ok(job) => pending.push(job),
                Err(_) => return,
            }
        }
        // Everything that arrived while the last batch ran is a candidate for this one.
        pending.extend(queue.try_iter());
        // A client that went away no longer needs its answer.
        pending.retain(|j| !j.reply.is_closed());
        let batch = next_batch(&mut pending, budget);
        metrics.queue_size.set(pending.len() as i64);
        if batch.is_empty() {
            continue;
        }
        metrics.batch_requests.observe(batch.len() as f64);
        metrics.batch_tokens.observe(padded_tokens(&batch) as f64);
        let start = Instant::now();
        let refs: Vec<&Prepared> = batch.iter().map(|j| &j.prepared).collect();
        // A panic in the model must not take the server down: the batch fails, the loop goes on.
        let outputs = std::panic::catch_unwind(AssertUnwindSafe(|| engine.forward(&refs)))
            .unwrap_or_else(|p| Err(InferError::Model(format!("the model panicked: {}", panic_text(&p)))));
        let inference = start.elapsed();
        metrics.inference_seconds.observe(inference.as_secs_f64());
        match outputs {
            Ok(raws) if raws.len() == batch.len() => {
                for (job, raw) in batch.into_iter().zip(raws) {
                    let queue = start.duration_since(job.enqueued);
                    metrics.queue_seconds.observe(queue.as_secs_f64());
                    let _ = job.reply.send(Ok(Done { prepared: job.prepared, raw, queue, inference }));
                }
            }
            Ok(raws) => {
                let msg = format!("the model gave {} outputs for {} requests", raws.len(), batch.len());
                for job in batch {
                    let _ = job.reply.send(Err(InferError::Model(msg.clone())));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for job in batch {
                    let _ = job.reply.send(Err(InferError::Model(msg.clone())));
                }
            }
        }
    }
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}
