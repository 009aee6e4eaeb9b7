//! The malformed-request loop at full length: starts a server on the shipped tiny model in this
//! process, sends N seeded mutated requests from a few client threads, and reports the answers
//! by status, transport failures and resident memory before and after.
//!
//! cargo run --release -p tokenscale-serve --example serve_fuzz -- [COUNT] [SEED]

#[path = "../tests/common/fuzz.rs"]
mod fuzz;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::Mutex;
use std::time::Instant;

use tokenscale_model::dtype::current_rss_bytes;
use tokenscale_serve::{Limits, ServeOptions, Server};

const CLIENTS: u64 = 4;

/// Resident memory once the allocator has handed its free pages back: freed blocks it keeps
/// (per-thread arenas) count as resident until then, so this is what is really held.
fn trimmed_rss() -> u64 {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
    current_rss_bytes().unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let count: u64 = args.get(1).map_or(Ok(100_000), |s| s.parse())?;
    let seed: u64 = args.get(2).map_or(Ok(1), |s| s.parse())?;
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/tiny-imgque");
    let runtime = tokenscale_model::runtime::Runtime::load(&dir, tokenscale_model::DType::F32, &tokenscale_model::Device::Cpu)?;
    let allowed = tempfile::tempdir()?;
    let limits = Limits { max_image_bytes: 1 << 20, max_image_pixels: 1024 * 1024, max_body_bytes: 4 << 20, ..Default::default() };
    let server = Server::start(runtime, ServeOptions { port: 0, allow_files: Some(allowed.path().to_path_buf()), limits, ..Default::default() })?;
    let endpoint = format!("http://{}/v1/chat/completions", server.addr);
    let mut image = Vec::new();
    image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(40, 40, |x, y| image::Rgb([x as u8 * 6, y as u8 * 6, 90])))
        .write_to(&mut Cursor::new(&mut image), image::ImageFormat::Png)?;
    // A few valid requests first, so the baseline includes the warmed-up allocator and caches.
    let warm = r#"{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}"#;
    for _ in 0..20 {
        let _ = ureq::post(&endpoint).send_string(&warm);
    }
    let baseline = trimmed_rss();
    let counts = Mutex::new(BTreeMap::<String, u64>::new());
    let started = Instant::now();
    std::thread::scope(|scope| {
        for client in 0..CLIENTS {
            let (endpoint, image, counts) = (&endpoint, &image, &counts);
            scope.spawn(move || {
                let mut mutator = fuzz::Mutator::new(seed.wrapping_mul(1000) + client, image);
                let mut local = BTreeMap::<String, u64>::new();
                for _ in (client..count).step_by(CLIENTS as usize) {
                    let body = mutator.next_body();
                    let key = match ureq::post(endpoint).set("Content-Type", "application/json").send_bytes(&body) {
                        Ok(r) => r.status().to_string(),
                        Err(ureq::Error::Status(code, r)) => {
                            if code >= 500 {
                                eprintln!("{code}: {}\nbody: {}", r.into_string().unwrap_or_default(), String::from_utf8_lossy(&body[..body.len().min(500)]));
                            }
                            code.to_string()
                        }
                        Err(e) => format!("transport error ({})", e.kind()),
                    };
                    *local.entry(key).or_insert(0) += 1;
                }
                let mut counts = counts.lock().unwrap_or_else(|e| e.into_inner());
                for (k, v) in local {
                    *counts.entry(k).or_insert(0) += v;
                }
            });
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    let after = current_rss_bytes().unwrap_or(0);
    let trimmed = trimmed_rss();
    let healthy = ureq::post(&endpoint).send_string(&warm).map(|r| r.status()).unwrap_or(0);
    let counts = counts.into_inner().unwrap_or_else(|e| e.into_inner());
    println!("{count} mutated requests (seed {seed}, {CLIENTS} clients) in {seconds:.1} s ({:.0} requests/s)", count as f64 / seconds);
    for (status, n) in &counts {
        println!("  {status}: {n}");
    }
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "resident memory (allocator trimmed): {:.1} MiB before, {:.1} MiB after (untrimmed), {:.1} MiB after; a valid request afterwards: {healthy}",
        mib(baseline),
        mib(after),
        mib(trimmed)
    );
    server.stop()?;
    let failures: u64 = counts.iter().filter(|(k, _)| !(k.starts_with('2') || k.starts_with('4'))).map(|(_, n)| n).sum();
    if failures > 0 || healthy != 200 {
        anyhow::bail!("{failures} answers were neither 2xx nor 4xx (or the server stopped answering)");
    }
    Ok(())
}
