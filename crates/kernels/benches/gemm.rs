//! GEMM throughput of y = x · wᵀ (square n × n × n) for our bf16/f16 paths and the forced
//! portable path (f32 conversion + gemm, i.e. what a 16-bit checkpoint ran on before: candle 0.9's
//! CPU matmul rejects bf16); one JSON line. `tools/bench/gemm.sh` runs it interleaved with
//! `tools/bench/torch_gemm.py` (PyTorch, same shapes) and prints the ratios.
//!
//! cargo bench -p tokenscale-kernels --bench gemm -- [--sizes 1024,2048,4096] [--only-bf16]
//! cargo bench -p tokenscale-kernels --bench gemm -- --gemv 11008x4096   # decode: GB/s of weights read

use std::time::Instant;

use serde_json::{json, Map, Value};
use tokenscale_kernels::{
    bf16, f16, features, matmul_transposed, Backend, Half16, Kernel, MatMut, MatRef,
};

/// CPU seconds used by this process (all threads).
fn process_cpu_seconds() -> f64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into the valid, writable `t`.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

/// Median wall seconds of `repeat` runs after a warm-up. For tuning on a shared machine:
/// GEMM_BENCH_MIN=1 takes the fastest run; GEMM_BENCH_CPU=1 counts process CPU time instead of
/// wall time (meaningful with RAYON_NUM_THREADS=1: time other processes take is not counted).
fn median_seconds(repeat: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm-up
    let cpu = std::env::var_os("GEMM_BENCH_CPU").is_some();
    let mut times: Vec<f64> = (0..repeat)
        .map(|_| {
            let (start, start_cpu) = (Instant::now(), process_cpu_seconds());
            f();
            if cpu {
                process_cpu_seconds() - start_cpu
            } else {
                start.elapsed().as_secs_f64()
            }
        })
        .collect();
    times.sort_by(f64::total_cmp);
    if std::env::var_os("GEMM_BENCH_MIN").is_some() {
        times[0]
    } else {
        times[times.len() / 2]
    }
}

fn repeats(n: usize) -> usize {
    match n {
        0..=1024 => 10,
        1025..=2048 => 5,
        _ => 3,
    }
}

fn values<T>(count: usize, seed: u32, from_f32: fn(f32) -> T) -> Vec<T> {
    (0..count as u32)
        .map(|i| {
            from_f32(((i.wrapping_mul(2654435761) ^ seed) >> 8) as f32 / (1u32 << 24) as f32 - 0.5)
        })
        .collect()
}

fn ours<T: Half16>(n: usize, backend: Backend, from_f32: fn(f32) -> T) -> (f64, Kernel) {
    let x = values(n * n, 1, from_f32);
    let w = values(n * n, 2, from_f32);
    let mut y = vec![0f32; n * n];
    let mut kernel = Kernel::PortableF32Gemm;
    let secs = median_seconds(repeats(n), || {
        let (xm, wm) =
            (MatRef::new("x", &x, n, n, n).unwrap(), MatRef::new("w", &w, n, n, n).unwrap());
        kernel =
            matmul_transposed(xm, wm, MatMut::new("y", &mut y, n, n, n).unwrap(), backend).unwrap();
    });
    (2.0 * (n as f64).powi(3) / secs / 1e9, kernel)
}

/// The decode step's product: one bf16 row times an n × k bf16 weight matrix (64 MiB or more,
/// so it comes from memory, not cache), as weight bytes read per second.
fn gemv_bandwidth(n: usize, k: usize) -> (f64, Kernel) {
    let x = values(k, 1, bf16::from_f32);
    let w = values(n * k, 2, bf16::from_f32);
    let mut y = vec![0f32; n];
    let mut kernel = Kernel::PortableF32Gemm;
    let secs = median_seconds(20, || {
        let (xm, wm) =
            (MatRef::new("x", &x, 1, k, k).unwrap(), MatRef::new("w", &w, n, k, k).unwrap());
        kernel =
            matmul_transposed(xm, wm, MatMut::new("y", &mut y, 1, n, n).unwrap(), Backend::Auto)
                .unwrap();
    });
    ((n * k * 2) as f64 / secs / 1e9, kernel)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    if let Some(shape) = args.iter().position(|a| a == "--gemv").and_then(|i| args.get(i + 1)) {
        let dims: Vec<usize> = shape.split('x').filter_map(|v| v.parse().ok()).collect();
        let [n, k] = dims[..] else { panic!("--gemv wants NxK, e.g. 11008x4096") };
        let (gbs, kernel) = gemv_bandwidth(n, k);
        println!(
            "{}",
            json!({"impl": "tokenscale-kernels", "threads": rayon::current_num_threads(), "gemv": shape, "kernel": kernel.name(), "gb_per_s": gbs})
        );
        return;
    }
    let sizes: Vec<usize> = args
        .iter()
        .position(|a| a == "--sizes")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.split(',').filter_map(|v| v.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1024, 2048, 4096]);
    let only_bf16 = args.iter().any(|a| a == "--only-bf16");
    let mut table: Map<String, Value> = Map::new();
    let mut kernels: Map<String, Value> = Map::new();
    let mut record = |name: &str, n: usize, gflops: f64, kernel: Option<Kernel>| {
        let row = table.entry(name.to_string()).or_insert_with(|| json!({}));
        row[n.to_string()] = json!(gflops);
        if let Some(k) = kernel {
            kernels.insert(name.to_string(), json!(k.name()));
        }
    };
    for &n in &sizes {
        let (g, k) = ours(n, Backend::Auto, bf16::from_f32);
        record("bf16", n, g, Some(k));
        if only_bf16 {
            continue;
        }
        let (g, k) = ours(n, Backend::Auto, f16::from_f32);
        record("f16", n, g, Some(k));
        let (g, k) = ours(n, Backend::Portable, bf16::from_f32);
        record("bf16_portable", n, g, Some(k));
    }
    let report = json!({
        "impl": "tokenscale-kernels",
        "threads": rayon::current_num_threads(),
        "cpu": format!("{:?}", features()),
        "kernels": kernels,
        "gflops": table,
    });
    println!("{report}");
}
