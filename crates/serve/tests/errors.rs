//! Every refusal path of the server: OpenAI-style error JSON with the right status and `param`,
//! limits (body, image bytes and pixels, prompt tokens and the context, both checked before any
//! image work, max_tokens), the API key, the bounded queue (429 with Retry-After), a
//! disconnecting client freeing its slot, and a graceful stop.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use tokenscale_serve::{Limits, ServeOptions};

fn assert_error(status: u16, body: &Value, want_status: u16, want_param: Option<&str>, what: &str) {
    assert_eq!(status, want_status, "{what}: {body}");
    let error = &body["error"];
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {body}");
    assert!(error["type"].is_string(), "{what}: {body}");
    assert!(error.get("code").is_some() && error.get("param").is_some(), "{what}: {body}");
    if let Some(param) = want_param {
        assert_eq!(error["param"], param, "{what}: {body}");
    }
}

#[test]
fn malformed_requests_are_400_with_the_field_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("inside.png"), png(32, 1)).unwrap();
    let limits = Limits {
        max_image_bytes: 20_000,
        max_image_pixels: 200 * 200,
        max_prompt_tokens: 600,
        max_tokens: 64,
        default_max_tokens: 16,
        ..Default::default()
    };
    let server = start(ServeOptions {
        limits,
        allow_files: Some(dir.path().to_path_buf()),
        ..Default::default()
    });
    let endpoint = url(&server, "/v1/chat/completions");
    let image = png(64, 5);
    let with = |extra: Value| ask(&image, "What shape?", extra);
    let image_message = |url: &str| json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "q"}]}]});
    let mut truncated = png(64, 2);
    truncated.truncate(truncated.len() / 2);
    let cases: Vec<(&str, Value, u16, Option<&str>)> = vec![
        ("no messages", json!({"model": "x"}), 400, Some("messages")),
        ("messages not a list", json!({"messages": "hi"}), 400, Some("messages")),
        ("empty messages", json!({"messages": []}), 400, Some("messages")),
        ("message not an object", json!({"messages": [3]}), 400, Some("messages[0]")),
        (
            "unknown role",
            json!({"messages": [{"role": "robot", "content": "hi"}]}),
            400,
            Some("messages[0].role"),
        ),
        (
            "content a number",
            json!({"messages": [{"role": "user", "content": 5}]}),
            400,
            Some("messages[0].content"),
        ),
        (
            "unknown part type",
            json!({"messages": [{"role": "user", "content": [{"type": "audio"}]}]}),
            400,
            Some("messages[0].content[0].type"),
        ),
        (
            "text part without text",
            json!({"messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]}),
            400,
            Some("messages[0].content[0].text"),
        ),
        (
            "roles out of order",
            json!({"messages": [{"role": "assistant", "content": "hi"}]}),
            400,
            Some("messages"),
        ),
        (
            "last message not the user's",
            json!({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}),
            400,
            Some("messages"),
        ),
        (
            "http image",
            image_message("https://example.com/cat.png"),
            400,
            Some("messages[0].content[0].image_url"),
        ),
        (
            "path outside the folder",
            image_message("/etc/passwd"),
            400,
            Some("messages[0].content[0].image_url"),
        ),
        (
            "path escaping the folder",
            image_message("../../../../etc/hostname"),
            400,
            Some("messages[0].content[0].image_url"),
        ),
        (
            "bad base64",
            image_message("data:image/png;base64,@@@not base64@@@"),
            400,
            Some("messages[0].content[0].image_url"),
        ),
        (
            "data URL without base64",
            image_message("data:image/png,abc"),
            400,
            Some("messages[0].content[0].image_url"),
        ),
        ("not an image", image_message(&data_url(b"hello, not an image")), 400, Some("messages")),
        ("truncated image", image_message(&data_url(&truncated)), 400, Some("messages")),
        (
            "image over the byte limit",
            image_message(&data_url(&vec![0u8; 30_000])),
            413,
            Some("messages[0].content[0].image_url"),
        ),
        (
            "image over the pixel limit",
            image_message(&data_url(&png(256, 1))),
            413,
            Some("messages"),
        ),
        (
            "two images",
            json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": data_url(&image)}}, {"type": "image_url", "image_url": {"url": data_url(&image)}}, {"type": "text", "text": "q"}]}]}),
            400,
            Some("messages[0].content[1]"),
        ),
        ("max_tokens over the limit", with(json!({"max_tokens": 65})), 400, Some("max_tokens")),
        (
            "max_completion_tokens 0",
            with(json!({"max_completion_tokens": 0})),
            400,
            Some("max_completion_tokens"),
        ),
        ("negative max_tokens", with(json!({"max_tokens": -3})), 400, Some("max_tokens")),
        ("max_tokens a string", with(json!({"max_tokens": "10"})), 400, Some("max_tokens")),
        ("temperature a string", with(json!({"temperature": "hot"})), 400, Some("temperature")),
        ("temperature too high", with(json!({"temperature": 7})), 400, Some("temperature")),
        ("top_p 0", with(json!({"top_p": 0})), 400, Some("top_p")),
        ("seed a float", with(json!({"seed": 1.5})), 400, Some("seed")),
        ("stream a string", with(json!({"stream": "yes"})), 400, Some("stream")),
        (
            "five stop sequences",
            with(json!({"stop": ["a", "b", "c", "d", "e"]})),
            400,
            Some("stop"),
        ),
        ("empty stop sequence", with(json!({"stop": ""})), 400, Some("stop")),
        ("n = 2", with(json!({"n": 2})), 400, Some("n")),
        ("model a number", with(json!({"model": 7})), 400, Some("model")),
        ("vision_tokens 0", with(json!({"vision_tokens": 0})), 400, Some("vision_tokens")),
        (
            "vision_tokens huge",
            with(json!({"vision_tokens": 1u64 << 40})),
            400,
            Some("vision_tokens"),
        ),
        ("vision_tokens the model cannot serve", with(json!({"vision_tokens": 5000})), 400, None),
        ("a reducer for the query-fused model", with(json!({"reducer": "pool"})), 400, None),
        ("drop_query a number", with(json!({"drop_query": 1})), 400, Some("drop_query")),
        (
            "prompt over the token limit",
            ask(&image, &"long question ".repeat(600), json!({})),
            400,
            Some("messages"),
        ),
    ];
    for (what, body, status, param) in cases {
        let (got, answer) = post(&endpoint, &body);
        assert_error(got, &answer, status, param, what);
    }
    // Not JSON, not an object, over the body limit.
    for (what, body, status) in [
        ("broken JSON", b"{\"messages\": [".to_vec(), 400),
        ("a JSON list", b"[1, 2]".to_vec(), 400),
    ] {
        let (got, text, _) = post_raw(&endpoint, &body, &[]);
        assert_error(got, &serde_json::from_str(&text).unwrap(), status, None, what);
    }
    // An image inside the allowed folder is fine; unknown fields are ignored.
    let (status, answer) = post(
        &endpoint,
        &json!({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": dir.path().join("inside.png").to_str().unwrap()}}, {"type": "text", "text": "q"}]}],
        "max_tokens": 4, "frequency_penalty": 0, "logprobs": false, "user": "me"}),
    );
    assert_eq!(status, 200, "{answer}");
    let (status, text) = get(&url(&server, "/v1/nothing"));
    assert_error(status, &serde_json::from_str(&text).unwrap(), 404, None, "unknown endpoint");
}

#[test]
fn prompt_length_limits_are_checked_before_the_image_is_decoded() {
    // The prompt's length with 16 vision tokens, from a served request.
    let image = png(64, 2);
    let question = "What shape?";
    let probe = start(ServeOptions::default());
    let (status, answer) = post(
        &url(&probe, "/v1/chat/completions"),
        &ask(&image, question, json!({"vision_tokens": 16, "max_tokens": 2})),
    );
    assert_eq!(status, 200, "{answer}");
    let with_16 = answer["usage"]["prompt_tokens"].as_u64().unwrap() as usize;
    // A limit that 16 vision tokens fit under and 64 do not.
    let server = start(ServeOptions {
        limits: Limits { max_prompt_tokens: with_16 + 10, ..Default::default() },
        ..Default::default()
    });
    let endpoint = url(&server, "/v1/chat/completions");
    assert_eq!(
        post(&endpoint, &ask(&image, question, json!({"vision_tokens": 16, "max_tokens": 2}))).0,
        200
    );
    // Broken images: decoding one is refused ("cannot decode"), so an answer that names the
    // prompt's length instead shows that the length was checked first.
    let mut truncated = image.clone();
    truncated.truncate(image.len() / 2);
    let (status, answer) =
        post(&endpoint, &ask(&truncated, question, json!({"vision_tokens": 16})));
    assert_error(status, &answer, 400, Some("messages"), "a truncated image");
    assert!(answer["error"]["message"].as_str().unwrap().contains("decode"), "{answer}");
    let not_an_image = b"not an image at all".to_vec();
    for (what, broken) in [("truncated", &truncated), ("not an image", &not_an_image)] {
        // The vision tokens the budget gives count: 64 of them put the prompt over the limit.
        let (status, answer) =
            post(&endpoint, &ask(broken, question, json!({"vision_tokens": 64})));
        assert_error(status, &answer, 400, Some("messages"), what);
        assert_eq!(answer["error"]["code"], "context_length_exceeded", "{what}: {answer}");
        let (status, answer) = post(
            &endpoint,
            &ask(broken, &"long question ".repeat(100), json!({"vision_tokens": 16})),
        );
        assert_error(status, &answer, 400, Some("messages"), what);
        assert_eq!(answer["error"]["code"], "context_length_exceeded", "{what}: {answer}");
        // The model's context (512 positions) is checked first too.
        let (status, answer) = post(
            &endpoint,
            &ask(broken, question, json!({"vision_tokens": 16, "max_tokens": 500})),
        );
        assert_error(status, &answer, 400, Some("max_tokens"), what);
        assert_eq!(answer["error"]["code"], "context_length_exceeded", "{what}: {answer}");
    }
}

#[test]
fn a_body_over_the_limit_is_413() {
    let server = start(ServeOptions {
        limits: Limits { max_body_bytes: 4096, ..Default::default() },
        ..Default::default()
    });
    let body = json!({"messages": [{"role": "user", "content": "x".repeat(10_000)}]});
    let (status, text, _) =
        post_raw(&url(&server, "/v1/chat/completions"), body.to_string().as_bytes(), &[]);
    assert_error(status, &serde_json::from_str(&text).unwrap(), 413, None, "body over the limit");
}

#[test]
fn the_api_key_is_required_when_set() {
    let server = start(ServeOptions { api_key: Some("sesame".into()), ..Default::default() });
    let endpoint = url(&server, "/v1/chat/completions");
    let body = ask(&png(32, 1), "q", json!({"max_tokens": 2})).to_string();
    for headers in
        [vec![], vec![("Authorization", "Bearer wrong")], vec![("Authorization", "sesame")]]
    {
        let (status, text, _) = post_raw(&endpoint, body.as_bytes(), &headers);
        assert_error(status, &serde_json::from_str(&text).unwrap(), 401, None, "API key");
    }
    assert_eq!(post_raw(&endpoint, body.as_bytes(), &[("Authorization", "Bearer sesame")]).0, 200);
    assert_eq!(get(&url(&server, "/v1/models")).0, 401);
    assert_eq!(get(&url(&server, "/health")).0, 200);
}

/// Opens a streaming request on a raw socket and reads until the first chunk arrived.
fn open_stream(addr: std::net::SocketAddr, body: &Value) -> std::net::TcpStream {
    let mut socket = std::net::TcpStream::connect(addr).unwrap();
    let body = body.to_string();
    write!(socket, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("data: ") {
        let n = socket.read(&mut buf).unwrap();
        assert!(n > 0, "the stream ended early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(
        String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    socket
}

fn held_requests(server: &tokenscale_serve::Server) -> u64 {
    let (_, text) = get(&url(server, "/health"));
    serde_json::from_str::<Value>(&text).unwrap()["held_requests"].as_u64().unwrap()
}

/// A streamed answer of 400 tokens (the end-of-answer token ignored).
fn long_request() -> Value {
    ask(
        &png(32, 7),
        "Tell me everything.",
        json!({"max_tokens": 400, "stream": true, "ignore_eos": true}),
    )
}

#[test]
fn a_full_queue_answers_429_and_a_disconnected_client_frees_its_slot() {
    let server = start(ServeOptions { max_batch: 1, queue: 0, ..Default::default() });
    let endpoint = url(&server, "/v1/chat/completions");
    let socket = open_stream(server.addr, &long_request());
    assert_eq!(held_requests(&server), 1);
    let (status, text, retry) = post_raw(
        &endpoint,
        ask(&png(32, 1), "q", json!({"max_tokens": 2})).to_string().as_bytes(),
        &[],
    );
    assert_error(status, &serde_json::from_str(&text).unwrap(), 429, None, "full queue");
    assert_eq!(retry.as_deref(), Some("1"));
    drop(socket);
    let deadline = Instant::now() + Duration::from_secs(20);
    while held_requests(&server) > 0 {
        assert!(Instant::now() < deadline, "the disconnected client's slot was not freed");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(post(&endpoint, &ask(&png(32, 1), "q", json!({"max_tokens": 2}))).0, 200);
    let (_, metrics) = get(&url(&server, "/metrics"));
    assert!(metrics.contains("tokenscale_abandoned_requests_total 1"), "{metrics}");
}

#[test]
fn stopping_finishes_running_requests_and_refuses_new_connections() {
    let server = start(ServeOptions::default());
    let addr = server.addr;
    let mut socket = open_stream(addr, &long_request());
    let stopper = std::thread::spawn(move || server.stop());
    let mut rest = String::new();
    socket.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("data: [DONE]"), "the running answer was cut: {rest}");
    stopper.join().unwrap().unwrap();
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "a stopped server still accepts connections"
    );
}
