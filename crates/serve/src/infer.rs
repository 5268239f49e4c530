//! The core between the HTTP handlers and the model thread: tokenize on the blocking pool, queue
//! each input as its own job (so inputs of one client batch pack with other clients'), wait for
//! the model, post-process on the blocking pool.

use crate::backend::{Done, Job};
use crate::error::ApiError;
use crate::metrics::Metrics;
use deberta_infer::{InferError, Prepared, Preprocessor, Request, Response};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Where the time of one HTTP request went, for the response headers and `/metrics`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timing {
    /// Tokens the model ran for this request (rows x longest row, per input).
    pub tokens: usize,
    pub tokenization: Duration,
    /// The longest wait of its inputs for the model.
    pub queue: Duration,
    /// The longest model pass its inputs were in.
    pub inference: Duration,
}

pub struct Infer {
    pre: Preprocessor,
    // Behind a lock so that shutdown can drop it (the model thread ends when no sender is left);
    // held for the instant of a send.
    jobs: Mutex<Option<Sender<Job>>>,
    alive: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
}

impl Infer {
    pub fn new(pre: Preprocessor, jobs: Sender<Job>, alive: Arc<AtomicBool>, metrics: Arc<Metrics>) -> Self {
        Infer { pre, jobs: Mutex::new(Some(jobs)), alive, metrics }
    }

    pub fn preprocessor(&self) -> &Preprocessor {
        &self.pre
    }

    pub fn healthy(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    /// Lets the model thread end once the queued jobs are done (shutdown).
    pub fn close(&self) {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// Runs `requests` (one client call) and answers them in order. The first input that fails
    /// fails the call; its position is named when there are several.
    pub async fn run(
        &self,
        requests: Vec<Request>,
        truncate: bool,
    ) -> Result<(Vec<Response>, Timing), ApiError> {
        let many = requests.len() > 1;
        let at = |i: usize| many.then(|| format!("inputs[{i}]"));
        let start = Instant::now();
        let pre = self.pre.clone();
        let prepared = tokio::task::spawn_blocking(move || {
            requests.iter().map(|r| pre.prepare(r, truncate)).collect::<Vec<_>>()
        })
        .await
        .map_err(|e| ApiError::backend(format!("tokenization failed: {e}")))?;
        let mut timing = Timing { tokenization: start.elapsed(), ..Timing::default() };
        self.metrics.tokenization_seconds.observe(timing.tokenization.as_secs_f64());
        let mut waiting = Vec::with_capacity(prepared.len());
        for (i, p) in prepared.into_iter().enumerate() {
            let p = p.map_err(|e| ApiError::from_infer(e, at(i)))?;
            timing.tokens += p.rows() * p.max_len();
            waiting.push(self.submit(p)?);
        }
        let mut done: Vec<Done> = Vec::with_capacity(waiting.len());
        for (i, rx) in waiting.into_iter().enumerate() {
            let d = rx
                .await
                .map_err(|_| ApiError::unhealthy("the model thread stopped"))?
                .map_err(|e| ApiError::from_infer(e, at(i)))?;
            timing.queue = timing.queue.max(d.queue);
            timing.inference = timing.inference.max(d.inference);
            done.push(d);
        }
        let pre = self.pre.clone();
        let responses = tokio::task::spawn_blocking(move || {
            done.into_iter().map(|d| pre.finish(&d.prepared, d.raw)).collect::<Vec<_>>()
        })
        .await
        .map_err(|e| ApiError::backend(format!("post-processing failed: {e}")))?;
        let responses = responses
            .into_iter()
            .enumerate()
            .map(|(i, r)| r.map_err(|e| ApiError::from_infer(e, at(i))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((responses, timing))
    }

    fn submit(&self, prepared: Prepared) -> Result<oneshot::Receiver<Result<Done, InferError>>, ApiError> {
        let (reply, rx) = oneshot::channel();
        let job = Job { prepared, enqueued: Instant::now(), reply };
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        if jobs.as_ref().is_some_and(|s| s.send(job).is_ok()) {
            Ok(rx)
        } else {
            Err(ApiError::unhealthy("the model thread is not running"))
        }
    }
}
