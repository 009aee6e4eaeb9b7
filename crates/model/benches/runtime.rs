//! Runtime speed on a LLaVA-shaped checkpoint: f32 GEMM peak, vision tower, LLM prefill and
//! decode. Prints one JSON object; `tools/bench/run.sh` runs it beside PyTorch on the same
//! weights and prints the ratios.
//!
//! cargo bench -p tokenscale-model --bench runtime -- DIR [--decode-tokens N] [--repeat K] [--dtype f32|bf16|f16]

use std::path::PathBuf;
use std::time::Instant;
use tokenscale_model::{Forward, ForwardOptions};

use anyhow::{Context, Result};
use tokenscale_model::llava::LlavaPipeline;
use tokenscale_model::{DType, Device, Tensor};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time<T>(repeat: usize, mut f: impl FnMut() -> Result<T>) -> Result<f64> {
    f()?; // warm-up
    let mut times = Vec::with_capacity(repeat);
    for _ in 0..repeat {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed().as_secs_f64());
    }
    Ok(median(times))
}

fn gemm_gflops(n: usize, repeat: usize) -> Result<f64> {
    let a = Tensor::randn(0f32, 1.0, (n, n), &Device::Cpu)?;
    let b = Tensor::randn(0f32, 1.0, (n, n), &Device::Cpu)?;
    let secs = time(repeat, || Ok(a.matmul(&b)?))?;
    Ok(2.0 * (n as f64).powi(3) / secs / 1e9)
}

/// Peak resident memory of this process so far (VmHWM), in MiB.
fn peak_rss_mib() -> Result<f64> {
    let bytes =
        tokenscale_model::dtype::peak_rss_bytes().context("no VmHWM in /proc/self/status")?;
    Ok(bytes as f64 / (1024.0 * 1024.0))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let dir =
        PathBuf::from(args.first().context("usage: runtime DIR [--decode-tokens N] [--repeat K]")?);
    let flag = |name: &str, default: usize| -> usize {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let decode_tokens = flag("--decode-tokens", 32);
    let repeat = flag("--repeat", 3);
    let dtype_name = args
        .iter()
        .position(|a| a == "--dtype")
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
        .unwrap_or("f32");
    let dtype = match dtype_name {
        "f32" => DType::F32,
        "bf16" => DType::BF16,
        "f16" => DType::F16,
        other => anyhow::bail!("--dtype {other}: expected f32, bf16 or f16"),
    };

    let gemm_1024 = gemm_gflops(1024, 5)?;
    let gemm_2048 = gemm_gflops(2048, 3)?;

    let pipe = LlavaPipeline::load(&dir, dtype, &Device::Cpu)?;
    let image = image::RgbImage::from_fn(480, 360, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
    });
    let prompt = tokenscale_model::llava::vicuna_v1_prompt("Describe the image in detail.");
    let mut inputs = pipe.prepare(&image, &prompt)?;
    // The processor yields f32 pixels; the vision tower runs in the checkpoint's dtype.
    inputs.pixel_values = inputs.pixel_values.to_dtype(dtype)?;
    let tokens = inputs.input_ids.len();

    let vision_s = time(repeat, || {
        pipe.model.project(
            &Forward::INFERENCE,
            &pipe.model.vision_features(&Forward::INFERENCE, &inputs.pixel_values)?,
        )
    })?;
    let embeds = pipe.embeddings(&Forward::INFERENCE, &inputs)?;
    let llm = &pipe.model.llm;
    let prefill_s = time(repeat, || {
        llm.forward_embeds(&Forward::INFERENCE, &embeds, &mut llm.new_cache(), ForwardOptions::LAST)
    })?;

    let mut cache = llm.new_cache();
    llm.forward_embeds(&Forward::INFERENCE, &embeds, &mut cache, ForwardOptions::LAST)?;
    let next = Tensor::new(&[[1u32]], llm.device())?;
    llm.forward_ids(&Forward::INFERENCE, &next, &mut cache, ForwardOptions::LAST)?; // warm-up step
    let start = Instant::now();
    for _ in 0..decode_tokens {
        llm.forward_ids(&Forward::INFERENCE, &next, &mut cache, ForwardOptions::LAST)?;
    }
    let decode_s = start.elapsed().as_secs_f64() / decode_tokens as f64;

    let c = &llm.config;
    let layer_params = c.hidden_size * (c.num_attention_heads + 2 * c.kv_heads()) * c.head_dim()
        + c.num_attention_heads * c.head_dim() * c.hidden_size
        + 3 * c.hidden_size * c.intermediate_size;
    // Matmul FLOPs of the prefill: weights (layers + LM head on the last position) and attention.
    let t = tokens as f64;
    let prefill_flops = 2.0 * t * (c.num_hidden_layers * layer_params) as f64
        + 2.0 * (c.hidden_size * c.vocab_size) as f64
        + c.num_hidden_layers as f64
            * 2.0
            * 2.0
            * t
            * t
            * (c.num_attention_heads * c.head_dim()) as f64;
    let report = serde_json::json!({
        "impl": "tokenscale",
        "dtype": dtype_name,
        "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "gemm_f32_gflops": {"1024": gemm_1024, "2048": gemm_2048},
        "prompt_tokens": tokens,
        "vision_s": vision_s,
        "prefill_s": prefill_s,
        "prefill_tokens_per_s": t / prefill_s,
        "prefill_gflops": prefill_flops / prefill_s / 1e9,
        "decode_tokens_per_s": 1.0 / decode_s,
        "peak_rss_mib": peak_rss_mib()?,
    });
    println!("{report}");
    Ok(())
}
