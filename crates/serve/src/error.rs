//! OpenAI-style error answers: `{"error": {"message", "type", "param", "code"}}` with the HTTP
//! status that says who is at fault.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answer: its HTTP status and OpenAI's error body fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status (4xx: the client's fault, 5xx: the server's).
    pub status: StatusCode,
    /// Human-readable explanation, sent as `error.message`.
    pub message: String,
    /// OpenAI's `type`: invalid_request_error, authentication_error, rate_limit_error, server_error.
    pub kind: &'static str,
    /// The request field at fault (`messages[0].content[1].image_url`), when one is.
    pub param: Option<String>,
    /// OpenAI's machine-readable `code` (e.g. `rate_limit_exceeded`), when there is one.
    pub code: Option<&'static str>,
    /// Seconds a client should wait before retrying (429, 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(
        status: StatusCode,
        kind: &'static str,
        code: Option<&'static str>,
        param: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            param: param.map(str::to_string),
            code,
            retry_after: None,
        }
    }

    /// 400: the request is malformed or asks for something this server cannot do.
    pub fn invalid(param: Option<&str>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", None, param, message)
    }

    /// 400 with a machine-readable code (e.g. `context_length_exceeded`).
    pub fn invalid_code(
        code: &'static str,
        param: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", Some(code), param, message)
    }

    /// 413: the body or one of its images is over a limit.
    pub fn too_large(param: Option<&str>, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            Some("request_too_large"),
            param,
            message,
        )
    }

    /// 401: the API key is missing or wrong.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            Some("invalid_api_key"),
            None,
            "missing or wrong API key (send `Authorization: Bearer KEY`)",
        )
    }

    /// 404: no route for `what` (the message lists the endpoints).
    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "invalid_request_error", Some("not_found"), None, format!("{what}: no such endpoint (this server has POST /v1/chat/completions, GET /v1/models, /health, /metrics)"))
    }

    /// 429: the queue is full.
    pub fn overloaded(capacity: usize) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            Some("rate_limit_exceeded"),
            None,
            format!("the server is at its limit of {capacity} requests (running and queued); retry shortly"),
        );
        e.retry_after = Some(1);
        e
    }

    /// 503: the server is shutting down.
    pub fn shutting_down() -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            Some("shutting_down"),
            None,
            "the server is shutting down and takes no new requests",
        );
        e.retry_after = Some(5);
        e
    }

    /// 500: the request was valid but serving it failed.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", None, None, message)
    }

    /// The JSON body `{"error": {"message", "type", "param", "code"}}`.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
