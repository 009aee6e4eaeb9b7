//! `/metrics` in Prometheus' text format: requests and errors by status code, queue depth,
//! running sequences, tokens (rate() of the counter gives tokens/s; the gauge holds the last
//! decode step's batch tokens/s), abandoned requests, requests at an untrained budget and the
//! time-to-first-token histogram.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The `code` label of the per-status counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    /// The HTTP status code, as text (`200`, `429`, ...).
    pub code: String,
}

/// Every metric the server exports, in one Prometheus registry (prefix `tokenscale`).
pub struct Metrics {
    registry: Registry,
    /// HTTP requests answered, by status code.
    pub requests: Family<StatusLabel, Counter>,
    /// Requests answered with a 4xx or 5xx status, by status code.
    pub errors: Family<StatusLabel, Counter>,
    /// Requests waiting for a decode slot.
    pub queue_depth: Gauge,
    /// Sequences prefilling or decoding.
    pub running: Gauge,
    /// Answer tokens generated (a counter: its rate is tokens per second).
    pub generated_tokens: Counter,
    /// Prompt tokens (vision tokens included) of accepted requests.
    pub prompt_tokens: Counter,
    /// Requests dropped because their client disconnected.
    pub abandoned: Counter,
    /// Requests at a vision-token budget the model was not trained with.
    pub untrained_budget: Counter,
    /// Tokens per second of the last batched decode step.
    pub decode_tokens_per_s: Gauge<f64, AtomicU64>,
    /// Seconds from a request's arrival to its first answer token (5 ms to about 80 s).
    pub time_to_first_token: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric at zero, registered under the `tokenscale` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tokenscale");
        let requests = Family::<StatusLabel, Counter>::default();
        let errors = Family::<StatusLabel, Counter>::default();
        let (queue_depth, running) = (Gauge::default(), Gauge::default());
        let (generated_tokens, prompt_tokens, abandoned, untrained_budget) =
            (Counter::default(), Counter::default(), Counter::default(), Counter::default());
        let decode_tokens_per_s = Gauge::<f64, AtomicU64>::default();
        // 5 ms to about 80 s.
        let time_to_first_token = Histogram::new(exponential_buckets(0.005, 2.0, 15));
        registry.register("requests", "HTTP requests answered, by status code", requests.clone());
        registry.register(
            "errors",
            "HTTP requests answered with a 4xx or 5xx status, by status code",
            errors.clone(),
        );
        registry.register("queue_depth", "Requests waiting for a decode slot", queue_depth.clone());
        registry.register("running_sequences", "Sequences prefilling or decoding", running.clone());
        registry.register("generated_tokens", "Answer tokens generated", generated_tokens.clone());
        registry.register(
            "prompt_tokens",
            "Prompt tokens (vision tokens included) of accepted requests",
            prompt_tokens.clone(),
        );
        registry.register(
            "abandoned_requests",
            "Requests dropped because their client disconnected",
            abandoned.clone(),
        );
        registry.register("untrained_budget_requests", "Requests at a vision-token budget the model was not trained with (the warning is logged once)", untrained_budget.clone());
        registry.register(
            "decode_tokens_per_second",
            "Tokens per second of the last batched decode step",
            decode_tokens_per_s.clone(),
        );
        registry.register(
            "time_to_first_token_seconds",
            "From a request's arrival to its first answer token",
            time_to_first_token.clone(),
        );
        Self {
            registry,
            requests,
            errors,
            queue_depth,
            running,
            generated_tokens,
            prompt_tokens,
            abandoned,
            untrained_budget,
            decode_tokens_per_s,
            time_to_first_token,
        }
    }

    /// Counts one answered request under its status (and as an error when ≥ 400).
    pub fn record_status(&self, code: u16) {
        let label = StatusLabel { code: code.to_string() };
        self.requests.get_or_create(&label).inc();
        if code >= 400 {
            self.errors.get_or_create(&label).inc();
        }
    }

    /// Every metric in Prometheus' text format, as `/metrics` serves it.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail; an error here would be a bug in the encoder.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            text = format!("# encoding failed: {e}\n");
        }
        text
    }
}
