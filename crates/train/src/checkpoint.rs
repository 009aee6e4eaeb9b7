//! Training checkpoints: `out/checkpoints/step-NNNNNNN/` holds the model folder's files, the
//! parameters, the optimiser moments and `state.json`; each is written into a temporary folder
//! and renamed into place, so a killed run leaves only complete checkpoints.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use tokenscale_fsio::{write_atomic, write_atomic_with};

use crate::config::TrainConfig;
use crate::logging::{loss_csv, validation_csv, LossRow, ValidationRow};

/// How many checkpoints are kept (older ones are removed after a new one is complete).
const KEEP: usize = 2;

/// A checkpoint's `state.json`: what a resumed run needs besides the tensors.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The checkpoint's folder (not stored: it is where the file was read from).
    #[serde(skip)]
    pub dir: PathBuf,
    /// Optimiser steps taken when it was written.
    pub step: u64,
    /// The config the run was started with (a resumed run must be given the same).
    pub config: TrainConfig,
    /// Every step's loss row so far.
    pub history: Vec<LossRow>,
    /// Every validation row so far.
    pub validation: Vec<ValidationRow>,
}

fn checkpoints_dir(out: &Path) -> PathBuf {
    out.join("checkpoints")
}

/// Complete checkpoints (those with a state.json), oldest first.
fn complete_checkpoints(out: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let dir = checkpoints_dir(out);
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    for entry in
        std::fs::read_dir(&dir).with_context(|| format!("{}: cannot read", dir.display()))?
    {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(step) = name.strip_prefix("step-").and_then(|s| s.parse::<u64>().ok()) {
            if path.join("state.json").is_file() {
                found.push((step, path));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The newest complete checkpoint under `out/checkpoints/` (`None` when there is none).
pub fn latest_checkpoint(out: &Path) -> Result<Option<Checkpoint>> {
    let Some((_, dir)) = complete_checkpoints(out)?.pop() else { return Ok(None) };
    let path = dir.join("state.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let mut ck: Checkpoint =
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    ck.dir = dir;
    Ok(Some(ck))
}

fn copy_files(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("{}: cannot create", to.display()))?;
    for entry in
        std::fs::read_dir(from).with_context(|| format!("{}: cannot read", from.display()))?
    {
        let path = entry?.path();
        let target = to.join(path.file_name().context("file without a name")?);
        if path.is_dir() {
            copy_files(&path, &target)?;
        } else if path.file_name().is_some_and(|n| n != "model.safetensors") {
            std::fs::copy(&path, &target).with_context(|| {
                format!("{}: cannot copy to {}", path.display(), target.display())
            })?;
        }
    }
    Ok(())
}

fn save_tensors(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    write_atomic_with(path, |tmp| {
        candle_core::safetensors::save(tensors, tmp)
            .with_context(|| format!("{}: cannot write", tmp.display()))
    })
}

/// Writes checkpoint `ck.step` (files of `model_dir` + `params` + `moments` + state.json), then
/// refreshes `model_dir/model.safetensors` (with `model_params`, the shipped subset) and
/// `out/loss.csv`, then drops old checkpoints.
pub fn write_checkpoint(
    out: &Path,
    model_dir: &Path,
    ck: &Checkpoint,
    params: &HashMap<String, Tensor>,
    model_params: &HashMap<String, Tensor>,
    moments: &HashMap<String, Tensor>,
) -> Result<PathBuf> {
    let root = checkpoints_dir(out);
    let final_dir = root.join(format!("step-{:07}", ck.step));
    let tmp = root.join(format!(".tmp-step-{:07}", ck.step));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)
            .with_context(|| format!("{}: cannot remove", tmp.display()))?;
    }
    copy_files(model_dir, &tmp)?;
    save_tensors(params, &tmp.join("model.safetensors"))?;
    save_tensors(moments, &tmp.join("optimizer.safetensors"))?;
    write_atomic(&tmp.join("state.json"), &serde_json::to_vec_pretty(ck)?)?;
    tokenscale_fsio::replace_dir(&tmp, &final_dir)?;
    save_tensors(model_params, &model_dir.join("model.safetensors"))?;
    write_atomic(&out.join("loss.csv"), loss_csv(&ck.history).as_bytes())?;
    write_atomic(&out.join("validation.csv"), validation_csv(&ck.validation).as_bytes())?;
    let all = complete_checkpoints(out)?;
    for (_, old) in all.iter().take(all.len().saturating_sub(KEEP)) {
        std::fs::remove_dir_all(old)
            .with_context(|| format!("{}: cannot remove", old.display()))?;
    }
    Ok(final_dir)
}
