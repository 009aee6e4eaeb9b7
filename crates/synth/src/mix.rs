//! How often each subtask and each item kind is drawn.

use super::questions::{Category, SUBTASKS};
use super::ItemKind;
use anyhow::{bail, Result};

/// Relative weights of the subtasks (in `SUBTASKS` order) and of the item kinds (in
/// `ItemKind::ALL` order). Built through the checked constructors, so at least one subtask and one
/// kind always has a positive weight.
#[derive(Clone, Debug, PartialEq)]
pub struct Mix {
    subtasks: [f64; SUBTASKS.len()],
    kinds: [f64; 3],
}

impl Default for Mix {
    /// Every subtask and every kind equally often.
    fn default() -> Mix {
        Mix { subtasks: [1.0; SUBTASKS.len()], kinds: [1.0; 3] }
    }
}

fn check_weight(name: &str, weight: f64) -> Result<()> {
    if !weight.is_finite() || weight < 0.0 {
        bail!("mix weight of {name}: {weight} is not a finite number ≥ 0");
    }
    Ok(())
}

impl Mix {
    /// The subtask weights, in `SUBTASKS` order (each finite and ≥ 0, not all 0).
    pub fn subtask_weights(&self) -> &[f64] {
        &self.subtasks
    }

    /// The item-kind weights, in `ItemKind::ALL` order (each finite and ≥ 0, not all 0).
    pub fn kind_weights(&self) -> &[f64; 3] {
        &self.kinds
    }

    /// Set one subtask's weight (`name` from `SUBTASKS`), or every subtask of a category
    /// (`coarse`, `fine`).
    pub fn with_subtask(mut self, name: &str, weight: f64) -> Result<Mix> {
        check_weight(name, weight)?;
        let category = match name {
            "coarse" => Some(Category::Coarse),
            "fine" => Some(Category::Fine),
            _ => None,
        };
        let mut hit = false;
        for (i, (sub, cat)) in SUBTASKS.iter().enumerate() {
            if *sub == name || category == Some(*cat) {
                self.subtasks[i] = weight;
                hit = true;
            }
        }
        if !hit {
            let known: Vec<&str> = SUBTASKS.iter().map(|s| s.0).collect();
            bail!("unknown subtask {name:?} in mix; known: {}, coarse, fine", known.join(", "));
        }
        if self.subtasks.iter().all(|w| *w == 0.0) {
            bail!("mix gives every subtask weight 0");
        }
        Ok(self)
    }

    /// Set one item kind's weight. Errors if the weight is negative or not finite, or if
    /// every kind would then have weight 0.
    pub fn with_kind(mut self, kind: ItemKind, weight: f64) -> Result<Mix> {
        check_weight(kind.as_str(), weight)?;
        self.kinds[kind.position()] = weight;
        if self.kinds.iter().all(|w| *w == 0.0) {
            bail!("mix gives every item kind weight 0");
        }
        Ok(self)
    }

    /// The same subtask weights, every item of `kind`.
    pub fn only_kind(&self, kind: ItemKind) -> Mix {
        let mut kinds = [0.0; 3];
        kinds[kind.position()] = 1.0;
        Mix { subtasks: self.subtasks, kinds }
    }

    /// Parse `name=weight,…` over the default mix; a name is a subtask, `coarse`, `fine`, or an
    /// item kind (`mcq`, `yorn`, `vqa`). Example: `fine=2,background=0,vqa=0`.
    pub fn parse(spec: &str) -> Result<Mix> {
        let mut mix = Mix::default();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, value)) = part.split_once('=') else {
                bail!("mix entry {part:?} is not name=weight");
            };
            let (name, value) = (name.trim(), value.trim());
            let weight: f64 = value.parse().map_err(|_| {
                anyhow::anyhow!("mix entry {part:?}: weight {value:?} is not a number")
            })?;
            mix = match ItemKind::parse(name) {
                Some(kind) => mix.with_kind(kind, weight)?,
                None => mix.with_subtask(name, weight)?,
            };
        }
        Ok(mix)
    }
}
