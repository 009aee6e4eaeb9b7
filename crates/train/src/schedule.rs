//! The schedules a run follows step by step: the learning rate (linear warm-up, then cosine
//! decay) and the vision-token budget each example of a batch is trained at. Both are pure
//! functions of the config and the step, so a resumed run follows them exactly.

use crate::config::TrainConfig;
use crate::init::Gaussian;

impl TrainConfig {
    /// Linear warm-up, then cosine decay from `lr` to `min_lr`.
    pub fn learning_rate(&self, step: u64) -> f64 {
        if step < self.warmup {
            return self.lr * (step + 1) as f64 / self.warmup as f64;
        }
        let span = (self.steps - self.warmup).max(1) as f64;
        let progress = ((step - self.warmup) as f64 / span).min(1.0);
        self.min_lr
            + 0.5 * (self.lr - self.min_lr) * (1.0 + (std::f64::consts::PI * progress).cos())
    }

    /// The budget of example `j` of batch `step`: log-uniform over [1, n_max].
    pub fn vision_tokens(&self, step: u64, j: usize) -> usize {
        if let Some(n) = self.fixed_vision_tokens {
            return n;
        }
        let mut rng =
            Gaussian::new(self.seed.wrapping_mul(0x9e37_79b9).wrapping_add(step * 4096 + j as u64));
        let max = self.model.max_vision_tokens as f64;
        let n = (rng.uniform() * (max + 1.0).ln()).exp().floor() as usize;
        n.clamp(1, self.model.max_vision_tokens)
    }
}
