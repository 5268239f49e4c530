//! Inference pipelines for every DeBERTa task head, in stages a server can spread over threads:
//!
//! 1. [`Preprocessor::prepare`] (any thread): a [`Request`] becomes a [`Prepared`]: tokenized
//!    model rows (QA overflow windows, one NLI pair per zero-shot label, one row per choice).
//! 2. [`Engine::forward`] (the model's thread): many prepared requests in padded passes, giving
//!    one [`RawOutput`] each.
//! 3. [`Preprocessor::finish`] (any thread): the raw outputs become the [`Response`], with the
//!    semantics and JSON shapes of HF's pipelines.
//!
//! [`Pipeline`] runs all three, for the command line and tests.

mod engine;
mod pipeline;
mod post;
mod preprocess;
mod types;

pub use engine::Engine;
pub use pipeline::Pipeline;
pub use preprocess::{PipelineOptions, Prepared, Preprocessor, RawOutput, MASK};
pub use types::{
    Aggregation, Answer, Entity, InferError, LabelScore, MaskFill, Pooling, Request, Response, Result, Task,
    DEFAULT_HYPOTHESIS_TEMPLATE,
};
