//! AdamW (decoupled weight decay, as torch.optim.AdamW and candle-nn's) with its state exposed,
//! so a run can be checkpointed and resumed exactly; candle-nn's AdamW keeps its moments private.

use std::collections::HashMap;

use anyhow::{Context, Result};
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

/// AdamW's hyper-parameters (the learning rate is given per step).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    /// Decay of the first-moment (mean) estimate.
    pub beta1: f64,
    /// Decay of the second-moment (uncentred variance) estimate.
    pub beta2: f64,
    /// Added to the root of the second moment to keep the step finite.
    pub eps: f64,
    /// Decoupled weight decay per step, times the learning rate (matrices only).
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 }
    }
}

/// AdamW with its moments exposed (`state_tensors`, `load_state`) for exact resumption.
pub struct AdamW {
    /// Its hyper-parameters.
    pub config: AdamWConfig,
    /// Updates taken so far (bias correction uses it).
    pub step: u64,
    params: Vec<(String, Var)>,
    first: HashMap<String, Tensor>,
    second: HashMap<String, Tensor>,
}

impl AdamW {
    /// `params` sorted by name, so the update order never depends on a hash map.
    pub fn new(params: &HashMap<String, Var>, config: AdamWConfig) -> Result<Self> {
        let mut named: Vec<(String, Var)> =
            params.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let mut first = HashMap::new();
        let mut second = HashMap::new();
        for (k, v) in &named {
            first.insert(k.clone(), v.as_tensor().zeros_like()?);
            second.insert(k.clone(), v.as_tensor().zeros_like()?);
        }
        Ok(Self { config, step: 0, params: named, first, second })
    }

    /// One update with learning rate `lr`; parameters without a gradient are left alone. Weight
    /// decay applies to matrices only (not to norm gains, biases or 1-D embeddings).
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.step += 1;
        let c = &self.config;
        let t = self.step as i32;
        let (bias1, bias2) = (1.0 - c.beta1.powi(t), 1.0 - c.beta2.powi(t));
        for (name, var) in &self.params {
            // Gradients and moments are plain values: without the detach each step's moments
            // would keep that step's whole graph alive.
            let Some(g) = grads.get(var.as_tensor()).map(Tensor::detach) else { continue };
            let m = self.first.get_mut(name).context("optimizer state lost a parameter")?;
            *m = ((&*m * c.beta1)? + (&g * (1.0 - c.beta1))?)?.detach();
            let v = self.second.get_mut(name).context("optimizer state lost a parameter")?;
            *v = ((&*v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?.detach();
            let m_hat = (&*m / bias1)?;
            let v_hat = (&*v / bias2)?;
            let decay = if var.as_tensor().rank() >= 2 { c.weight_decay } else { 0.0 };
            let theta = (var.as_tensor().detach() * (1.0 - lr * decay))?;
            let update = (m_hat / (v_hat.sqrt()? + c.eps)?)?;
            var.set(&(theta - (update * lr)?)?)?;
        }
        Ok(())
    }

    /// Moments as named tensors (`m.<name>`, `v.<name>`) for a checkpoint.
    pub fn state_tensors(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (k, t) in &self.first {
            out.insert(format!("m.{k}"), t.clone());
        }
        for (k, t) in &self.second {
            out.insert(format!("v.{k}"), t.clone());
        }
        out
    }

    /// Restores moments saved by [`AdamW::state_tensors`]; every parameter must be present.
    pub fn load_state(
        &mut self,
        saved: &HashMap<String, Tensor>,
        step: u64,
        origin: &str,
    ) -> Result<()> {
        for (name, _) in &self.params {
            let m = saved
                .get(&format!("m.{name}"))
                .with_context(|| format!("{origin}: missing tensor `m.{name}`"))?;
            let v = saved
                .get(&format!("v.{name}"))
                .with_context(|| format!("{origin}: missing tensor `v.{name}`"))?;
            self.first.insert(name.clone(), m.clone());
            self.second.insert(name.clone(), v.clone());
        }
        self.step = step;
        Ok(())
    }
}
