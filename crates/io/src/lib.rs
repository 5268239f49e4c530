//! Files in and out of deberta-rs: Hugging Face checkpoints (config.json, safetensors, sharded
//! safetensors, pytorch_model.bin) and the JSON token files the CLI reads.

pub mod checkpoint;
pub mod inputs;
pub mod tensors;

pub use checkpoint::{load_model, read_config, save_model, LoadOptions, LoadedModel};
pub use tensors::{read_model_dir, read_safetensors, write_safetensors, HostTensor, TensorMap};

use std::path::{Path, PathBuf};

/// A forward's outputs under HF's names: `last_hidden_state` and the head's `logits` (QA:
/// `start_logits`, `end_logits`).
pub fn output_tensors<B: burn::prelude::Backend>(out: deberta_model::ModelOutput<B>) -> TensorMap {
    let mut tensors = TensorMap::new();
    tensors.insert("last_hidden_state".into(), HostTensor::from_burn(out.last_hidden_state().into_data()));
    if let Some(logits) = &out.logits {
        tensors.insert("logits".into(), HostTensor::from_burn(logits.to_data()));
    }
    if let Some(t) = out.start_logits {
        tensors.insert("start_logits".into(), HostTensor::from_burn(t.into_data()));
    }
    if let Some(t) = out.end_logits {
        tensors.insert("end_logits".into(), HostTensor::from_burn(t.into_data()));
    }
    tensors
}

/// Every error names the file it is about.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("{path}: {error}")]
    File { path: PathBuf, error: std::io::Error },
    #[error("{path}: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("{path}: tensor `{name}`: {message}")]
    Tensor { path: PathBuf, name: String, message: String },
    #[error("{path}: {error}")]
    Config { path: PathBuf, error: deberta_model::ConfigError },
    #[error("{path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    #[error("{dir}: no weights (looked for model.safetensors, model.safetensors.index.json, pytorch_model.bin, pytorch_model.bin.index.json)")]
    NoWeights { dir: PathBuf },
    #[error("{path}: {message}")]
    Input { path: PathBuf, message: String },
}

impl IoError {
    pub fn file(path: &Path, source: std::io::Error) -> Self {
        IoError::File { path: path.to_path_buf(), error: source }
    }
}
