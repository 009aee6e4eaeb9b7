//! Reading a training config from a file and refusing, by field name, settings a run cannot
//! honour. The auxiliary losses' weight and layer fields are checked as `AUX_LOSSES` lists them.

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::config::TrainConfig;
use crate::losses::registry::AUX_LOSSES;

impl TrainConfig {
    /// The config in JSON file `path` (fields left out keep their defaults; unknown ones are an
    /// error), checked with [`TrainConfig::validate`].
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        let config: Self =
            serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        config.validate(&path.display().to_string())?;
        Ok(config)
    }

    /// Refuses settings a run cannot honour; errors start with `origin` (the file) and name the field.
    pub fn validate(&self, origin: &str) -> Result<()> {
        self.model.validate(origin)?;
        if self.batch == 0 || self.steps == 0 || self.checkpoint_every == 0 {
            bail!("{origin}: fields `steps`, `batch` and `checkpoint_every` must be at least 1");
        }
        if !(self.lr > 0.0 && self.min_lr >= 0.0 && self.min_lr <= self.lr) {
            bail!("{origin}: fields `lr` and `min_lr` must satisfy 0 ≤ min_lr ≤ lr, lr > 0");
        }
        self.mix().map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        for loss in AUX_LOSSES.iter().filter(|l| l.is_on(self)) {
            let Some(field) = loss.layer else { continue };
            let layer = (field.value)(self);
            if !(1..=self.model.llm_layers).contains(&layer) {
                bail!(
                    "{origin}: field `{}` = {layer} must be in 1..={} (the LLM's layers)",
                    field.name,
                    self.model.llm_layers
                );
            }
        }
        if self.stop_after == Some(0) {
            bail!("{origin}: field `stop_after` must be at least 1");
        }
        if self.aux_routed_weight > 0.0 && self.routed_from_slot >= self.model.max_vision_tokens {
            bail!(
                "{origin}: field `routed_from_slot` = {} must be below max_vision_tokens = {}",
                self.routed_from_slot,
                self.model.max_vision_tokens
            );
        }
        for loss in &AUX_LOSSES {
            let weight = (loss.weight)(self);
            if !(weight.is_finite() && weight >= 0.0) {
                bail!("{origin}: field `{}` = {weight}: the `aux_*_weight` fields must be finite and ≥ 0", loss.weight_field);
            }
        }
        if let Some(n) = self.fixed_vision_tokens {
            if n == 0 || n > self.model.max_vision_tokens {
                bail!(
                    "{origin}: field `fixed_vision_tokens` = {n} must be in 1..={}",
                    self.model.max_vision_tokens
                );
            }
        }
        Ok(())
    }
}
