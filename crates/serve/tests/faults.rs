//! Faults, injected: a plain (not streamed) request whose client drops the connection while it
//! generates (slowed by an injected delay, so that the test acts while it runs) frees its slot
//! and stops generating; a panic inside the engine (while prefilling,
//! during a batched decode step) answers 500 with OpenAI's error JSON, and the server goes on
//! answering the next request exactly as before.

mod common;

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use tokenscale_serve::{FaultPlan, FaultPoint, ServeOptions, Server};

/// A metric's value from `/metrics` (0 when absent).
fn metric(server: &Server, name: &str) -> f64 {
    let (_, text) = get(&url(server, "/metrics"));
    text.lines()
        .find_map(|line| {
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// A server on the shipped model with `faults` injected.
fn start_with(faults: FaultPlan, options: ServeOptions) -> Server {
    Server::start_with_faults(
        load(),
        ServeOptions { port: 0, model_name: "tiny-imgque".into(), ..options },
        faults,
    )
    .expect("server starts")
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn held_requests(server: &Server) -> u64 {
    serde_json::from_str::<Value>(&get(&url(server, "/health")).1).unwrap()["held_requests"]
        .as_u64()
        .unwrap()
}

/// A text-only request for `max_tokens` tokens (the end-of-answer token ignored).
fn text_request(question: &str, max_tokens: u64) -> Value {
    json!({"messages": [{"role": "user", "content": question}], "temperature": 0, "max_tokens": max_tokens, "ignore_eos": true})
}

#[test]
fn a_plain_request_whose_client_disconnects_frees_its_slot_and_stops_generating() {
    // 5 ms per decode step: the 400 tokens take at least 2 s.
    let faults =
        FaultPlan::default().delay_at(FaultPoint::DecodeStep, "SLOWLY", Duration::from_millis(5));
    let server = start_with(faults, ServeOptions { max_batch: 1, queue: 0, ..Default::default() });
    let endpoint = url(&server, "/v1/chat/completions");
    // As a user's client sends it (keep-alive), then and with `Connection: close`.
    for (round, connection) in ["keep-alive", "close"].into_iter().enumerate() {
        // The one place is free (the previous round's last answer has left the engine).
        wait_for("no request is held", || held_requests(&server) == 0);
        let max_tokens = 400;
        let body = text_request("SLOWLY tell me everything.", max_tokens).to_string();
        let generated_before = metric(&server, "tokenscale_generated_tokens_total");
        let mut socket = TcpStream::connect(server.addr).unwrap();
        write!(socket, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: {connection}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        // Generating: the one slot is held, and a second request is turned away.
        wait_for("the request generates", || {
            metric(&server, "tokenscale_generated_tokens_total") > generated_before
        });
        assert_eq!(post(&endpoint, &text_request("q", 2)).0, 429);
        socket.shutdown(Shutdown::Both).unwrap();
        drop(socket);
        wait_for("the slot is free", || {
            metric(&server, "tokenscale_running_sequences") == 0.0
                && metric(&server, "tokenscale_queue_depth") == 0.0
        });
        assert_eq!(
            metric(&server, "tokenscale_abandoned_requests_total"),
            (round + 1) as f64,
            "connection: {connection}"
        );
        let generated = metric(&server, "tokenscale_generated_tokens_total") - generated_before;
        assert!(generated < max_tokens as f64, "connection: {connection}: the engine generated all {generated} tokens for a client that had gone");
        wait_for("the admission is given back", || held_requests(&server) == 0);
        let (status, answer) = post(&endpoint, &text_request("hello", 3));
        assert_eq!(status, 200, "the next request: {answer}");
    }
}

fn assert_internal_error(status: u16, body: &Value, what: &str) {
    assert_eq!(status, 500, "{what}: {body}");
    let error = &body["error"];
    assert_eq!(error["type"], "server_error", "{what}: {body}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("internal error") && m.contains("injected fault")),
        "{what}: {body}"
    );
    assert!(error.get("param").is_some() && error.get("code").is_some(), "{what}: {body}");
}

#[test]
fn a_panic_in_the_engine_is_a_500_and_the_server_goes_on() {
    let faults = FaultPlan::default()
        .panic_at(FaultPoint::Prefill, "FAULT-IN-PREFILL")
        .panic_at(FaultPoint::DecodeStep, "FAULT-IN-DECODE");
    let server = start_with(faults, ServeOptions::default());
    let endpoint = url(&server, "/v1/chat/completions");
    let healthy = ask(&png(48, 2), "What shape?", json!({"max_tokens": 12}));
    let (status, before) = post(&endpoint, &healthy);
    assert_eq!(status, 200, "{before}");
    for marker in ["FAULT-IN-PREFILL", "FAULT-IN-DECODE"] {
        let (status, body) = post(
            &endpoint,
            &ask(&png(48, 2), &format!("{marker} What shape?"), json!({"max_tokens": 12})),
        );
        assert_internal_error(status, &body, marker);
        // The server goes on: the same healthy request gets the same answer as before.
        let (status, after) = post(&endpoint, &healthy);
        assert_eq!(status, 200, "after {marker}: {after}");
        assert_eq!(content(&after), content(&before), "after {marker}");
    }
    // Streamed, the failure arrives as an error event in place of the rest of the answer.
    let mut streamed = ask(&png(48, 2), "FAULT-IN-DECODE What shape?", json!({"max_tokens": 12}));
    streamed["stream"] = json!(true);
    let (status, text, _) = post_raw(&endpoint, streamed.to_string().as_bytes(), &[]);
    assert_eq!(status, 200, "{text}");
    let events = sse_events(&text);
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(
        last["error"]["message"].as_str().is_some_and(|m| m.contains("injected fault")),
        "{text}"
    );
    assert!(!text.contains("[DONE]"), "{text}");
    assert_eq!(post(&endpoint, &healthy).0, 200);
    let (_, metrics) = get(&url(&server, "/metrics"));
    assert!(metrics.contains("tokenscale_errors_total{code=\"500\"} 2"), "{metrics}");
    wait_for("the engine is idle", || metric(&server, "tokenscale_running_sequences") == 0.0);
}
