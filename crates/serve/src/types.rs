//! The JSON bodies of the routes: TEI's shapes for its routes, HF pipelines' parameter names for
//! ours, OpenAI's for `/v1/embeddings`.

use deberta_infer::Aggregation;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::fmt;
use utoipa::ToSchema;

fn yes() -> bool {
    true
}

/// `"text"` or `["text", ...]`.
#[derive(Debug, Clone, ToSchema)]
#[schema(example = json!("What is Deep Learning?"))]
pub enum Input {
    /// One text.
    #[schema(value_type = String)]
    Single(String),
    /// A batch of texts.
    #[schema(value_type = Vec<String>)]
    Batch(Vec<String>),
}

impl Input {
    /// The texts, and whether the client sent a batch (the answer is then a list).
    pub fn into_parts(self) -> (Vec<String>, bool) {
        match self {
            Input::Single(s) => (vec![s], false),
            Input::Batch(v) => (v, true),
        }
    }
}

impl<'de> Deserialize<'de> for Input {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Input;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Input, E> {
                Ok(Input::Single(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Input, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(Input::Batch(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// `/predict`'s `inputs`: `"text"`, a pair `["text", "pair"]`, or a batch of singles and pairs
/// `[["text"], ["text", "pair"], ...]` (TEI's shape).
#[derive(Debug, Clone, ToSchema)]
#[schema(example = json!([["I like you."], ["A man eats.", "Someone eats."]]))]
pub enum PredictInput {
    #[schema(value_type = String)]
    Single(String),
    #[schema(value_type = Vec<String>)]
    Pair(String, String),
    #[schema(value_type = Vec<Vec<String>>)]
    Batch(Vec<(String, Option<String>)>),
}

impl PredictInput {
    pub fn into_parts(self) -> (Vec<(String, Option<String>)>, bool) {
        match self {
            PredictInput::Single(a) => (vec![(a, None)], false),
            PredictInput::Pair(a, b) => (vec![(a, Some(b))], false),
            PredictInput::Batch(v) => (v, true),
        }
    }
}

impl<'de> Deserialize<'de> for PredictInput {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Item {
            Text(String),
            List(Vec<String>),
        }
        struct V;
        const EXPECTING: &str =
            "a string, a pair of strings [string, string] or a batch [[string], [string, string], ...]";
        fn sequence<E: de::Error>(mut v: Vec<String>) -> Result<(String, Option<String>), E> {
            match v.len() {
                1 => Ok((v.remove(0), None)),
                2 => {
                    let b = v.pop();
                    Ok((v.remove(0), b))
                }
                n => Err(E::invalid_length(n, &"a batch item of 1 or 2 strings")),
            }
        }
        impl<'de> Visitor<'de> for V {
            type Value = PredictInput;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(EXPECTING)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PredictInput, E> {
                Ok(PredictInput::Single(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PredictInput, A::Error> {
                match seq.next_element::<Item>()? {
                    None => Err(de::Error::invalid_length(0, &EXPECTING)),
                    Some(Item::Text(a)) => {
                        let b: Option<String> = seq.next_element()?;
                        if seq.next_element::<de::IgnoredAny>()?.is_some() {
                            return Err(de::Error::invalid_length(3, &"a pair of 2 strings"));
                        }
                        Ok(match b {
                            Some(b) => PredictInput::Pair(a, b),
                            None => PredictInput::Single(a),
                        })
                    }
                    Some(Item::List(first)) => {
                        let mut batch = vec![sequence(first)?];
                        while let Some(v) = seq.next_element::<Vec<String>>()? {
                            batch.push(sequence(v)?);
                        }
                        Ok(PredictInput::Batch(batch))
                    }
                }
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PredictRequest {
    pub inputs: PredictInput,
    /// Cut inputs longer than the model takes instead of refusing them (413).
    #[serde(default)]
    pub truncate: bool,
    /// Logits instead of probabilities (for a softmax head: log-probabilities, the logits
    /// shifted so that their log-sum-exp is 0).
    #[serde(default)]
    pub raw_scores: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Prediction {
    #[schema(example = 0.98)]
    pub score: f64,
    #[schema(example = "positive")]
    pub label: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RerankRequest {
    #[schema(example = "What is Deep Learning?")]
    pub query: String,
    #[schema(example = json!(["Deep Learning is a kind of machine learning.", "Cheese is made from milk."]))]
    pub texts: Vec<String>,
    #[serde(default)]
    pub truncate: bool,
    /// The logit of the relevant class instead of its probability.
    #[serde(default)]
    pub raw_scores: bool,
    /// Echo each text in its rank.
    #[serde(default)]
    pub return_text: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Rank {
    /// The text's position in `texts`.
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    pub score: f64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbedRequest {
    pub inputs: Input,
    /// Scale each vector to unit length.
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub normalize: bool,
    #[serde(default)]
    pub truncate: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct OpenAiEmbeddingRequest {
    pub input: Input,
    /// Any name; answered with the served model's.
    #[serde(default)]
    pub model: Option<String>,
    /// `float` (default) or `base64` (little-endian f32 bytes, as the `openai` client asks for).
    #[serde(default)]
    pub encoding_format: Option<String>,
    /// Must equal the model's hidden size when given.
    #[serde(default)]
    pub dimensions: Option<usize>,
    #[serde(default)]
    pub user: Option<String>,
}

/// A vector as floats, or as base64 of little-endian f32 bytes.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingData {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiEmbedding {
    #[schema(example = "embedding")]
    pub object: &'static str,
    pub embedding: EmbeddingData,
    pub index: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiUsage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiEmbeddingResponse {
    #[schema(example = "list")]
    pub object: &'static str,
    pub data: Vec<OpenAiEmbedding>,
    pub model: String,
    pub usage: OpenAiUsage,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenizeRequest {
    pub inputs: Input,
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub add_special_tokens: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SimpleToken {
    pub id: u32,
    /// The text the token covers (the token itself for special tokens).
    pub text: String,
    pub special: bool,
    /// Character offsets into the input, end exclusive; null for special tokens.
    pub start: Option<usize>,
    pub stop: Option<usize>,
}

/// `[id, ...]` or `[[id, ...], ...]`.
#[derive(Debug, Clone, ToSchema)]
pub enum Ids {
    #[schema(value_type = Vec<u32>)]
    Single(Vec<u32>),
    #[schema(value_type = Vec<Vec<u32>>)]
    Batch(Vec<Vec<u32>>),
}

impl<'de> Deserialize<'de> for Ids {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Item {
            Id(u32),
            List(Vec<u32>),
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ids;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of token ids (unsigned integers) or a list of such lists")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Ids, A::Error> {
                let mut single = Vec::new();
                let mut batch = Vec::new();
                while let Some(item) = seq.next_element::<Item>()? {
                    match item {
                        Item::Id(i) if batch.is_empty() => single.push(i),
                        Item::List(l) if single.is_empty() => batch.push(l),
                        _ => return Err(de::Error::custom("mixes ids and lists of ids")),
                    }
                }
                Ok(if batch.is_empty() { Ids::Single(single) } else { Ids::Batch(batch) })
            }
        }
        d.deserialize_seq(V)
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecodeRequest {
    pub ids: Ids,
    /// Drop `[CLS]`, `[SEP]`, `[PAD]` and `[MASK]`.
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub skip_special_tokens: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenClassificationRequest {
    pub inputs: Input,
    /// `none` (one result per token), `simple` (adjacent tokens of one entity merged) or
    /// `first` (words take their first token's label, then merged).
    #[serde(default)]
    #[schema(value_type = String, default = "none")]
    pub aggregation_strategy: Aggregation,
    #[serde(default)]
    pub truncate: bool,
}

fn one() -> usize {
    1
}
fn fifteen() -> usize {
    15
}
fn five() -> usize {
    5
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuestionAnsweringRequest {
    pub question: String,
    /// Any length: a long context is read in overlapping windows.
    pub context: String,
    #[serde(default = "one")]
    #[schema(default = 1)]
    pub top_k: usize,
    /// Allow the empty answer.
    #[serde(default)]
    pub handle_impossible_answer: bool,
    /// Longest answer, in tokens.
    #[serde(default = "fifteen")]
    #[schema(default = 15)]
    pub max_answer_len: usize,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ZeroShotRequest {
    pub inputs: Input,
    pub candidate_labels: Vec<String>,
    /// `{}` stands for each label.
    #[serde(default)]
    #[schema(default = "This example is {}.")]
    pub hypothesis_template: Option<String>,
    /// Score each label on its own (entailment vs contradiction) instead of a softmax over labels.
    #[serde(default)]
    pub multi_label: bool,
    #[serde(default)]
    pub truncate: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FillMaskRequest {
    /// Text with one or more `[MASK]`.
    pub inputs: Input,
    #[serde(default = "five")]
    #[schema(default = 5)]
    pub top_k: usize,
    #[serde(default)]
    pub truncate: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MultipleChoiceRequest {
    pub text: String,
    pub choices: Vec<String>,
    #[serde(default)]
    pub truncate: bool,
}

/// `GET /info`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Info {
    pub model_id: String,
    /// The head's HF architecture, e.g. `DebertaV2ForSequenceClassification`.
    pub model_type: String,
    /// HF pipeline names of what the model serves.
    pub tasks: Vec<String>,
    /// Class names in id order (sequence and token classification).
    pub id2label: Vec<String>,
    pub pooling: String,
    pub max_input_length: usize,
    pub max_batch_tokens: usize,
    pub max_batch_requests: Option<usize>,
    pub max_concurrent_requests: usize,
    pub max_client_batch_size: usize,
    pub tokenization_workers: usize,
    pub version: String,
}
