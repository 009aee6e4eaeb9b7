//! A short seeded run of the malformed-request loop (the 100,000-request run is
//! `cargo run --release -p tokenscale-serve --example serve_fuzz`): every answer is 2xx or 4xx,
//! never 5xx, and the server answers normally afterwards.

mod common;

#[path = "common/fuzz.rs"]
mod fuzz;

use std::collections::BTreeMap;

use common::*;
use serde_json::json;
use tokenscale_serve::{Limits, ServeOptions};

#[test]
fn mutated_requests_get_only_client_errors() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_image_bytes: 1 << 20,
        max_image_pixels: 1024 * 1024,
        max_body_bytes: 4 << 20,
        ..Default::default()
    };
    let server = start(ServeOptions {
        allow_files: Some(dir.path().to_path_buf()),
        limits,
        ..Default::default()
    });
    let endpoint = url(&server, "/v1/chat/completions");
    let image = png(40, 3);
    let counts: Vec<BTreeMap<u16, usize>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2u64)
            .map(|worker| {
                let (endpoint, image) = (&endpoint, &image);
                scope.spawn(move || {
                    let mut mutator = fuzz::Mutator::new(worker, image);
                    let mut counts = BTreeMap::new();
                    for i in 0..600 {
                        let body = mutator.next_body();
                        let (status, text, _) = post_raw(endpoint, &body, &[]);
                        assert!(
                            status < 500,
                            "worker {worker}, request {i}: {status} {text}\nbody: {}",
                            String::from_utf8_lossy(&body[..body.len().min(2000)])
                        );
                        *counts.entry(status).or_insert(0) += 1;
                    }
                    counts
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut total = BTreeMap::new();
    for c in counts {
        for (status, n) in c {
            *total.entry(status).or_insert(0) += n;
        }
    }
    assert!(
        total.get(&400).copied().unwrap_or(0) > 600,
        "most mutations must be refused: {total:?}"
    );
    let (status, answer) = post(&endpoint, &ask(&image, "Still there?", json!({"max_tokens": 3})));
    assert_eq!(status, 200, "{answer}");
}
