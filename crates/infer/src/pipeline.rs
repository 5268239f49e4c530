//! All stages in one call, for the command line and tests.

use crate::engine::Engine;
use crate::preprocess::{PipelineOptions, Prepared, Preprocessor};
use crate::types::{Request, Response, Result};
use burn::prelude::*;
use std::path::Path;

pub struct Pipeline<B: Backend> {
    pub pre: Preprocessor,
    pub engine: Engine<B>,
}

impl<B: Backend> Pipeline<B> {
    pub fn load(model_dir: &Path, options: &PipelineOptions, device: &B::Device) -> Result<Self> {
        let pre = Preprocessor::load(model_dir, options)?;
        let engine = Engine::load(model_dir, options, device)?;
        Ok(Pipeline { pre, engine })
    }

    /// One result per request, in order. Requests are prepared, sorted by length and run
    /// `batch_size` at a time; a request that fails to prepare fails alone.
    pub fn run(&self, requests: &[Request], truncate: bool, batch_size: usize) -> Vec<Result<Response>> {
        let mut results: Vec<Option<Result<Response>>> = (0..requests.len()).map(|_| None).collect();
        let mut prepared: Vec<(usize, Prepared)> = Vec::new();
        for (i, r) in requests.iter().enumerate() {
            match self.pre.prepare(r, truncate) {
                Ok(p) => prepared.push((i, p)),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        // Longest first, so each batch pads little (stable: equal lengths keep input order).
        prepared.sort_by_key(|(_, p)| std::cmp::Reverse(p.max_len()));
        for chunk in prepared.chunks(batch_size.max(1)) {
            let refs: Vec<&Prepared> = chunk.iter().map(|(_, p)| p).collect();
            match self.engine.forward(&refs) {
                Ok(raws) => {
                    for ((i, p), raw) in chunk.iter().zip(raws) {
                        results[*i] = Some(self.pre.finish(p, raw));
                    }
                }
                Err(e) => {
                    for (i, _) in chunk {
                        results[*i] = Some(Err(crate::types::InferError::Model(e.to_string())));
                    }
                }
            }
        }
        results.into_iter().map(|r| r.expect("every request has a result")).collect()
    }
}
