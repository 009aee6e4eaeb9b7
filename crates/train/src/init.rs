//! Seeded parameter initialisation (our own generator, so a run is the same on every machine).

use anyhow::Result;
use candle_core::{Device, Tensor};
use tokenscale_base::rng::SplitMix64;

/// Standard normal samples from the project's SplitMix64 + Box–Muller.
pub struct Gaussian {
    stream: SplitMix64,
    spare: Option<f64>,
}

/// XORed into every seed, so initial weights differ from other users' streams of the same seed.
const SEED_SALT: u64 = 0x2545_f491_4f6c_dd1d;

impl Gaussian {
    /// A generator whose samples are fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Self { stream: SplitMix64::new(seed ^ SEED_SALT), spare: None }
    }

    /// The next 64 uniformly distributed bits (splitmix64).
    pub fn next_u64(&mut self) -> u64 {
        self.stream.next_u64()
    }

    /// Uniform in (0, 1].
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    /// A standard normal sample (Box–Muller; the second of each pair is kept for the next call).
    pub fn sample(&mut self) -> f64 {
        if let Some(s) = self.spare.take() {
            return s;
        }
        let (u, v) = (self.uniform(), self.uniform());
        let r = (-2.0 * u.ln()).sqrt();
        let theta = std::f64::consts::TAU * v;
        self.spare = Some(r * theta.sin());
        r * theta.cos()
    }
}

/// Norm gains start at 1, biases at 0, everything else (projections, embeddings, the merge
/// convolution, the line-feed token) at N(0, 0.02²) as GPT-2/Llama-style models do.
pub fn initial_value(key: &str, shape: &[usize], rng: &mut Gaussian) -> Result<Tensor> {
    let count: usize = shape.iter().product();
    let is_norm = key.contains("norm") || key.contains("layrnorm");
    let values: Vec<f32> = if is_norm && key.ends_with(".weight") {
        vec![1.0; count]
    } else if key.ends_with(".bias") {
        vec![0.0; count]
    } else {
        (0..count).map(|_| (0.02 * rng.sample()) as f32).collect()
    };
    Ok(Tensor::from_vec(values, shape, &Device::Cpu)?)
}
