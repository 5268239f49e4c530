//! The Hugging Face `config.json` of a DeBERTa-v2/v3 model (`model_type: "deberta-v2"`).
//!
//! Every switch that released checkpoints use is parsed into a typed field; the raw JSON object
//! is kept alongside so that saving writes back every key we do not model (`transformers_version`,
//! `label2id`, tokenizer hints, ...). Values we cannot honour are an error naming the key, never a
//! silent default.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
    #[error("config is not a JSON object")]
    NotAnObject,
    #[error("config JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The model would not fit in memory (see [`crate::memory`]).
    #[error("{0}")]
    TooLarge(String),
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.to_string(), message: message.into() }
}

/// Activation functions HF's `ACT2FN` offers that DeBERTa configs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Exact erf GELU (`"gelu"`), what every released DeBERTa uses.
    Gelu,
    /// tanh approximation (`"gelu_new"`, `"gelu_pytorch_tanh"`).
    GeluTanh,
    Relu,
    Tanh,
    /// `"silu"` / `"swish"`.
    Silu,
}

impl Activation {
    pub fn parse(key: &str, name: &str) -> Result<Self, ConfigError> {
        Ok(match name {
            "gelu" => Self::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Self::GeluTanh,
            "relu" => Self::Relu,
            "tanh" => Self::Tanh,
            "silu" | "swish" => Self::Silu,
            other => {
                return Err(invalid(
                    key,
                    format!(
                        "unsupported activation {other:?} (supported: gelu, gelu_new, \
                         gelu_pytorch_tanh, gelu_fast, relu, tanh, silu, swish)"
                    ),
                ))
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Gelu => "gelu",
            Self::GeluTanh => "gelu_new",
            Self::Relu => "relu",
            Self::Tanh => "tanh",
            Self::Silu => "silu",
        }
    }
}

/// Which task head sits on the encoder; chosen from `architectures` unless the caller overrides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Head {
    /// `DebertaV2Model`: the bare encoder.
    Base,
    /// `DebertaV2ForSequenceClassification` (1 label = regression).
    SequenceClassification,
    /// `DebertaV2ForMultipleChoice`.
    MultipleChoice,
    /// `DebertaV2ForTokenClassification`.
    TokenClassification,
    /// `DebertaV2ForQuestionAnswering`.
    QuestionAnswering,
    /// `DebertaV2ForMaskedLM`, tied MLM head on the last layer.
    MaskedLm,
    /// The ELECTRA discriminator: replaced-token detection (`mask_predictions.*`).
    ReplacedTokenDetection,
    /// The DeBERTaV3 generator: MLM through the Enhanced Mask Decoder.
    EnhancedMaskDecoderLm,
}

impl Head {
    pub const ALL: [Head; 8] = [
        Head::Base,
        Head::SequenceClassification,
        Head::MultipleChoice,
        Head::TokenClassification,
        Head::QuestionAnswering,
        Head::MaskedLm,
        Head::ReplacedTokenDetection,
        Head::EnhancedMaskDecoderLm,
    ];

    /// The `architectures` entry HF writes for this head. The two pre-training heads have no HF
    /// class; we name them like the official code's models so the file says what it holds.
    pub fn architecture(self) -> &'static str {
        match self {
            Head::Base => "DebertaV2Model",
            Head::SequenceClassification => "DebertaV2ForSequenceClassification",
            Head::MultipleChoice => "DebertaV2ForMultipleChoice",
            Head::TokenClassification => "DebertaV2ForTokenClassification",
            Head::QuestionAnswering => "DebertaV2ForQuestionAnswering",
            Head::MaskedLm => "DebertaV2ForMaskedLM",
            Head::ReplacedTokenDetection => "DebertaV2ForReplacedTokenDetection",
            Head::EnhancedMaskDecoderLm => "DebertaV2ForEnhancedMaskedLM",
        }
    }

    pub fn from_architecture(name: &str) -> Option<Head> {
        Self::ALL.into_iter().find(|h| h.architecture() == name)
    }
}

/// Which relative attention terms are added to the content-to-content score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PosAttType {
    pub c2p: bool,
    pub p2c: bool,
}

impl PosAttType {
    pub fn count(self) -> usize {
        self.c2p as usize + self.p2c as usize
    }
}

#[derive(Debug, Clone)]
pub struct DebertaConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub attention_head_size: usize,
    pub intermediate_size: usize,
    pub hidden_act: Activation,
    pub hidden_dropout_prob: f64,
    pub attention_probs_dropout_prob: f64,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub initializer_range: f64,
    pub layer_norm_eps: f64,
    pub relative_attention: bool,
    /// Raw value; `-1` (or any value < 1) means `max_position_embeddings`.
    pub max_relative_positions: i64,
    /// `<= 0` means plain clamped relative positions (no log buckets).
    pub position_buckets: i64,
    pub pad_token_id: usize,
    pub position_biased_input: bool,
    pub pos_att_type: PosAttType,
    pub norm_rel_ebd_layer_norm: bool,
    pub share_att_key: bool,
    pub embedding_size: usize,
    pub conv_kernel_size: usize,
    pub conv_groups: usize,
    pub conv_act: Activation,
    pub pooler_dropout: f64,
    pub pooler_hidden_act: Activation,
    pub pooler_hidden_size: usize,
    /// `cls_dropout` when given, else `hidden_dropout_prob` (HF's rule).
    pub cls_dropout: f64,
    /// MLM head layout: `true` = `cls.predictions.*`, `false` = `lm_predictions.lm_head.*`.
    pub legacy: bool,
    pub num_labels: usize,
    pub id2label: BTreeMap<usize, String>,
    pub architectures: Vec<String>,
    /// Every key of the original file, for writing it back.
    pub raw: Map<String, Value>,
}

/// Typed reads from the raw JSON object with errors that name the key.
struct Reader<'a>(&'a Map<String, Value>);

impl Reader<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }
    fn int(&self, key: &str) -> Result<Option<i64>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_i64() {
                Some(i) => Ok(Some(i)),
                // Some exporters write integral values as floats (`512.0`).
                None => match v.as_f64() {
                    Some(f) if f.fract() == 0.0 => Ok(Some(f as i64)),
                    _ => Err(invalid(key, format!("expected an integer, found {v}"))),
                },
            },
        }
    }
    fn usize(&self, key: &str, default: Option<usize>) -> Result<usize, ConfigError> {
        match self.int(key)? {
            Some(i) if i >= 0 => Ok(i as usize),
            Some(i) => Err(invalid(key, format!("must not be negative, found {i}"))),
            None => default.ok_or_else(|| invalid(key, "missing (required)")),
        }
    }
    fn float(&self, key: &str, default: f64) -> Result<f64, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| invalid(key, format!("expected a number, found {v}"))),
        }
    }
    fn prob(&self, key: &str, default: f64) -> Result<f64, ConfigError> {
        let p = self.float(key, default)?;
        if (0.0..1.0).contains(&p) {
            Ok(p)
        } else {
            Err(invalid(key, format!("a dropout probability must be in [0, 1), found {p}")))
        }
    }
    fn bool(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| invalid(key, format!("expected true or false, found {v}"))),
        }
    }
    fn str(&self, key: &str) -> Result<Option<&str>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => {
                v.as_str().map(Some).ok_or_else(|| invalid(key, format!("expected a string, found {v}")))
            }
        }
    }
    fn act(&self, key: &str, default: Activation) -> Result<Activation, ConfigError> {
        match self.str(key)? {
            None => Ok(default),
            Some(s) => Activation::parse(key, s),
        }
    }
}

impl DebertaConfig {
    pub fn from_json_str(text: &str) -> Result<Self, ConfigError> {
        let value: Value = serde_json::from_str(text)?;
        match value {
            Value::Object(map) => Self::from_map(map),
            _ => Err(ConfigError::NotAnObject),
        }
    }

    pub fn from_map(raw: Map<String, Value>) -> Result<Self, ConfigError> {
        let r = Reader(&raw);
        if let Some(mt) = r.str("model_type")? {
            if mt != "deberta-v2" && mt != "deberta_v2" {
                return Err(invalid(
                    "model_type",
                    format!("expected \"deberta-v2\", found {mt:?} (DeBERTa v1 is not supported)"),
                ));
            }
        }
        // Defaults are DebertaV2Config's.
        let hidden_size = r.usize("hidden_size", Some(1536))?;
        let num_attention_heads = r.usize("num_attention_heads", Some(24))?;
        if num_attention_heads == 0 {
            return Err(invalid("num_attention_heads", "must be positive"));
        }
        if hidden_size == 0 || hidden_size % num_attention_heads != 0 {
            return Err(invalid(
                "hidden_size",
                format!(
                    "{hidden_size} is not a positive multiple of num_attention_heads ({num_attention_heads})"
                ),
            ));
        }
        let attention_head_size = r.usize("attention_head_size", Some(hidden_size / num_attention_heads))?;
        if attention_head_size == 0 {
            return Err(invalid("attention_head_size", "must be positive"));
        }

        let pos_att_type = match r.get("pos_att_type") {
            None => PosAttType::default(),
            Some(v) => {
                let items: Vec<String> = match v {
                    Value::String(s) => s.to_lowercase().split('|').map(|x| x.trim().to_string()).collect(),
                    Value::Array(a) => a
                        .iter()
                        .map(|x| {
                            x.as_str().map(|s| s.trim().to_lowercase()).ok_or_else(|| {
                                invalid("pos_att_type", format!("expected strings, found {x}"))
                            })
                        })
                        .collect::<Result<_, _>>()?,
                    other => {
                        return Err(invalid(
                            "pos_att_type",
                            format!("expected a list or a \"p2c|c2p\" string, found {other}"),
                        ))
                    }
                };
                let mut t = PosAttType::default();
                for item in items.iter().filter(|s| !s.is_empty()) {
                    match item.as_str() {
                        "c2p" => t.c2p = true,
                        "p2c" => t.p2c = true,
                        other => {
                            return Err(invalid(
                                "pos_att_type",
                                format!("unsupported attention type {other:?} (supported: c2p, p2c)"),
                            ))
                        }
                    }
                }
                t
            }
        };

        let norm_rel_ebd_layer_norm = match r.str("norm_rel_ebd")? {
            None => false,
            Some(s) => {
                let mut ln = false;
                for part in s.to_lowercase().split('|').map(str::trim) {
                    match part {
                        "layer_norm" => ln = true,
                        "none" | "" => {}
                        other => {
                            return Err(invalid(
                                "norm_rel_ebd",
                                format!("unsupported value {other:?} (supported: layer_norm, none)"),
                            ))
                        }
                    }
                }
                ln
            }
        };

        let conv_kernel_size = r.usize("conv_kernel_size", Some(0))?;
        let conv_groups = r.usize("conv_groups", Some(1))?;
        if conv_kernel_size > 0 {
            if conv_kernel_size % 2 == 0 {
                return Err(invalid(
                    "conv_kernel_size",
                    format!("{conv_kernel_size} is even; HF pads (k-1)/2 and would change the length"),
                ));
            }
            if conv_groups == 0 || hidden_size % conv_groups != 0 {
                return Err(invalid("conv_groups", format!("{conv_groups} does not divide hidden_size")));
            }
        }

        let hidden_dropout_prob = r.prob("hidden_dropout_prob", 0.1)?;
        let cls_dropout = r.prob("cls_dropout", hidden_dropout_prob)?;

        let mut id2label = BTreeMap::new();
        if let Some(v) = r.get("id2label") {
            let obj =
                v.as_object().ok_or_else(|| invalid("id2label", format!("expected an object, found {v}")))?;
            for (k, name) in obj {
                let id: usize =
                    k.parse().map_err(|_| invalid("id2label", format!("key {k:?} is not an integer")))?;
                let name = name
                    .as_str()
                    .ok_or_else(|| invalid("id2label", format!("label {name} is not a string")))?;
                id2label.insert(id, name.to_string());
            }
        }
        // HF's PretrainedConfig: `num_labels` wins when given, else the size of `id2label`, else 2.
        let num_labels = match r.int("num_labels")? {
            Some(n) if n >= 1 => n as usize,
            Some(n) => return Err(invalid("num_labels", format!("must be at least 1, found {n}"))),
            None if !id2label.is_empty() => id2label.len(),
            None => 2,
        };

        let architectures = match r.get("architectures") {
            None => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| invalid("architectures", format!("expected strings, found {x}")))
                })
                .collect::<Result<_, _>>()?,
            Some(other) => return Err(invalid("architectures", format!("expected a list, found {other}"))),
        };

        let vocab_size = r.usize("vocab_size", Some(128100))?;
        let pad_token_id = r.usize("pad_token_id", Some(0))?;
        if pad_token_id >= vocab_size {
            return Err(invalid(
                "pad_token_id",
                format!("{pad_token_id} is not below vocab_size {vocab_size}"),
            ));
        }
        let max_position_embeddings = r.usize("max_position_embeddings", Some(512))?;
        let max_relative_positions = r.int("max_relative_positions")?.unwrap_or(-1);
        let position_buckets = r.int("position_buckets")?.unwrap_or(-1);
        let relative_attention = r.bool("relative_attention", false)?;
        let config = DebertaConfig {
            vocab_size,
            hidden_size,
            num_hidden_layers: r.usize("num_hidden_layers", Some(24))?,
            num_attention_heads,
            attention_head_size,
            intermediate_size: r.usize("intermediate_size", Some(6144))?,
            hidden_act: r.act("hidden_act", Activation::Gelu)?,
            hidden_dropout_prob,
            attention_probs_dropout_prob: r.prob("attention_probs_dropout_prob", 0.1)?,
            max_position_embeddings,
            type_vocab_size: r.usize("type_vocab_size", Some(0))?,
            initializer_range: r.float("initializer_range", 0.02)?,
            layer_norm_eps: r.float("layer_norm_eps", 1e-7)?,
            relative_attention,
            max_relative_positions,
            position_buckets,
            pad_token_id,
            position_biased_input: r.bool("position_biased_input", true)?,
            pos_att_type,
            norm_rel_ebd_layer_norm,
            share_att_key: r.bool("share_att_key", false)?,
            embedding_size: r.usize("embedding_size", Some(hidden_size))?,
            conv_kernel_size,
            conv_groups,
            conv_act: r.act("conv_act", Activation::Tanh)?,
            pooler_dropout: r.prob("pooler_dropout", 0.0)?,
            pooler_hidden_act: r.act("pooler_hidden_act", Activation::Gelu)?,
            pooler_hidden_size: r.usize("pooler_hidden_size", Some(hidden_size))?,
            cls_dropout,
            legacy: r.bool("legacy", true)?,
            num_labels,
            id2label,
            architectures,
            raw,
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.pooler_hidden_size != self.hidden_size {
            // HF's ContextPooler maps pooler_hidden_size -> pooler_hidden_size but feeds it the
            // hidden state and reports hidden_size as its output width: only equal sizes work.
            return Err(invalid(
                "pooler_hidden_size",
                format!("{} differs from hidden_size {}", self.pooler_hidden_size, self.hidden_size),
            ));
        }
        if self.relative_attention && self.pos_att_type.count() > 0 && self.rel_span() == 0 {
            return Err(invalid("max_position_embeddings", "relative attention needs a positive span"));
        }
        if self.num_hidden_layers == 0 {
            return Err(invalid("num_hidden_layers", "must be positive"));
        }
        if self.layer_norm_eps.is_nan() || self.layer_norm_eps <= 0.0 {
            return Err(invalid("layer_norm_eps", "must be positive"));
        }
        Ok(())
    }

    /// Checks that `head` can sit on this config.
    pub fn check_head(&self, head: Head) -> Result<(), ConfigError> {
        if head == Head::EnhancedMaskDecoderLm && self.num_hidden_layers < 2 {
            // The EMD reads the second-to-last layer's output and reruns the last layer on it.
            return Err(invalid(
                "num_hidden_layers",
                format!(
                    "{}: the Enhanced Mask Decoder needs at least 2 layers (it reads the second-to-last layer)",
                    self.num_hidden_layers
                ),
            ));
        }
        if head == Head::EnhancedMaskDecoderLm && self.embedding_size != self.hidden_size {
            // The EMD adds absolute position embeddings (embedding_size) to hidden states.
            return Err(invalid(
                "embedding_size",
                format!(
                    "{} != hidden_size {}: the Enhanced Mask Decoder adds position embeddings to hidden states",
                    self.embedding_size, self.hidden_size
                ),
            ));
        }
        Ok(())
    }

    /// Refuses a model whose parameters (times `copies`: 1 to run it, 4 to train it with Adam:
    /// weights, gradients, two moments) would not fit in memory, before anything is allocated.
    pub fn check_memory(&self, head: Head, copies: f64) -> Result<(), ConfigError> {
        let n = crate::memory::parameter_count(self, head);
        crate::memory::check_fits(
            &format!(
                "a model of vocab_size {}, hidden_size {}, num_hidden_layers {} ({n:.3e} parameters{})",
                self.vocab_size,
                self.hidden_size,
                self.num_hidden_layers,
                if copies > 1.0 { ", with gradients and optimiser state" } else { "" }
            ),
            4.0 * n * copies,
        )
        .map_err(ConfigError::TooLarge)
    }

    /// Refuses a batch of `rows` x `len` tokens whose activations would not fit in memory.
    pub fn check_batch_memory(&self, rows: usize, len: usize, training: bool) -> Result<(), ConfigError> {
        crate::memory::check_fits(
            &format!("a batch of {rows} row(s) x {len} tokens"),
            crate::memory::activation_bytes(self, rows, len, training),
        )
        .map_err(ConfigError::TooLarge)
    }

    /// `max_relative_positions` with HF's `< 1 -> max_position_embeddings` rule.
    pub fn max_relative_positions(&self) -> usize {
        if self.max_relative_positions < 1 {
            self.max_position_embeddings
        } else {
            self.max_relative_positions as usize
        }
    }

    /// Half the number of relative embedding rows (`att_span` / `pos_ebd_size` in HF).
    pub fn rel_span(&self) -> usize {
        if self.position_buckets > 0 {
            self.position_buckets as usize
        } else {
            self.max_relative_positions()
        }
    }

    pub fn all_head_size(&self) -> usize {
        self.num_attention_heads * self.attention_head_size
    }

    /// The head named by `architectures`, if any.
    pub fn head_from_architectures(&self) -> Option<Head> {
        self.architectures.iter().find_map(|a| Head::from_architecture(a))
    }

    /// Longest input the model accepts: absolute position embeddings bound it; a purely relative
    /// model (V3) accepts any length, positions beyond the table clamp to its edge rows.
    pub fn max_sequence_length(&self, head: Head) -> Option<usize> {
        if self.position_biased_input || head == Head::EnhancedMaskDecoderLm {
            Some(self.max_position_embeddings)
        } else {
            None
        }
    }

    /// The JSON to write next to saved weights: the original keys, with `architectures` (and, for
    /// an MLM head, `legacy`) set to what the weights hold.
    pub fn to_json_value(&self, head: Head) -> Value {
        let mut raw = self.raw.clone();
        raw.insert("model_type".into(), Value::from("deberta-v2"));
        raw.insert("architectures".into(), Value::from(vec![head.architecture()]));
        raw.entry("pad_token_id").or_insert(Value::from(self.pad_token_id));
        if head == Head::MaskedLm {
            raw.insert("legacy".into(), Value::from(self.legacy));
        }
        if matches!(head, Head::SequenceClassification | Head::TokenClassification | Head::QuestionAnswering)
            && !raw.contains_key("id2label")
        {
            let labels: Map<String, Value> =
                (0..self.num_labels).map(|i| (i.to_string(), Value::from(format!("LABEL_{i}")))).collect();
            let label2id: Map<String, Value> =
                (0..self.num_labels).map(|i| (format!("LABEL_{i}"), Value::from(i))).collect();
            raw.insert("id2label".into(), Value::Object(labels));
            raw.insert("label2id".into(), Value::Object(label2id));
        }
        Value::Object(raw)
    }
}

/// The released DeBERTa-V3 shapes (xsmall ... large) as HF config JSON, plus a `tiny` one for tests and demos.
/// Returns `None` for an unknown name.
pub fn preset_json(name: &str) -> Option<Value> {
    let (hidden, layers, heads, intermediate) = match name {
        "tiny" => (128, 2, 4, 512),
        "xsmall" => (384, 12, 6, 1536),
        "small" => (768, 6, 12, 3072),
        "base" => (768, 12, 12, 3072),
        "large" => (1024, 24, 16, 4096),
        _ => return None,
    };
    Some(serde_json::json!({
        "model_type": "deberta-v2",
        "vocab_size": 128100,
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": intermediate,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": 512,
        "type_vocab_size": 0,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-7,
        "relative_attention": true,
        "max_relative_positions": -1,
        "position_buckets": 256,
        "norm_rel_ebd": "layer_norm",
        "share_att_key": true,
        "pos_att_type": ["p2c", "c2p"],
        "position_biased_input": false,
        "pad_token_id": 0,
        "pooler_dropout": 0,
        "pooler_hidden_act": "gelu",
        "pooler_hidden_size": hidden,
    }))
}

pub const PRESETS: [&str; 5] = ["tiny", "xsmall", "small", "base", "large"];

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<DebertaConfig, ConfigError> {
        DebertaConfig::from_json_str(s)
    }

    #[test]
    fn v3_base_config() {
        let c = parse(
            r#"{"model_type":"deberta-v2","attention_probs_dropout_prob":0.1,"hidden_act":"gelu",
            "hidden_dropout_prob":0.1,"hidden_size":768,"initializer_range":0.02,
            "intermediate_size":3072,"max_position_embeddings":512,"relative_attention":true,
            "position_buckets":256,"norm_rel_ebd":"layer_norm","share_att_key":true,
            "pos_att_type":"p2c|c2p","layer_norm_eps":1e-7,"max_relative_positions":-1,
            "position_biased_input":false,"num_attention_heads":12,"num_hidden_layers":12,
            "type_vocab_size":0,"vocab_size":128100}"#,
        )
        .unwrap();
        assert_eq!(c.pos_att_type, PosAttType { c2p: true, p2c: true });
        assert_eq!(c.rel_span(), 256);
        assert_eq!(c.max_relative_positions(), 512);
        assert_eq!(c.pad_token_id, 0);
        assert!(c.norm_rel_ebd_layer_norm && c.share_att_key && !c.position_biased_input);
        assert_eq!(c.attention_head_size, 64);
        assert_eq!(c.max_sequence_length(Head::Base), None);
    }

    #[test]
    fn list_pos_att_type_and_no_buckets() {
        let c = parse(r#"{"hidden_size":8,"num_attention_heads":2,"pos_att_type":["c2p"],"relative_attention":true,"max_relative_positions":16}"#).unwrap();
        assert_eq!(c.pos_att_type, PosAttType { c2p: true, p2c: false });
        assert_eq!(c.rel_span(), 16);
    }

    #[test]
    fn unsupported_values_name_the_key() {
        let cases = [
            (r#"{"hidden_size":8,"num_attention_heads":2,"pos_att_type":["p2p"]}"#, "pos_att_type"),
            (r#"{"hidden_size":8,"num_attention_heads":2,"hidden_act":"mish"}"#, "hidden_act"),
            (r#"{"hidden_size":8,"num_attention_heads":3}"#, "hidden_size"),
            (r#"{"hidden_size":8,"num_attention_heads":2,"norm_rel_ebd":"rms"}"#, "norm_rel_ebd"),
            (r#"{"hidden_size":8,"num_attention_heads":2,"vocab_size":"x"}"#, "vocab_size"),
            (r#"{"model_type":"deberta","hidden_size":8,"num_attention_heads":2}"#, "model_type"),
            (r#"{"hidden_size":8,"num_attention_heads":2,"conv_kernel_size":2}"#, "conv_kernel_size"),
            (r#"{"hidden_size":8,"num_attention_heads":2,"hidden_dropout_prob":1.5}"#, "hidden_dropout_prob"),
        ];
        for (json, key) in cases {
            let err = parse(json).unwrap_err().to_string();
            assert!(err.contains(&format!("`{key}`")), "{json}: {err}");
        }
    }

    #[test]
    fn labels_and_architectures() {
        let c = parse(r#"{"hidden_size":8,"num_attention_heads":2,"id2label":{"0":"neg","1":"neu","2":"pos"},"architectures":["DebertaV2ForSequenceClassification"]}"#).unwrap();
        assert_eq!(c.num_labels, 3);
        assert_eq!(c.head_from_architectures(), Some(Head::SequenceClassification));
        let c = parse(r#"{"hidden_size":8,"num_attention_heads":2,"num_labels":1}"#).unwrap();
        assert_eq!(c.num_labels, 1);
        assert_eq!(c.head_from_architectures(), None);
    }
}
