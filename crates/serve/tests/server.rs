//! The server on the shipped tiny query-fused model, through a real HTTP client: answers equal
//! the library's own generation, streaming equals the plain answer, concurrent requests with
//! different budgets equal the same requests sent alone, multi-turn budgets, models, metrics.

mod common;

use common::*;
use serde_json::{json, Value};
use tokenscale_model::chat::Conversation;
use tokenscale_model::generation::GenerationConfig;
use tokenscale_model::runtime::VisionBudget;
use tokenscale_model::tokenizer::TokenStream;
use tokenscale_model::Forward;
use tokenscale_serve::ServeOptions;

/// What `tokenscale run` would answer: the library's prepare + generate, detokenised.
fn library_answer(
    image: &[u8],
    question: &str,
    vision_tokens: usize,
    max_tokens: usize,
) -> (String, usize, usize, &'static str) {
    let runtime = load();
    let img = image::load_from_memory(image).unwrap().to_rgb8();
    let budget = VisionBudget { tokens: Some(vision_tokens), ..Default::default() };
    let prepared = runtime
        .prepare_chat(
            &Forward::INFERENCE,
            Some(&img),
            &Conversation::new().user(question),
            &budget,
            None,
        )
        .unwrap();
    let stops = runtime.stop_tokens();
    let config = GenerationConfig {
        max_new_tokens: max_tokens,
        stop_tokens: stops.clone(),
        ..Default::default()
    };
    let tokens = runtime.generate(&Forward::INFERENCE, &prepared, &config, |_| Ok(())).unwrap();
    let mut pieces = TokenStream::new(runtime.tokenizer());
    let text: String =
        tokens.iter().filter(|t| !stops.contains(t)).map(|&t| pieces.push(t).unwrap()).collect();
    let finish = if tokens.last().is_some_and(|t| stops.contains(t)) { "stop" } else { "length" };
    (text, tokens.len(), prepared.vision_tokens, finish)
}

#[test]
fn plain_answer_equals_the_library_generation() {
    // One prefill chunk for the whole prompt: the server's path is then exactly `generate`'s.
    let server = start(ServeOptions { prefill_chunk: 100_000, ..Default::default() });
    let image = png(96, 3);
    for n in [16, 64] {
        let (status, answer) = post(
            &url(&server, "/v1/chat/completions"),
            &ask(&image, "What shape is in the image?", json!({"vision_tokens": n})),
        );
        assert_eq!(status, 200, "{answer}");
        let (want, completion, vision, finish) =
            library_answer(&image, "What shape is in the image?", n, 24);
        assert_eq!(content(&answer), want, "n = {n}");
        assert_eq!(answer["object"], "chat.completion");
        assert_eq!(answer["model"], "tiny-imgque");
        assert_eq!(answer["choices"][0]["message"]["role"], "assistant");
        assert_eq!(answer["choices"][0]["finish_reason"], finish);
        assert_eq!(answer["usage"]["vision_tokens"], vision);
        assert_eq!(vision, n);
        assert_eq!(answer["usage"]["completion_tokens"], completion);
        let usage = &answer["usage"];
        assert_eq!(
            usage["total_tokens"].as_u64().unwrap(),
            usage["prompt_tokens"].as_u64().unwrap() + completion as u64
        );
        assert!(answer["id"].as_str().unwrap().starts_with("chatcmpl-"));
    }
}

#[test]
fn streamed_chunks_add_up_to_the_plain_answer() {
    let server = start(ServeOptions::default());
    let body = ask(&png(64, 9), "What color is the shape?", json!({"vision_tokens": 32}));
    let (_, plain) = post(&url(&server, "/v1/chat/completions"), &body);
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let (status, text, _) =
        post_raw(&url(&server, "/v1/chat/completions"), streamed.to_string().as_bytes(), &[]);
    assert_eq!(status, 200, "{text}");
    let events = sse_events(&text);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> =
        events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let mut joined = String::new();
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        if let Some(piece) = c["choices"][0]["delta"]["content"].as_str() {
            joined.push_str(piece);
        }
    }
    assert_eq!(joined, content(&plain));
    // The finish chunk, then the usage chunk (no choices), then [DONE].
    let (finish, usage) = (&chunks[chunks.len() - 2], &chunks[chunks.len() - 1]);
    assert_eq!(finish["choices"][0]["finish_reason"], plain["choices"][0]["finish_reason"]);
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"], plain["usage"]);
}

#[test]
fn concurrent_requests_with_different_budgets_equal_each_request_alone() {
    // Small chunks and a batch smaller than the load: prefill interleaves with decoding, and
    // requests join and leave the batch between steps.
    let server = start(ServeOptions { max_batch: 3, prefill_chunk: 8, ..Default::default() });
    let endpoint = url(&server, "/v1/chat/completions");
    let requests: Vec<Value> = [(4, 1), (8, 2), (16, 3), (32, 4), (64, 5), (12, 6)]
        .iter()
        .map(|&(n, seed)| {
            ask(
                &png(48 + 8 * seed as u32, seed),
                "Where is the shape?",
                json!({"vision_tokens": n, "max_tokens": 12 + 3 * seed as u64}),
            )
        })
        .collect();
    let alone: Vec<Value> = requests.iter().map(|r| post(&endpoint, r).1).collect();
    let together: Vec<Value> = std::thread::scope(|scope| {
        let handles: Vec<_> =
            requests.iter().map(|r| scope.spawn(|| post(&endpoint, r).1)).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, (a, t)) in alone.iter().zip(&together).enumerate() {
        assert_eq!(content(a), content(t), "request {i}: batching changed the answer");
        assert_eq!(a["usage"], t["usage"], "request {i}");
        assert_eq!(
            a["choices"][0]["finish_reason"], t["choices"][0]["finish_reason"],
            "request {i}"
        );
    }
}

#[test]
fn a_conversation_gives_n_l_to_the_first_question_and_n_s_to_later_ones() {
    let server = start(ServeOptions::default());
    let image = png(64, 1);
    let body = json!({
        "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(&image)}}, {"type": "text", "text": "What shape?"}]},
            {"role": "assistant", "content": "a circle"},
            {"role": "user", "content": "What color?"},
        ],
        "vision_tokens": 32, "short_tokens": 8, "temperature": 0, "max_tokens": 8,
    });
    let (status, answer) = post(&url(&server, "/v1/chat/completions"), &body);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["usage"]["vision_tokens"], 32 + 8);
    // drop_query is taken per request (and refused for no model here).
    let mut dropped = body.clone();
    dropped["drop_query"] = json!(true);
    assert_eq!(post(&url(&server, "/v1/chat/completions"), &dropped).0, 200);
}

#[test]
fn sampling_is_reproducible_with_a_seed_and_stop_sequences_cut_the_answer() {
    let server = start(ServeOptions::default());
    let endpoint = url(&server, "/v1/chat/completions");
    let body = ask(
        &png(64, 4),
        "Describe the image.",
        json!({"temperature": 0.9, "top_p": 0.9, "seed": 7, "max_tokens": 16}),
    );
    let (a, b) = (post(&endpoint, &body).1, post(&endpoint, &body).1);
    assert_eq!(content(&a), content(&b));
    let greedy = content(
        &post(&endpoint, &ask(&png(64, 4), "Describe the image.", json!({"max_tokens": 16}))).1,
    );
    // Stop at the answer's second character: only the first one comes back.
    let mut chars = greedy.chars();
    if let (Some(first), Some(second)) = (chars.next(), chars.next()) {
        let (status, cut) = post(
            &endpoint,
            &ask(
                &png(64, 4),
                "Describe the image.",
                json!({"max_tokens": 16, "stop": [second.to_string()]}),
            ),
        );
        assert_eq!(status, 200);
        let want: String = greedy.split(second).next().unwrap_or_default().to_string();
        assert_eq!(content(&cut), want);
        assert!(content(&cut).starts_with(first) || want.is_empty());
        assert_eq!(cut["choices"][0]["finish_reason"], "stop");
    }
}

#[test]
fn models_health_and_metrics() {
    let server = start(ServeOptions::default());
    let (status, models) = get(&url(&server, "/v1/models"));
    assert_eq!(status, 200);
    let models: Value = serde_json::from_str(&models).unwrap();
    assert_eq!(models["data"][0]["id"], "tiny-imgque");
    assert_eq!(get(&url(&server, "/health")).0, 200);
    let (status, _) = post(
        &url(&server, "/v1/chat/completions"),
        &ask(&png(32, 2), "Hi?", json!({"max_tokens": 4})),
    );
    assert_eq!(status, 200);
    let _ = post(&url(&server, "/v1/chat/completions"), &json!({"messages": 3}));
    let (status, text) = get(&url(&server, "/metrics"));
    assert_eq!(status, 200);
    for needle in [
        "tokenscale_requests_total{code=\"200\"}",
        "tokenscale_errors_total{code=\"400\"} 1",
        "tokenscale_queue_depth 0",
        "tokenscale_time_to_first_token_seconds_count 1",
        "tokenscale_generated_tokens_total",
        "tokenscale_decode_tokens_per_second",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }
}
