//! The router: axum handlers, their JSON shapes, the concurrency limit and request metrics.

use crate::error::{ApiError, ErrorBody};
use crate::infer::{Infer, Timing};
use crate::metrics::{Metrics, Route, RouteStatus};
use crate::types::*;
use axum::body::Bytes;
use axum::extract::{FromRequest, MatchedPath, Request as HttpRequest, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use deberta_infer::{Pooling, Request, Response, DEFAULT_HYPOTHESIS_TEMPLATE};
use deberta_tokenizer::EncodeOptions;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Semaphore;
use utoipa::OpenApi;

/// How the classification head's scores relate to its logits (to answer `raw_scores`, and to
/// score reranking as TEI: a one-logit head through a sigmoid).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scores {
    /// Softmax probabilities.
    Softmax,
    /// Independent sigmoids (`problem_type: multi_label_classification`).
    Sigmoid,
    /// The logit itself (one label: regression, or a reranker's relevance logit).
    Logit,
}

impl Scores {
    fn to_logit(self, score: f64) -> f64 {
        match self {
            Scores::Softmax => score.ln(),
            Scores::Sigmoid => (score / (1.0 - score)).ln(),
            Scores::Logit => score,
        }
    }
    fn to_probability(self, score: f64) -> f64 {
        match self {
            Scores::Softmax | Scores::Sigmoid => score,
            Scores::Logit => 1.0 / (1.0 + (-score).exp()),
        }
    }
}

pub struct AppState {
    pub infer: Infer,
    pub info: Info,
    pub pooling: Pooling,
    pub scores: Scores,
    /// The class whose probability ranks texts in `/rerank`; `None`: the model cannot rerank.
    pub relevant: Option<String>,
    pub limit: Arc<Semaphore>,
    pub metrics: Arc<Metrics>,
}

type Shared = Arc<AppState>;

impl AppState {
    fn check_batch(&self, n: usize) -> Result<(), ApiError> {
        if n == 0 {
            return Err(ApiError::validation("no inputs"));
        }
        let max = self.info.max_client_batch_size;
        if n > max {
            return Err(ApiError::too_large(format!(
                "{n} inputs in one request, more than the {max} allowed (--max-client-batch-size)"
            )));
        }
        Ok(())
    }
}

/// A JSON body. Every way a body can be wrong (not JSON, wrong types, unknown or missing
/// fields, any content type) is a 422 naming where, with our error body; axum's own extractor
/// answers 400/415/422 with plain text.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: HttpRequest, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large(format!("request body: {}", e.body_text()))
            } else {
                ApiError::validation(format!("request body: {}", e.body_text()))
            }
        })?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." {
                ApiError::validation(format!("request body: {inner}"))
            } else {
                ApiError::validation(format!("request body: {path}: {inner}"))
            }
        })?;
        de.end().map_err(|e| ApiError::validation(format!("request body: {e}")))?;
        Ok(ApiJson(value))
    }
}

/// `200` with `body` and TEI's timing headers.
fn answer(body: impl Serialize, timing: &Timing) -> HttpResponse {
    let mut r = axum::Json(body).into_response();
    let h = r.headers_mut();
    let ms = |d: std::time::Duration| HeaderValue::from(d.as_millis() as u64);
    h.insert("x-compute-tokens", HeaderValue::from(timing.tokens as u64));
    h.insert("x-tokenization-time", ms(timing.tokenization));
    h.insert("x-queue-time", ms(timing.queue));
    h.insert("x-inference-time", ms(timing.inference));
    r
}

/// The one answer for a single input, the list for a batch.
fn one_or_many<T: Serialize>(mut items: Vec<T>, batch: bool) -> serde_json::Value {
    let v = if batch || items.len() != 1 {
        serde_json::to_value(items)
    } else {
        serde_json::to_value(items.remove(0))
    };
    v.unwrap_or(serde_json::Value::Null)
}

fn unexpected(route: &str) -> ApiError {
    ApiError::backend(format!("{route}: the pipeline gave an answer of another task"))
}

/// Classify texts or text pairs (sequence classification).
#[utoipa::path(post, path = "/predict", request_body = PredictRequest, responses(
    (status = 200, description = "Every label, best first (a list of such lists for a batch)", body = Vec<Prediction>,
     example = json!([{"score": 0.9, "label": "positive"}, {"score": 0.1, "label": "negative"}])),
    (status = 400, description = "The model is not a classifier", body = ErrorBody),
    (status = 413, description = "An input is too long (without truncate), or too many inputs", body = ErrorBody),
    (status = 422, description = "Malformed request", body = ErrorBody),
    (status = 429, description = "Over --max-concurrent-requests", body = ErrorBody),
))]
async fn predict(
    State(s): State<Shared>,
    ApiJson(req): ApiJson<PredictRequest>,
) -> Result<HttpResponse, ApiError> {
    let (inputs, batch) = req.inputs.into_parts();
    s.check_batch(inputs.len())?;
    let requests = inputs
        .into_iter()
        .map(|(text, text_pair)| Request::TextClassification { text, text_pair, top_k: None })
        .collect();
    let (responses, timing) = s.infer.run(requests, req.truncate).await?;
    let mut out = Vec::with_capacity(responses.len());
    for r in responses {
        let Response::TextClassification(scores) = r else { return Err(unexpected("/predict")) };
        let raw = |x: f64| if req.raw_scores { s.scores.to_logit(x) } else { x };
        out.push(
            scores
                .into_iter()
                .map(|l| Prediction { score: raw(l.score), label: l.label })
                .collect::<Vec<_>>(),
        );
    }
    Ok(answer(one_or_many(out, batch), &timing))
}

/// Rank texts by relevance to a query with a sequence-classification model on (query, text)
/// pairs: the probability of the relevant class (a one-logit head through a sigmoid, as TEI).
#[utoipa::path(post, path = "/rerank", request_body = RerankRequest, responses(
    (status = 200, description = "Best first", body = Vec<Rank>,
     example = json!([{"index": 0, "score": 0.93}, {"index": 1, "score": 0.02}])),
    (status = 400, description = "The model cannot rerank", body = ErrorBody),
    (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
))]
async fn rerank(
    State(s): State<Shared>,
    ApiJson(req): ApiJson<RerankRequest>,
) -> Result<HttpResponse, ApiError> {
    s.check_batch(req.texts.len())?;
    let Some(relevant) = s.relevant.clone() else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unsupported",
            "this model cannot rerank: it needs a sequence-classification head with one label, two labels \
             (the second is the relevant one) or an \"entailment\" label",
        ));
    };
    let requests = req
        .texts
        .iter()
        .map(|t| Request::TextClassification {
            text: req.query.clone(),
            text_pair: Some(t.clone()),
            top_k: None,
        })
        .collect();
    let (responses, timing) = s.infer.run(requests, req.truncate).await?;
    let mut ranks = Vec::with_capacity(responses.len());
    for (index, r) in responses.into_iter().enumerate() {
        let Response::TextClassification(scores) = r else { return Err(unexpected("/rerank")) };
        let score = scores
            .iter()
            .find(|l| l.label == relevant)
            .map(|l| l.score)
            .ok_or_else(|| ApiError::backend(format!("no score for the label {relevant:?}")))?;
        let score = if req.raw_scores { s.scores.to_logit(score) } else { s.scores.to_probability(score) };
        let text = req.return_text.then(|| req.texts[index].clone());
        ranks.push(Rank { index, text, score });
    }
    // Stable: equal scores keep the order of `texts`.
    ranks.sort_by(|a, b| b.score.total_cmp(&a.score));
    Ok(answer(ranks, &timing))
}

async fn embeddings(
    s: &AppState,
    texts: Vec<String>,
    normalize: bool,
    truncate: bool,
) -> Result<(Vec<Vec<f32>>, Timing), ApiError> {
    s.check_batch(texts.len())?;
    let requests =
        texts.into_iter().map(|text| Request::Embeddings { text, pooling: s.pooling, normalize }).collect();
    let (responses, timing) = s.infer.run(requests, truncate).await?;
    let vectors = responses
        .into_iter()
        .map(|r| match r {
            Response::Embeddings(v) => Ok(v),
            _ => Err(unexpected("/embed")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((vectors, timing))
}

/// Sentence embeddings: the encoder's last hidden state, pooled (`--pooling`).
#[utoipa::path(post, path = "/embed", request_body = EmbedRequest, responses(
    (status = 200, description = "One vector per input (a list of one for a single input)", body = Vec<Vec<f32>>),
    (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
))]
async fn embed(
    State(s): State<Shared>,
    ApiJson(req): ApiJson<EmbedRequest>,
) -> Result<HttpResponse, ApiError> {
    let (texts, _) = req.inputs.into_parts();
    let (vectors, timing) = embeddings(&s, texts, req.normalize, req.truncate).await?;
    Ok(answer(vectors, &timing))
}

/// OpenAI-compatible embeddings (normalised vectors).
#[utoipa::path(post, path = "/v1/embeddings", request_body = OpenAiEmbeddingRequest, responses(
    (status = 200, body = OpenAiEmbeddingResponse),
    (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
))]
async fn openai_embeddings(
    State(s): State<Shared>,
    ApiJson(req): ApiJson<OpenAiEmbeddingRequest>,
) -> Result<HttpResponse, ApiError> {
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::validation(format!(
                "encoding_format {other:?}: expected \"float\" or \"base64\""
            )))
        }
    };
    let (texts, _) = req.input.into_parts();
    let (vectors, timing) = embeddings(&s, texts, true, false).await?;
    if let (Some(d), Some(v)) = (req.dimensions, vectors.first()) {
        if d != v.len() {
            return Err(ApiError::validation(format!(
                "dimensions {d}: this model's embeddings have {} dimensions",
                v.len()
            )));
        }
    }
    let data = vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                EmbeddingData::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                EmbeddingData::Float(v)
            };
            OpenAiEmbedding { object: "embedding", embedding, index }
        })
        .collect();
    let usage = OpenAiUsage { prompt_tokens: timing.tokens, total_tokens: timing.tokens };
    let body = OpenAiEmbeddingResponse { object: "list", data, model: s.info.model_id.clone(), usage };
    Ok(answer(body, &timing))
}

/// Tokenize texts (no model pass).
#[utoipa::path(post, path = "/tokenize", request_body = TokenizeRequest, responses(
    (status = 200, description = "Tokens per input (a list of one for a single input)", body = Vec<Vec<SimpleToken>>),
    (status = 422, body = ErrorBody),
))]
async fn tokenize(
    State(s): State<Shared>,
    ApiJson(req): ApiJson<TokenizeRequest>,
) -> Result<HttpResponse, ApiError> {
    let (texts, _) = req.inputs.into_parts();
    s.check_batch(texts.len())?;
    let st = s.clone();
    let out = tokio::task::spawn_blocking(move || {
        let tok = st.infer.preprocessor().tokenizer();
        let options =
            EncodeOptions { add_special_tokens: req.add_special_tokens, ..EncodeOptions::default() };
        texts
            .iter()
            .map(|text| {
                let chars: Vec<char> = text.chars().collect();
                let e = tok.encode(text, None, &options).map_err(|e| ApiError::validation(e.to_string()))?;
                Ok(e.input_ids
                    .iter()
                    .zip(&e.offsets)
                    .zip(&e.sequence_ids)
                    .map(|((&id, &(start, stop)), seq)| match seq {
                        None => SimpleToken {
                            id,
                            text: tok.id_to_token(id).unwrap_or_default(),
                            special: true,
                            start: None,
                            stop: None,
                        },
                        Some(_) => SimpleToken {
                            id,
                            text: chars[start.min(chars.len())..stop.min(chars.len())].iter().collect(),
                            special: false,
                            start: Some(start),
                            stop: Some(stop),
                        },
                    })
                    .collect::<Vec<_>>())
            })
            .collect::<Result<Vec<_>, ApiError>>()
    })
    .await
    .map_err(|e| ApiError::backend(format!("tokenization failed: {e}")))??;
    Ok(axum::Json(out).into_response())
}

/// Token ids back to text.
#[utoipa::path(post, path = "/decode", request_body = DecodeRequest, responses(
    (status = 200, description = "One text per id list", body = Vec<String>),
    (status = 422, description = "Malformed request or an id outside the vocabulary", body = ErrorBody),
))]
async fn decode(
    State(s): State<Shared>,
    ApiJson(req): ApiJson<DecodeRequest>,
) -> Result<HttpResponse, ApiError> {
    let lists = match req.ids {
        Ids::Single(v) => vec![v],
        Ids::Batch(v) => v,
    };
    s.check_batch(lists.len())?;
    let tok = s.infer.preprocessor().tokenizer();
    let special = tok.special_ids();
    let is_special = |i: u32| [special.cls, special.sep, special.pad, special.mask].contains(&i);
    let mut out = Vec::with_capacity(lists.len());
    for ids in &lists {
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= tok.vocab_size()) {
            return Err(ApiError::validation(format!(
                "id {bad} is not in the vocabulary (ids 0..{})",
                tok.vocab_size()
            )));
        }
        if req.skip_special_tokens {
            out.push(tok.decode(ids));
            continue;
        }
        // Runs of ordinary ids decode together; special tokens stand as written.
        let mut parts: Vec<String> = Vec::new();
        for run in ids.split_inclusive(|&i| is_special(i)) {
            let (last, body) = match run.split_last() {
                Some((&l, body)) if is_special(l) => (Some(l), body),
                _ => (None, run),
            };
            let text = tok.decode(body);
            if !text.is_empty() {
                parts.push(text);
            }
            if let Some(l) = last {
                parts.push(tok.id_to_token(l).unwrap_or_default());
            }
        }
        out.push(parts.join(" "));
    }
    Ok(axum::Json(out).into_response())
}

/// Runs one request per text and answers with the pipeline's outputs as HF shapes them.
async fn per_text(
    s: &AppState,
    texts: Vec<String>,
    batch: bool,
    truncate: bool,
    make: impl Fn(String) -> Request,
) -> Result<HttpResponse, ApiError> {
    s.check_batch(texts.len())?;
    let requests = texts.into_iter().map(make).collect();
    let (responses, timing) = s.infer.run(requests, truncate).await?;
    Ok(answer(one_or_many(responses, batch), &timing))
}

/// Named entities / token labels (HF `token-classification` pipeline output).
#[utoipa::path(post, path = "/token-classification", request_body = TokenClassificationRequest, responses(
    (status = 200, description = "Per input: [{entity | entity_group, score, index?, word, start, end}]", body = serde_json::Value,
     example = json!([{"entity_group": "PER", "score": 0.99, "word": "Sarah", "start": 11, "end": 16}])),
    (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
))]
async fn token_classification(
    State(s): State<Shared>,
    ApiJson(req): ApiJson<TokenClassificationRequest>,
) -> Result<HttpResponse, ApiError> {
    let (texts, batch) = req.inputs.into_parts();
    let aggregation_strategy = req.aggregation_strategy;
    per_text(&s, texts, batch, req.truncate, |text| Request::TokenClassification {
        text,
        aggregation_strategy,
    })
    .await
}

/// Extractive question answering (HF `question-answering` pipeline output; a long context is
/// read in overlapping windows).
#[utoipa::path(post, path = "/question-answering", request_body = QuestionAnsweringRequest, responses(
    (status = 200, description = "The top_k answers, best first: [{score, start, end, answer}]", body = serde_json::Value,
     example = json!([{"score": 0.8, "start": 33, "end": 39, "answer": "Berlin"}])),
    (status = 400, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
))]
async fn question_answering(
    State(s): State<Shared>,
    ApiJson(req): ApiJson<QuestionAnsweringRequest>,
) -> Result<HttpResponse, ApiError> {
    let request = Request::QuestionAnswering {
        question: req.question,
        context: req.context,
        top_k: req.top_k,
        handle_impossible_answer: req.handle_impossible_answer,
        max_answer_len: req.max_answer_len,
    };
    let (mut responses, timing) = s.infer.run(vec![request], false).await?;
    Ok(answer(responses.remove(0), &timing))
}

/// Zero-shot classification with an NLI model (HF `zero-shot-classification` pipeline output).
#[utoipa::path(post, path = "/zero-shot-classification", request_body = ZeroShotRequest, responses(
    (status = 200, description = "Per input: {sequence, labels, scores}, labels best first", body = serde_json::Value,
     example = json!({"sequence": "I love this film", "labels": ["cinema", "sport"], "scores": [0.97, 0.03]})),
    (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
))]
async fn zero_shot(
    State(s): State<Shared>,
    ApiJson(req): ApiJson<ZeroShotRequest>,
) -> Result<HttpResponse, ApiError> {
    let (texts, batch) = req.inputs.into_parts();
    let template = req.hypothesis_template.unwrap_or_else(|| DEFAULT_HYPOTHESIS_TEMPLATE.to_string());
    per_text(&s, texts, batch, req.truncate, |sequence| Request::ZeroShotClassification {
        sequence,
        candidate_labels: req.candidate_labels.clone(),
        hypothesis_template: template.clone(),
        multi_label: req.multi_label,
    })
    .await
}

/// Fill `[MASK]` with a masked-language model (HF `fill-mask` pipeline output).
#[utoipa::path(post, path = "/fill-mask", request_body = FillMaskRequest, responses(
    (status = 200, description = "Per input: [{score, token, token_str, sequence}] best first (a list per [MASK] when there are several)", body = serde_json::Value,
     example = json!([{"score": 0.2, "token": 1234, "token_str": "Paris", "sequence": "The capital of France is Paris."}])),
    (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
))]
async fn fill_mask(
    State(s): State<Shared>,
    ApiJson(req): ApiJson<FillMaskRequest>,
) -> Result<HttpResponse, ApiError> {
    let (texts, batch) = req.inputs.into_parts();
    let top_k = req.top_k;
    per_text(&s, texts, batch, req.truncate, |text| Request::FillMask { text, top_k }).await
}

/// Pick the best continuation among choices with a multiple-choice model.
#[utoipa::path(post, path = "/multiple-choice", request_body = MultipleChoiceRequest, responses(
    (status = 200, description = "{label: index of the best choice, scores: softmax over the choices}", body = serde_json::Value,
     example = json!({"label": 1, "scores": [0.1, 0.9]})),
    (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
))]
async fn multiple_choice(
    State(s): State<Shared>,
    ApiJson(req): ApiJson<MultipleChoiceRequest>,
) -> Result<HttpResponse, ApiError> {
    let request = Request::MultipleChoice { text: req.text, choices: req.choices };
    let (mut responses, timing) = s.infer.run(vec![request], req.truncate).await?;
    Ok(answer(responses.remove(0), &timing))
}

/// The model and the server's limits.
#[utoipa::path(get, path = "/info", responses((status = 200, body = Info)))]
async fn info(State(s): State<Shared>) -> axum::Json<Info> {
    axum::Json(s.info.clone())
}

/// 200 while the model thread runs, else 503.
#[utoipa::path(get, path = "/health", responses(
    (status = 200, description = "Ready"), (status = 503, description = "The model thread stopped", body = ErrorBody),
))]
async fn health(State(s): State<Shared>) -> Result<axum::Json<serde_json::Value>, ApiError> {
    if s.infer.healthy() {
        Ok(axum::Json(serde_json::json!({})))
    } else {
        Err(ApiError::unhealthy("the model thread stopped"))
    }
}

/// Prometheus metrics (OpenMetrics text).
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "OpenMetrics text", body = String)))]
async fn metrics(State(s): State<Shared>) -> HttpResponse {
    let ct = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, ct)], s.metrics.encode()).into_response()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "deberta serve",
        description = "DeBERTa inference over HTTP with dynamic batching: TEI's routes and shapes, HF pipeline tasks, OpenAI-compatible embeddings."
    ),
    paths(
        predict,
        rerank,
        embed,
        openai_embeddings,
        tokenize,
        decode,
        token_classification,
        question_answering,
        zero_shot,
        fill_mask,
        multiple_choice,
        info,
        health,
        metrics,
        openapi_json
    )
)]
struct ApiDoc;

/// The OpenAPI 3 document of these routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "OpenAPI 3 document", body = serde_json::Value)))]
async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(openapi())
}

/// axum's default request body limit.
const BODY_LIMIT: usize = 2 << 20;

/// Refuses a request over `--max-concurrent-requests` at once (429) instead of queueing it; the
/// permit is held until the answer is ready.
async fn limit(State(s): State<Shared>, req: HttpRequest, next: Next) -> HttpResponse {
    match s.limit.clone().try_acquire_owned() {
        Ok(_permit) => next.run(req).await,
        Err(_) => {
            // Read the (small) body first: answering before it is read makes hyper close the
            // connection, and a client reusing it from its pool sees a transport error instead
            // of the 429.
            let _ = axum::body::to_bytes(req.into_body(), BODY_LIMIT).await;
            ApiError::overloaded(s.info.max_concurrent_requests).into_response()
        }
    }
}

/// Counts requests by route and status, and times them.
async fn record(State(s): State<Shared>, req: HttpRequest, next: Next) -> HttpResponse {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_string();
    let start = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16();
    s.metrics.requests.get_or_create(&RouteStatus { route: route.clone(), status }).inc();
    s.metrics.request_seconds.get_or_create(&Route { route }).observe(start.elapsed().as_secs_f64());
    response
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route (GET /openapi.json lists them)")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "validation", "method not allowed on this route")
}

pub fn router(state: Shared) -> Router {
    let inference = Router::new()
        .route("/predict", post(predict))
        .route("/rerank", post(rerank))
        .route("/embed", post(embed))
        .route("/v1/embeddings", post(openai_embeddings))
        .route("/token-classification", post(token_classification))
        .route("/question-answering", post(question_answering))
        .route("/zero-shot-classification", post(zero_shot))
        .route("/fill-mask", post(fill_mask))
        .route("/multiple-choice", post(multiple_choice))
        .route_layer(middleware::from_fn_with_state(state.clone(), limit));
    Router::new()
        .merge(inference)
        .route("/tokenize", post(tokenize))
        .route("/decode", post(decode))
        .route("/info", get(info))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi_json))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), record))
        .with_state(state)
}
