//! Files in and out of deberta-rs: Hugging Face checkpoints (config.json, safetensors, sharded
//! safetensors, pytorch_model.bin) and the JSON token files the CLI reads.

pub mod checkpoint;
pub mod inputs;
pub mod tensors;
mod torch_storages;

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
    #[error("{dir}: another run is using this directory (it holds {dir}/.lock); wait for it to finish or choose another --out")]
    Locked { dir: PathBuf },
    #[error("int8 quantisation: {0}")]
    Int8(#[from] deberta_model::int8::Int8Error),
}

impl IoError {
    pub fn file(path: &Path, source: std::io::Error) -> Self {
        IoError::File { path: path.to_path_buf(), error: source }
    }
}

/// An advisory lock on a run directory (`DIR/.lock`), held until dropped, so that two runs never
/// write into the same directory at once. The operating system releases it when the process
/// exits, however it exits.
#[derive(Debug)]
pub struct DirLock {
    _file: std::fs::File,
}

/// Creates `dir` if needed and locks it; an error names the directory when another process
/// holds the lock.
pub fn lock_dir(dir: &Path) -> Result<DirLock, IoError> {
    std::fs::create_dir_all(dir).map_err(|e| IoError::file(dir, e))?;
    let path = dir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| IoError::file(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(DirLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(IoError::Locked { dir: dir.to_path_buf() }),
        Err(std::fs::TryLockError::Error(e)) => Err(IoError::file(&path, e)),
    }
}
