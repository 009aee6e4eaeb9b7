//! The malformed-request loop at full length: starts a server on the shipped tiny model in this
//! process, sends N seeded mutated requests from a few client threads, and reports the answers
//! by status, transport failures and memory: resident memory (as the kernel counts it, then
//! after the allocator handed its free pages back) and the allocator's own count of the bytes
//! the program holds, at the baseline and after 1,000, 10,000, 50,000 and N requests.
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

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// One line on memory: resident now, resident after `malloc_trim` (the free pages glibc keeps
/// in its arenas handed back), the bytes the program holds (glibc's `mallinfo2`: in use in the
/// arenas plus mmapped blocks), the free bytes the arenas keep, and the thread count.
fn memory_line() -> String {
    let untrimmed = current_rss_bytes().unwrap_or(0);
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only returns free heap pages to the kernel; mallinfo2 only reads
        // the allocator's counters.
        let info = unsafe {
            libc::malloc_trim(0);
            libc::mallinfo2()
        };
        let trimmed = current_rss_bytes().unwrap_or(0);
        format!(
            "RSS {:.1} MiB, trimmed {:.1} MiB; malloc: {:.1} MiB held by the program, {:.1} MiB free in the arenas; {} threads",
            mib(untrimmed),
            mib(trimmed),
            mib((info.uordblks + info.hblkhd) as u64),
            mib(info.fordblks as u64),
            threads()
        )
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    format!("RSS {:.1} MiB; {} threads", mib(untrimmed), threads())
}

fn threads() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .map_or_else(|| "?".into(), |n| n.trim().to_string())
}

/// Sends `count` mutated requests, shared among the clients (each with its own mutator).
fn send_mutated(
    endpoint: &str,
    mutators: &mut [fuzz::Mutator],
    count: u64,
    counts: &Mutex<BTreeMap<String, u64>>,
) {
    std::thread::scope(|scope| {
        for (client, mutator) in mutators.iter_mut().enumerate() {
            let share = count / CLIENTS + u64::from((client as u64) < count % CLIENTS);
            scope.spawn(move || {
                let mut local = BTreeMap::<String, u64>::new();
                for _ in 0..share {
                    let body = mutator.next_body();
                    let key = match ureq::post(endpoint)
                        .set("Content-Type", "application/json")
                        .send_bytes(&body)
                    {
                        Ok(r) => r.status().to_string(),
                        Err(ureq::Error::Status(code, r)) => {
                            if code >= 500 {
                                eprintln!(
                                    "{code}: {}\nbody: {}",
                                    r.into_string().unwrap_or_default(),
                                    String::from_utf8_lossy(&body[..body.len().min(500)])
                                );
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
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let count: u64 = args.get(1).map_or(Ok(100_000), |s| s.parse())?;
    let seed: u64 = args.get(2).map_or(Ok(1), |s| s.parse())?;
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/tiny-imgque");
    let runtime = tokenscale_model::runtime::Runtime::load(
        &dir,
        tokenscale_model::DType::F32,
        &tokenscale_model::Device::Cpu,
    )?;
    let allowed = tempfile::tempdir()?;
    let limits = Limits {
        max_image_bytes: 1 << 20,
        max_image_pixels: 1024 * 1024,
        max_body_bytes: 4 << 20,
        ..Default::default()
    };
    let server = Server::start(
        runtime,
        ServeOptions {
            port: 0,
            allow_files: Some(allowed.path().to_path_buf()),
            limits,
            ..Default::default()
        },
    )?;
    let endpoint = format!("http://{}/v1/chat/completions", server.addr);
    let mut image = Vec::new();
    image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(40, 40, |x, y| {
        image::Rgb([x as u8 * 6, y as u8 * 6, 90])
    }))
    .write_to(&mut Cursor::new(&mut image), image::ImageFormat::Png)?;
    // A few valid requests first, so the baseline includes the warmed-up allocator and caches.
    let warm = r#"{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}"#;
    for _ in 0..20 {
        let _ = ureq::post(&endpoint).send_string(warm);
    }
    println!("baseline: {}", memory_line());
    let counts = Mutex::new(BTreeMap::<String, u64>::new());
    let mut mutators: Vec<fuzz::Mutator> = (0..CLIENTS)
        .map(|client| fuzz::Mutator::new(seed.wrapping_mul(1000) + client, &image))
        .collect();
    let mut checkpoints: Vec<u64> =
        [1_000, 10_000, 50_000].into_iter().filter(|&c| c < count).collect();
    checkpoints.push(count);
    let started = Instant::now();
    let mut sent = 0;
    for checkpoint in checkpoints {
        send_mutated(&endpoint, &mut mutators, checkpoint - sent, &counts);
        sent = checkpoint;
        println!("after {checkpoint} requests: {}", memory_line());
    }
    let seconds = started.elapsed().as_secs_f64();
    // Idle blocking threads (image work, tokenising) end after 10 s; their stacks go with them.
    std::thread::sleep(std::time::Duration::from_secs(11));
    println!("after 11 s idle: {}", memory_line());
    let healthy = ureq::post(&endpoint).send_string(warm).map(|r| r.status()).unwrap_or(0);
    let counts = counts.into_inner().unwrap_or_else(|e| e.into_inner());
    println!("{count} mutated requests (seed {seed}, {CLIENTS} clients) in {seconds:.1} s ({:.0} requests/s)", count as f64 / seconds);
    for (status, n) in &counts {
        println!("  {status}: {n}");
    }
    println!("a valid request afterwards: {healthy}");
    server.stop()?;
    let failures: u64 = counts
        .iter()
        .filter(|(k, _)| !(k.starts_with('2') || k.starts_with('4')))
        .map(|(_, n)| n)
        .sum();
    if failures > 0 || healthy != 200 {
        anyhow::bail!(
            "{failures} answers were neither 2xx nor 4xx (or the server stopped answering)"
        );
    }
    Ok(())
}
