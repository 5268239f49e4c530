//! Errors as HTTP answers: a status and a JSON body `{"error", "error_type"}` (TEI's shape).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use deberta_infer::InferError;
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for a person.
    #[schema(example = "the input is 600 tokens, more than the 512 allowed")]
    pub error: String,
    /// `validation` (the request is wrong), `overloaded` (try later), `unsupported` (this model
    /// does not serve the task), `backend` (ours), `unhealthy`, `not_found`.
    #[schema(example = "validation")]
    pub error_type: String,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
}

impl ApiError {
    pub fn new(status: StatusCode, error_type: &str, error: impl Into<String>) -> Self {
        ApiError { status, body: ErrorBody { error: error.into(), error_type: error_type.into() } }
    }

    /// A malformed or ill-typed request: always 422, whatever part of it is wrong.
    pub fn validation(error: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", error)
    }

    pub fn too_large(error: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "validation", error)
    }

    pub fn overloaded(limit: usize) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "overloaded",
            format!("the server is handling its maximum of {limit} concurrent requests (--max-concurrent-requests); retry later"),
        )
    }

    pub fn unhealthy(error: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unhealthy", error)
    }

    pub fn backend(error: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "backend", error)
    }

    /// An inference error, with `what` naming the input it came from in a client batch.
    pub fn from_infer(e: InferError, what: Option<String>) -> Self {
        let at = |msg: String| match &what {
            Some(w) => format!("{w}: {msg}"),
            None => msg,
        };
        match e {
            InferError::BadInput(m) => Self::validation(at(m)),
            InferError::TooLong { tokens, max } => Self::too_large(at(format!(
                "the input is {tokens} tokens, more than the {max} allowed (--max-input-length); \
                 send \"truncate\": true to cut it"
            ))),
            InferError::Unsupported(m) => Self::new(StatusCode::BAD_REQUEST, "unsupported", at(m)),
            InferError::Model(m) => Self::backend(at(m)),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}
