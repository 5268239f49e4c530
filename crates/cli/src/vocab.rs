//! The tokenizer that goes with a model: finding it, checking it fits the model's embedding, and
//! the files that ship it beside the weights.

use anyhow::{bail, Context, Result};
use deberta_model::DebertaConfig;
use deberta_tokenizer::{DebertaTokenizer, TOKENIZER_CONFIG};
use std::fmt::Display;
use std::path::Path;

/// The tokenizer: `--tokenizer`, else the model directory's.
pub fn tokenizer(flag: Option<&Path>, model: &Path) -> Result<DebertaTokenizer> {
    let path = flag.unwrap_or(model);
    DebertaTokenizer::from_path(path).with_context(|| {
        if flag.is_none() {
            format!("no tokenizer in {} (pass --tokenizer spm.model)", model.display())
        } else {
            format!("loading the tokenizer {}", path.display())
        }
    })
}

/// The tokenizer's files, to ship with a fine-tuned model: the model file as `spm.model` (or
/// `tokenizer.json`) and `tokenizer_config.json` (copied when next to it, else written).
pub fn tokenizer_files(tok: &DebertaTokenizer) -> Result<Vec<(String, Vec<u8>)>> {
    let source = tok.source();
    let bytes = std::fs::read(source).with_context(|| format!("reading {}", source.display()))?;
    let name = if source.extension().is_some_and(|e| e == "json") { "tokenizer.json" } else { "spm.model" };
    let mut files = vec![(name.to_string(), bytes)];
    // A config next to the tokenizer may hold keys of its own (model_max_length, ...): keep it.
    let config = source.with_file_name(TOKENIZER_CONFIG);
    let config_bytes = std::fs::read(&config).unwrap_or_else(|_| tok.tokenizer_config_json().into_bytes());
    files.push((TOKENIZER_CONFIG.into(), config_bytes));
    Ok(files)
}

/// Fails unless every token id fits the model's embedding; `model` names where the config came
/// from (a model directory, a config file, a preset).
pub fn check_vocab(config: &DebertaConfig, tok: &DebertaTokenizer, model: impl Display) -> Result<()> {
    if tok.vocab_size() > config.vocab_size {
        bail!(
            "{model}: vocab_size {} is smaller than the tokenizer's {} ids ({}): wrong --tokenizer?",
            config.vocab_size,
            tok.vocab_size(),
            tok.source().display()
        );
    }
    Ok(())
}
