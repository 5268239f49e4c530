//! Hugging Face model directories <-> [`DebertaModel`].
//!
//! Our module paths are the checkpoint names (docs/model.md, "Checkpoint names"), so loading is
//! this table of renames plus burn-store's PyTorch adapter (Linear weights transposed, LayerNorm
//! weight/bias <-> gamma/beta):
//!
//! | checkpoint key                                  | module path                          |
//! |-------------------------------------------------|--------------------------------------|
//! | `embeddings.*`, `encoder.*` (bare `DebertaV2Model`) | `deberta.embeddings.*`, `deberta.encoder.*` |
//! | `*.attention.self.*`                            | `*.attention.self_attn.*`            |
//! | `cls.predictions.transform.{dense,LayerNorm}.*` (legacy MLM) | `lm_predictions.lm_head.{dense,LayerNorm}.*` |
//! | `cls.predictions.bias`                          | `lm_predictions.lm_head.bias`        |
//! | `cls.predictions.decoder.*`                     | ignored: tied to the word embeddings |
//! | `deberta.embeddings.word_embeddings._weight`    | ignored: GDES delta, already merged into `weight` |
//! | `deberta.embeddings.position_embeddings.weight` | ignored unless the model uses absolute positions or the EMD |
//! | `deberta.embeddings.position_ids`               | ignored: a buffer old HF versions saved |
//! | `*.LayerNorm.{weight,bias}`                     | `*.LayerNorm.{gamma,beta}`           |

use crate::tensors::{read_model_dir, write_atomic, write_safetensors, HostTensor, TensorMap};
use crate::IoError;
use burn::module::ParamId;
use burn::prelude::*;
use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, PyTorchToBurnAdapter, TensorSnapshot};
use deberta_model::{DebertaConfig, DebertaModel, Head};
use std::path::{Path, PathBuf};

const BACKBONE: &str = "deberta.";

#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Use this head instead of the one `architectures` names.
    pub head: Option<Head>,
    /// Initialise head parameters the checkpoint lacks (HF-style), as when fine-tuning a
    /// pre-trained encoder with a new classifier. Missing backbone tensors are always an error.
    pub init_missing_head: bool,
    /// Quantise the encoder's Linear weights to int8 for CPU inference (docs/int8.md); the
    /// model then runs them in int8 on the Flex backend and is an error on others.
    pub int8: bool,
}

#[derive(Debug)]
pub struct LoadedModel<B: Backend> {
    pub config: DebertaConfig,
    pub model: DebertaModel<B>,
    pub weights_file: PathBuf,
    /// Head parameters that were freshly initialised (checkpoint names).
    pub initialised: Vec<String>,
    /// Checkpoint tensors that were dropped: tied copies, official extras, another head's weights.
    pub ignored: Vec<String>,
}

pub fn read_config(dir: &Path) -> Result<DebertaConfig, IoError> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| IoError::file(&path, e))?;
    DebertaConfig::from_json_str(&text).map_err(|e| IoError::Config { path, error: e })
}

/// The head a directory's config asks for: its `architectures`, else the bare encoder.
pub fn head_of(config: &DebertaConfig, dir: &Path) -> Result<Head, IoError> {
    match config.head_from_architectures() {
        Some(h) => Ok(h),
        None if config.architectures.is_empty() => Ok(Head::Base),
        None => Err(IoError::Config {
            path: dir.join("config.json"),
            error: deberta_model::ConfigError::Invalid {
                key: "architectures".into(),
                message: format!(
                    "no supported DeBERTa-v2 architecture in {:?} (supported: {})",
                    config.architectures,
                    Head::ALL.iter().map(|h| h.architecture()).collect::<Vec<_>>().join(", ")
                ),
            },
        }),
    }
}

enum Mapped {
    Path(String),
    /// Not a parameter of ours, with the reason.
    Ignore(&'static str),
}

/// Checkpoint key -> module path (the table above).
fn to_module_path(key: &str, has_position_table: bool) -> Mapped {
    let key = if key.starts_with("embeddings.") || key.starts_with("encoder.") {
        format!("{BACKBONE}{key}")
    } else {
        key.to_string()
    };
    match key.as_str() {
        "deberta.embeddings.word_embeddings._weight" => {
            return Mapped::Ignore("GDES delta (merged into weight)")
        }
        "deberta.embeddings.position_ids" => return Mapped::Ignore("buffer"),
        "deberta.embeddings.position_embeddings.weight" if !has_position_table => {
            return Mapped::Ignore("absolute positions unused by this model")
        }
        _ => {}
    }
    if key.starts_with("cls.predictions.decoder.") {
        return Mapped::Ignore("tied to the word embeddings");
    }
    let key = key
        .replace(".attention.self.", ".attention.self_attn.")
        .replace("cls.predictions.transform.", "lm_predictions.lm_head.")
        .replace("cls.predictions.bias", "lm_predictions.lm_head.bias");
    // burn names LayerNorm parameters gamma/beta; every DeBERTa norm is called `LayerNorm`.
    let key = match (key.strip_suffix("LayerNorm.weight"), key.strip_suffix("LayerNorm.bias")) {
        (Some(stem), _) => format!("{stem}LayerNorm.gamma"),
        (_, Some(stem)) => format!("{stem}LayerNorm.beta"),
        _ => key,
    };
    Mapped::Path(key)
}

/// Module path (PyTorch parameter names) -> checkpoint key, for saving and for messages.
fn to_checkpoint_key(path: &str, head: Head, legacy_mlm: bool) -> String {
    let mut key = path
        .replace(".attention.self_attn.", ".attention.self.")
        .replace(".gamma", ".weight")
        .replace(".beta", ".bias");
    if head == Head::MaskedLm && legacy_mlm {
        key = key
            .replace("lm_predictions.lm_head.bias", "cls.predictions.bias")
            .replace("lm_predictions.lm_head.", "cls.predictions.transform.");
    }
    if head == Head::Base {
        if let Some(rest) = key.strip_prefix(BACKBONE) {
            key = rest.to_string();
        }
    }
    key
}

fn snapshot(path: &str, t: HostTensor) -> TensorSnapshot {
    TensorSnapshot::from_data(
        t.to_burn(),
        path.split('.').map(str::to_string).collect(),
        Vec::new(),
        ParamId::new(),
    )
}

/// Compares the sizes `config` gives with the shapes of the checkpoint's embedding, first layer
/// and layer count, so a config that does not describe the weights is refused before a model of
/// its (possibly absurd) size is allocated.
fn check_config_shapes(
    config: &DebertaConfig,
    tensors: &TensorMap,
    config_path: &Path,
    weights_file: &Path,
) -> Result<(), IoError> {
    let get = |key: &str| {
        tensors.get(&format!("{BACKBONE}{key}")).or_else(|| tensors.get(key)).map(|t| t.shape.as_slice())
    };
    let mismatch = |key: &str, value: usize, found: String| IoError::Checkpoint {
        path: config_path.to_path_buf(),
        message: format!("`{key}` is {value} but {} has {found}", weights_file.display()),
    };
    // (tensor, how messages name it, config key, its value, the shape the config implies: one
    // number is the first dimension only, two are the whole shape).
    let (vocab, hidden, inter) = (config.vocab_size, config.hidden_size, config.intermediate_size);
    let checks = [
        ("embeddings.word_embeddings.weight", "word embeddings", "vocab_size", vocab, vec![vocab]),
        ("embeddings.LayerNorm.weight", "embeddings.LayerNorm", "hidden_size", hidden, vec![hidden]),
        (
            "encoder.layer.0.intermediate.dense.weight",
            "encoder.layer.0.intermediate.dense.weight",
            "intermediate_size/hidden_size",
            inter,
            vec![inter, hidden],
        ),
    ];
    for (key, what, config_key, value, expected) in checks {
        let Some(shape) = get(key) else { continue };
        let fits = if expected.len() == 1 { shape.first() == expected.first() } else { shape == expected };
        if !fits {
            let hint = if expected.len() > 1 { format!(" (expected {expected:?})") } else { String::new() };
            return Err(mismatch(config_key, value, format!("{what} of shape {shape:?}{hint}")));
        }
    }
    let layers = tensors
        .keys()
        .filter_map(|k| k.strip_prefix(BACKBONE).unwrap_or(k).strip_prefix("encoder.layer."))
        .filter_map(|rest| rest.split('.').next()?.parse::<usize>().ok())
        .max()
        .map(|i| i + 1);
    // More layers in the file than in the config is left to the per-tensor listing below.
    if let Some(layers) = layers {
        if config.num_hidden_layers > layers {
            return Err(mismatch("num_hidden_layers", config.num_hidden_layers, format!("{layers} layers")));
        }
    }
    Ok(())
}

/// Warns (naming the first) when the checkpoint holds NaN or infinite weights: the model loads,
/// but its outputs will not be finite.
fn warn_non_finite(tensors: &TensorMap, weights_file: &Path) {
    let bad: Vec<&String> =
        tensors.iter().filter(|(_, t)| t.data.iter().any(|v| !v.is_finite())).map(|(k, _)| k).collect();
    if let Some(first) = bad.first() {
        tracing::warn!(
            "{}: tensor `{first}` holds NaN or infinite values ({} tensor(s) in all): outputs will not be finite",
            weights_file.display(),
            bad.len()
        );
    }
}

/// Loads `config.json` and the weights of an HF directory into a model on `device`.
pub fn load_model<B: Backend>(
    dir: &Path,
    options: &LoadOptions,
    device: &B::Device,
) -> Result<LoadedModel<B>, IoError> {
    let config = read_config(dir)?;
    let file_head = head_of(&config, dir);
    let head = match options.head {
        Some(h) => h,
        None => file_head?,
    };
    config.check_head(head).map_err(|error| IoError::Config { path: dir.join("config.json"), error })?;
    let (weights_file, tensors) = read_model_dir(dir)?;
    // Before anything is allocated: the config must describe these weights, and fit in memory.
    check_config_shapes(&config, &tensors, &dir.join("config.json"), &weights_file)?;
    config
        .check_memory(head, 1.0)
        .map_err(|error| IoError::Config { path: dir.join("config.json"), error })?;
    warn_non_finite(&tensors, &weights_file);
    let mut model = DebertaModel::<B>::new(&config, head, device);
    let has_position_table = model.deberta.embeddings.position_embeddings.is_some();

    let mut snapshots = Vec::with_capacity(tensors.len());
    let mut ignored = Vec::new();
    let mut by_path = std::collections::BTreeMap::new();
    for (key, t) in tensors {
        match to_module_path(&key, has_position_table) {
            Mapped::Ignore(why) => ignored.push(format!("{key} ({why})")),
            Mapped::Path(p) => {
                if let Some(previous) = by_path.insert(p.clone(), key.clone()) {
                    return Err(IoError::Checkpoint {
                        path: weights_file,
                        message: format!("`{previous}` and `{key}` name the same parameter"),
                    });
                }
                snapshots.push(snapshot(&p, t));
            }
        }
    }

    let result = model.apply(snapshots, None, Some(Box::new(PyTorchToBurnAdapter)), true);
    let name = |p: &str| to_checkpoint_key(p, head, config.legacy);
    let problems: Vec<String> = result
        .errors
        .iter()
        .map(|e| {
            // Report shapes the way the checkpoint stores them, not burn's transposed layout.
            let msg = e.to_string();
            msg.replace(".self_attn.", ".self.")
        })
        .collect();
    if !problems.is_empty() {
        return Err(IoError::Checkpoint {
            path: weights_file,
            message: format!("tensors do not fit the config:\n  {}", problems.join("\n  ")),
        });
    }

    let mut unexpected = Vec::new();
    for path in &result.unused {
        let key = by_path.get(path).cloned().unwrap_or_else(|| path.clone());
        // The caller chose another head than the file's: its head weights are not ours to use.
        if options.head.is_some() && !path.starts_with(BACKBONE) {
            ignored.push(format!("{key} (weights of another head)"));
        } else {
            unexpected.push(key);
        }
    }
    let mut missing_backbone = Vec::new();
    let mut missing_head = Vec::new();
    for (path, _) in &result.missing {
        if path.starts_with(BACKBONE) {
            missing_backbone.push(name(path));
        } else {
            missing_head.push(name(path));
        }
    }
    let initialised = if options.init_missing_head { std::mem::take(&mut missing_head) } else { Vec::new() };
    if !unexpected.is_empty() || !missing_backbone.is_empty() || !missing_head.is_empty() {
        let mut message = String::new();
        let mut list = |what: &str, keys: &[String]| {
            if !keys.is_empty() {
                message.push_str(&format!("\n  {what} ({}): {}", keys.len(), keys.join(", ")));
            }
        };
        list("missing", &missing_backbone);
        list("missing head tensors (pass --init-missing-head to initialise them)", &missing_head);
        list("unexpected", &unexpected);
        return Err(IoError::Checkpoint {
            path: weights_file,
            message: format!("does not match a {} model:{message}", head.architecture()),
        });
    }
    ignored.sort();
    if options.int8 {
        model.quantize_int8()?;
    }
    Ok(LoadedModel { config, model, weights_file, initialised, ignored })
}

/// The model's parameters under their checkpoint names, in PyTorch layout.
pub fn checkpoint_tensors<B: Backend>(model: &DebertaModel<B>, config: &DebertaConfig) -> TensorMap {
    let head = model.head();
    model
        .collect(None, Some(Box::new(BurnToPyTorchAdapter)), true)
        .into_iter()
        .map(|s| {
            let data = s.to_data().expect("parameters are materialised");
            (to_checkpoint_key(&s.full_path(), head, config.legacy), HostTensor::from_burn(data))
        })
        .collect()
}

/// Saves an HF directory: `config.json` and `model.safetensors`, both written atomically.
pub fn save_model<B: Backend>(
    model: &DebertaModel<B>,
    config: &DebertaConfig,
    dir: &Path,
) -> Result<(), IoError> {
    std::fs::create_dir_all(dir).map_err(|e| IoError::file(dir, e))?;
    write_safetensors(&dir.join("model.safetensors"), &checkpoint_tensors(model, config))?;
    let json = serde_json::to_string_pretty(&config.to_json_value(model.head())).expect("JSON value");
    write_atomic(&dir.join("config.json"), format!("{json}\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_table() {
        let p = |k| match to_module_path(k, false) {
            Mapped::Path(p) => p,
            Mapped::Ignore(why) => format!("ignored: {why}"),
        };
        assert_eq!(
            p("encoder.layer.0.attention.self.query_proj.weight"),
            "deberta.encoder.layer.0.attention.self_attn.query_proj.weight"
        );
        assert_eq!(p("cls.predictions.transform.LayerNorm.bias"), "lm_predictions.lm_head.LayerNorm.beta");
        assert_eq!(p("cls.predictions.bias"), "lm_predictions.lm_head.bias");
        assert!(p("cls.predictions.decoder.weight").starts_with("ignored"));
        assert!(p("deberta.embeddings.word_embeddings._weight").starts_with("ignored"));
        assert!(p("deberta.embeddings.position_embeddings.weight").starts_with("ignored"));
        assert_eq!(
            to_checkpoint_key("lm_predictions.lm_head.LayerNorm.gamma", Head::MaskedLm, true),
            "cls.predictions.transform.LayerNorm.weight"
        );
        assert_eq!(
            to_checkpoint_key("lm_predictions.lm_head.bias", Head::MaskedLm, true),
            "cls.predictions.bias"
        );
        assert_eq!(
            to_checkpoint_key("deberta.encoder.layer.1.attention.self_attn.key_proj.bias", Head::Base, true),
            "encoder.layer.1.attention.self.key_proj.bias"
        );
    }
}
