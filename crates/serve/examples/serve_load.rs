//! Load test on loopback: a server in this process, then for each client count C, C clients
//! sending streamed requests back to back for S seconds (each stops by itself at the deadline;
//! requests running then finish). Per level: requests/s, latency and time-to-first-token
//! percentiles, aggregate decode tokens/s, failures by status, peak resident memory.
//!
//! cargo run --release -p tokenscale-serve --example serve_load -- --model DIR --clients 1,4,16,64 --seconds 60

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Cursor};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Parser;
use serde_json::{json, Value};
use tokenscale_model::dtype::{peak_rss_bytes, DtypePolicy};
use tokenscale_serve::{ServeOptions, Server};

#[derive(Parser)]
struct Args {
    /// Checkpoint folder (default: the shipped tiny query-fused model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Compute dtype: auto, bf16 or f32.
    #[arg(long, default_value = "auto")]
    dtype: String,
    /// Client counts, one level each.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
    clients: Vec<usize>,
    /// Seconds per level.
    #[arg(long, default_value_t = 60.0)]
    seconds: f64,
    /// Answer tokens per request (the end-of-answer token is ignored, so every answer has this length).
    #[arg(long, default_value_t = 32)]
    max_tokens: usize,
    /// Vision tokens per request (LLaVA: with --reducer).
    #[arg(long)]
    vision_tokens: Option<usize>,
    /// LLaVA reducer for --vision-tokens.
    #[arg(long)]
    reducer: Option<String>,
    /// The server's batch size.
    #[arg(long, default_value_t = 16)]
    max_batch: usize,
    /// The server's queue.
    #[arg(long, default_value_t = 32)]
    queue: usize,
    /// The server's prefill chunk.
    #[arg(long, default_value_t = 64)]
    prefill_chunk: usize,
    /// Side of the square test image, in pixels.
    #[arg(long, default_value_t = 336)]
    image_size: u32,
}

/// One client's record of one request.
struct Outcome {
    status: u16,
    latency: f64,
    first_token: Option<f64>,
    completion_tokens: u64,
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    values[((values.len() - 1) as f64 * p).round() as usize]
}

/// One streamed request: status, total time, time to the first token's chunk, usage.
fn one_request(endpoint: &str, body: &str) -> Outcome {
    let begin = Instant::now();
    let response =
        match ureq::post(endpoint).set("Content-Type", "application/json").send_string(body) {
            Ok(r) => r,
            Err(ureq::Error::Status(code, _)) => {
                return Outcome {
                    status: code,
                    latency: begin.elapsed().as_secs_f64(),
                    first_token: None,
                    completion_tokens: 0,
                }
            }
            Err(_) => {
                return Outcome {
                    status: 0,
                    latency: begin.elapsed().as_secs_f64(),
                    first_token: None,
                    completion_tokens: 0,
                }
            }
        };
    let mut first_token = None;
    let mut completion_tokens = 0;
    let mut complete = false;
    let mut chunks = 0;
    for line in BufReader::new(response.into_reader()).lines() {
        let Ok(line) = line else { break };
        let Some(data) = line.strip_prefix("data: ") else { continue };
        if data == "[DONE]" {
            complete = true;
            break;
        }
        let Ok(chunk) = serde_json::from_str::<Value>(data) else { continue };
        // The first chunk after the role chunk carries the first token's text (which may be
        // empty: a token can complete no character yet).
        chunks += 1;
        if chunks == 2 {
            first_token = Some(begin.elapsed().as_secs_f64());
        }
        if let Some(n) = chunk["usage"]["completion_tokens"].as_u64() {
            completion_tokens = n;
        }
    }
    Outcome {
        status: if complete { 200 } else { 599 },
        latency: begin.elapsed().as_secs_f64(),
        first_token,
        completion_tokens,
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let dir = args.model.clone().unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/tiny-imgque")
    });
    let policy = match args.dtype.as_str() {
        "auto" => DtypePolicy::Auto,
        "bf16" => DtypePolicy::Fixed(tokenscale_model::DType::BF16),
        "f32" => DtypePolicy::Fixed(tokenscale_model::DType::F32),
        other => anyhow::bail!("dtype {other}: use auto, bf16 or f32"),
    };
    let loaded =
        tokenscale_model::runtime::Runtime::open(&dir, policy, &tokenscale_model::Device::Cpu)?;
    let dtype = format!("{:?}", loaded.dtype.dtype);
    let options = ServeOptions {
        port: 0,
        max_batch: args.max_batch,
        queue: args.queue,
        prefill_chunk: args.prefill_chunk,
        ..Default::default()
    };
    let server = Server::start(loaded.runtime, options)?;
    let endpoint = format!("http://{}/v1/chat/completions", server.addr);
    let mut png = Vec::new();
    let size = args.image_size;
    image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(size, size, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
    }))
    .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)?;
    let url = format!(
        "data:image/png;base64,{}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &png)
    );
    let mut body = json!({
        "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "Describe the image in detail."}]}],
        "max_tokens": args.max_tokens, "temperature": 0, "ignore_eos": true, "stream": true, "stream_options": {"include_usage": true},
    });
    if let Some(n) = args.vision_tokens {
        body["vision_tokens"] = json!(n);
    }
    if let Some(r) = &args.reducer {
        body["reducer"] = json!(r);
    }
    let body = body.to_string();
    // Warm-up: one request, not counted.
    let warm = one_request(&endpoint, &body);
    anyhow::ensure!(warm.status == 200, "the warm-up request failed with status {}", warm.status);
    println!("model {} ({dtype}), {} answer tokens per request, batch {}, queue {}, prefill chunk {}, {} s per level", dir.display(), args.max_tokens, args.max_batch, args.queue, args.prefill_chunk, args.seconds);
    println!("| clients | requests/s | p50 latency s | p99 latency s | p50 TTFT s | p99 TTFT s | decode tokens/s | failures | peak RSS MiB |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for &clients in &args.clients {
        let started = Instant::now();
        let deadline = started + Duration::from_secs_f64(args.seconds);
        let outcomes: Vec<Outcome> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..clients)
                .map(|_| {
                    let (endpoint, body) = (&endpoint, &body);
                    scope.spawn(move || {
                        let mut mine = Vec::new();
                        while Instant::now() < deadline {
                            let outcome = one_request(endpoint, body);
                            if outcome.status == 429 {
                                // As a client honouring Retry-After would.
                                std::thread::sleep(Duration::from_secs(1));
                            }
                            mine.push(outcome);
                        }
                        mine
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
        });
        let wall = started.elapsed().as_secs_f64();
        let ok: Vec<&Outcome> = outcomes.iter().filter(|o| o.status == 200).collect();
        let mut latency: Vec<f64> = ok.iter().map(|o| o.latency).collect();
        let mut ttft: Vec<f64> = ok.iter().filter_map(|o| o.first_token).collect();
        let tokens: u64 = ok.iter().map(|o| o.completion_tokens).sum();
        let mut failures = BTreeMap::<u16, usize>::new();
        for o in outcomes.iter().filter(|o| o.status != 200) {
            *failures.entry(o.status).or_insert(0) += 1;
        }
        let failures = if failures.is_empty() {
            "0".to_string()
        } else {
            failures.iter().map(|(s, n)| format!("{n}×{s}")).collect::<Vec<_>>().join(", ")
        };
        println!(
            "| {clients} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {failures} | {:.0} |",
            ok.len() as f64 / wall,
            percentile(&mut latency, 0.5),
            percentile(&mut latency, 0.99),
            percentile(&mut ttft, 0.5),
            percentile(&mut ttft, 0.99),
            tokens as f64 / wall,
            peak_rss_bytes().unwrap_or(0) as f64 / (1 << 20) as f64
        );
    }
    server.stop()
}
