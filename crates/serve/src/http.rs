//! The HTTP endpoints: `POST /v1/chat/completions` (OpenAI's schema, plain or streamed as
//! server-sent events), `GET /v1/models`, `GET /health`, `GET /metrics`.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokenscale_model::Forward;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokenscale_model::generation::GenerationConfig;
use tokenscale_model::runtime::{Prepared, Runtime};
use tokio::sync::mpsc;
use tower_http::catch_panic::CatchPanicLayer;

use crate::admission::{Admission, Gate};
use crate::engine::{EngineHandle, Event, Finish, Job};
use crate::error::ApiError;
use crate::media::load_image;
use crate::metrics::Metrics;
use crate::options::ServeOptions;
use crate::schema::{parse_request, ChatRequest};
use crate::warnings::WarnOnce;

/// What every request handler shares: the model, the engine, options, metrics, capacity.
pub struct AppState {
    /// The loaded model (tokenizer, templates, vision encoder).
    pub runtime: Arc<Runtime>,
    /// Where handlers submit prepared requests for generation.
    pub engine: EngineHandle,
    /// The options the server was started with.
    pub options: ServeOptions,
    /// The Prometheus counters served at `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Admission: refuses requests past `max_batch + queue` with 429.
    pub gate: Arc<Gate>,
    /// Set on shutdown: new requests get 503 while running ones finish.
    pub draining: AtomicBool,
    /// Unix time the server started (`created` of the model).
    pub started: u64,
    /// Image decoding and vision encoding run one request at a time: each already uses every
    /// core (rayon), and running many at once only multiplies their activations in memory.
    preparing: Arc<tokio::sync::Semaphore>,
    /// Budget warnings already logged.
    warned: WarnOnce,
    next_id: AtomicU64,
}

impl AppState {
    /// The shared state; the capacity gate holds `max_batch + queue` requests.
    pub fn new(
        runtime: Arc<Runtime>,
        engine: EngineHandle,
        options: ServeOptions,
        metrics: Arc<Metrics>,
    ) -> Self {
        let gate = Gate::new(options.max_batch + options.queue);
        let started = unix_now();
        Self {
            runtime,
            engine,
            options,
            metrics,
            gate,
            draining: AtomicBool::new(false),
            started,
            preparing: Arc::new(tokio::sync::Semaphore::new(1)),
            warned: WarnOnce::default(),
            next_id: AtomicU64::new(started << 20),
        }
    }

    fn completion_id(&self) -> String {
        format!("chatcmpl-{:016x}", self.next_id.fetch_add(1, Ordering::Relaxed))
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The routes: chat completions, `/v1/models`, `/health`, `/metrics`, 404 otherwise;
/// with the body limit, panic-to-500 and the per-status request counter.
pub fn router(state: Arc<AppState>) -> Router {
    let body_limit = state.options.limits.max_body_bytes;
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn_with_state(state.clone(), count_status))
        .with_state(state)
}

async fn count_status(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    state.metrics.record_status(response.status().as_u16());
    response
}

/// A panic in a handler answers 500 with a message; the server goes on.
fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
    ApiError::internal(format!(
        "internal error: {}",
        what.unwrap_or_else(|| "a panic without a message".into())
    ))
    .into_response()
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(uri.path())
}

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(key) = &state.options.api_key else { return Ok(()) };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given.map(str::trim) == Some(key.as_str()) {
        Ok(())
    } else {
        Err(ApiError::unauthorized())
    }
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    if state.draining.load(Ordering::Acquire) {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "draining"})))
            .into_response();
    }
    Json(json!({"status": "ok", "model": state.options.model_name, "held_requests": state.gate.held()})).into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render())
        .into_response()
}

async fn models(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&state, &headers)?;
    Ok(Json(json!({
        "object": "list",
        "data": [{"id": state.options.model_name, "object": "model", "created": state.started, "owned_by": "tokenscale"}],
    })))
}

async fn chat_completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match chat(state, headers, body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn chat(
    state: Arc<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    if state.draining.load(Ordering::Acquire) {
        return Err(ApiError::shutting_down());
    }
    authorize(&state, &headers)?;
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::too_large(
            None,
            format!("the request body is over {} bytes", state.options.limits.max_body_bytes),
        ),
        _ => ApiError::invalid(
            None,
            format!("cannot read the request body: {}", rejection.body_text()),
        ),
    })?;
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid(None, format!("the request body is not valid JSON: {e}")))?;
    let request = parse_request(&value, &state.options)?;
    let admission =
        state.gate.try_admit().ok_or_else(|| ApiError::overloaded(state.gate.capacity))?;
    // The prompt's length is known from its text and budget: a prompt over a limit is refused
    // before its image is decoded or encoded.
    let planned = plan(&state, &request).await?;
    check_prompt(&state, planned, request.max_tokens)?;
    let prepared = prepare(&state, &request).await?;
    let prompt_tokens = prepared.embeds.dim(1).map_err(|e| ApiError::internal(e.to_string()))?;
    if prompt_tokens != planned {
        return Err(ApiError::internal(format!(
            "the prompt was planned at {planned} tokens but prepared at {prompt_tokens}"
        )));
    }
    state.metrics.prompt_tokens.inc_by(prompt_tokens as u64);
    let usage =
        Usage { prompt_tokens, vision_tokens: prepared.vision_tokens, completion_tokens: 0 };
    let events = submit(&state, &request, prepared, arrived, admission)?;
    let answer = AnswerMeta {
        id: state.completion_id(),
        created: unix_now(),
        model: state.options.model_name.clone(),
        usage,
    };
    if request.stream {
        Ok(stream_answer(events, answer, request.include_usage))
    } else {
        whole_answer(events, answer).await
    }
}

/// The prompt's length in tokens, vision tokens included, from its text and budget alone
/// (tokenising can take a while for a long text: a blocking thread, but not the encoder's turn).
/// A budget the model was not trained with is logged once per server and counted every time.
async fn plan(state: &Arc<AppState>, request: &ChatRequest) -> Result<usize, ApiError> {
    let runtime = Arc::clone(&state.runtime);
    let (has_image, conversation, budget, drop_query) = (
        request.image.is_some(),
        request.conversation.clone(),
        request.budget.clone(),
        request.drop_query,
    );
    let plan = off_the_async_threads("reading the prompt", move || {
        runtime
            .plan_chat(has_image, &conversation, &budget, drop_query)
            .map_err(|e| ApiError::invalid(None, format!("{e:#}")))
    })
    .await?;
    if let Some(warning) = &plan.budget_warning {
        state.metrics.untrained_budget.inc();
        state.warned.warn(warning);
    }
    Ok(plan.prompt_tokens)
}

/// Image decoding, templating and the vision encoder, on a blocking thread (CPU work that must
/// not hold up the async threads).
async fn prepare(state: &Arc<AppState>, request: &ChatRequest) -> Result<Prepared, ApiError> {
    let (runtime, limits, request) =
        (Arc::clone(&state.runtime), state.options.limits.clone(), request.clone());
    // The turn moves into the blocking work: a client that goes away meanwhile does not let
    // another request's encoder start beside this one.
    let turn = Arc::clone(&state.preparing)
        .acquire_owned()
        .await
        .map_err(|_| ApiError::shutting_down())?;
    off_the_async_threads("preparing the inputs", move || {
        let _turn = turn;
        let image = request
            .image
            .as_ref()
            .map(|source| load_image(source, "messages", &limits))
            .transpose()?;
        runtime
            .prepare_chat(
                &Forward::INFERENCE,
                image.as_ref(),
                &request.conversation,
                &request.budget,
                request.drop_query,
            )
            .map_err(|e| ApiError::invalid(None, format!("{e:#}")))
    })
    .await
}

/// Runs CPU work on a blocking thread; a panic there answers 500, the server goes on.
async fn off_the_async_threads<T: Send + 'static>(
    what: &str,
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => Err(ApiError::internal(format!("internal error while {what}"))),
        Err(e) => Err(ApiError::internal(format!("{what} was cancelled: {e}"))),
    }
}

fn check_prompt(state: &AppState, prompt_tokens: usize, max_tokens: usize) -> Result<(), ApiError> {
    let limit = state.options.limits.max_prompt_tokens;
    if prompt_tokens > limit {
        return Err(ApiError::invalid_code("context_length_exceeded", Some("messages"), format!("the prompt is {prompt_tokens} tokens (vision tokens included); this server allows {limit}")));
    }
    let context = state.runtime.llm().config.max_position_embeddings;
    if prompt_tokens + max_tokens > context {
        return Err(ApiError::invalid_code(
            "context_length_exceeded",
            Some("max_tokens"),
            format!("the prompt ({prompt_tokens} tokens) plus max_tokens ({max_tokens}) exceeds the model's context of {context} tokens"),
        ));
    }
    Ok(())
}

fn submit(
    state: &AppState,
    request: &ChatRequest,
    prepared: Prepared,
    arrived: Instant,
    admission: Admission,
) -> Result<mpsc::UnboundedReceiver<Event>, ApiError> {
    let (events, receiver) = mpsc::unbounded_channel();
    let config = GenerationConfig {
        max_new_tokens: request.max_tokens,
        temperature: request.temperature,
        top_p: request.top_p,
        seed: request.seed,
        stop_tokens: if request.ignore_eos { Vec::new() } else { state.runtime.stop_tokens() },
    };
    let job = Job { prepared, config, stop: request.stop.clone(), events, arrived, admission };
    state.engine.submit(job).map_err(|_| ApiError::shutting_down())?;
    Ok(receiver)
}

#[derive(Debug, Clone, Copy)]
struct Usage {
    prompt_tokens: usize,
    vision_tokens: usize,
    completion_tokens: usize,
}

impl Usage {
    fn json(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "vision_tokens": self.vision_tokens,
        })
    }
}

struct AnswerMeta {
    id: String,
    created: u64,
    model: String,
    usage: Usage,
}

async fn whole_answer(
    mut events: mpsc::UnboundedReceiver<Event>,
    mut answer: AnswerMeta,
) -> Result<Response, ApiError> {
    let mut content = String::new();
    loop {
        match events.recv().await {
            Some(Event::Text(text)) => content.push_str(&text),
            Some(Event::Done { finish, completion_tokens }) => {
                answer.usage.completion_tokens = completion_tokens;
                return Ok(Json(json!({
                    "id": answer.id,
                    "object": "chat.completion",
                    "created": answer.created,
                    "model": answer.model,
                    "system_fingerprint": null,
                    "choices": [{
                        "index": 0,
                        "message": {"role": "assistant", "content": content, "refusal": null},
                        "logprobs": null,
                        "finish_reason": finish.as_str(),
                    }],
                    "usage": answer.usage.json(),
                }))
                .into_response());
            }
            Some(Event::Failed(message)) => return Err(ApiError::internal(message)),
            None => {
                return Err(ApiError::internal("the engine stopped before the answer was complete"))
            }
        }
    }
}

fn chunk(answer: &AnswerMeta, delta: Value, finish: Option<Finish>) -> Value {
    json!({
        "id": answer.id,
        "object": "chat.completion.chunk",
        "created": answer.created,
        "model": answer.model,
        "system_fingerprint": null,
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish.map(Finish::as_str)}],
    })
}

fn sse(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

/// Server-sent events as OpenAI sends them: a first chunk with the role, one chunk per piece
/// of text, a last chunk with `finish_reason`, the usage chunk when asked, then `data: [DONE]`.
/// When the client goes away the body is dropped, the forwarding task ends and the engine
/// sees the closed channel and frees the slot.
fn stream_answer(
    mut events: mpsc::UnboundedReceiver<Event>,
    mut answer: AnswerMeta,
    include_usage: bool,
) -> Response {
    let (out, body) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        if out
            .send(sse(&chunk(&answer, json!({"role": "assistant", "content": ""}), None)))
            .await
            .is_err()
        {
            return;
        }
        loop {
            let frame = match events.recv().await {
                Some(Event::Text(text)) => sse(&chunk(&answer, json!({"content": text}), None)),
                Some(Event::Done { finish, completion_tokens }) => {
                    answer.usage.completion_tokens = completion_tokens;
                    let mut frames = sse(&chunk(&answer, json!({}), Some(finish))).to_vec();
                    if include_usage {
                        let mut usage = chunk(&answer, json!({}), None);
                        usage["choices"] = json!([]);
                        usage["usage"] = answer.usage.json();
                        frames.extend_from_slice(&sse(&usage));
                    }
                    frames.extend_from_slice(b"data: [DONE]\n\n");
                    let _ = out.send(Bytes::from(frames)).await;
                    return;
                }
                Some(Event::Failed(message)) => {
                    let _ = out.send(sse(&ApiError::internal(message).body())).await;
                    return;
                }
                None => {
                    let _ = out
                        .send(sse(&ApiError::internal(
                            "the engine stopped before the answer was complete",
                        )
                        .body()))
                        .await;
                    return;
                }
            };
            if out.send(frame).await.is_err() {
                return;
            }
        }
    });
    let body = Body::from_stream(futures_util::stream::unfold(body, |mut body| async move {
        body.recv().await.map(|bytes| (Ok::<Bytes, Infallible>(bytes), body))
    }));
    ([(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")], body)
        .into_response()
}
