//! Where a new run's parameters come from: the model's seeded initialisation plus fresh heads
//! for the auxiliary losses it turns on, overlaid with an earlier stage's model or checkpoint
//! folder when the config names one (`init_from`). A resumed run reads its checkpoint instead.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use tokenscale_model::tokenizer::Tokenizer;

use crate::config::TrainConfig;
use crate::data::ExampleSource;
use crate::losses::heads::{fresh_head, slot_grid};
use crate::losses::registry::{Classes, Width, AUX_LOSSES};
use crate::tiny::{initial_parameters, write_model_files};

/// Writes a new run's model folder `dir` (config, tokenizers) and returns the parameters it
/// starts from, the auxiliary heads included.
pub(crate) fn starting_parameters(
    dir: &Path,
    config: &TrainConfig,
    source: &dyn ExampleSource,
) -> Result<HashMap<String, Tensor>> {
    write_model_files(dir, &config.model, &source.words())?;
    let mut tensors = initial_parameters(dir, config.seed)?;
    let mut heads =
        fresh_heads(
            config,
            || Ok(Tokenizer::from_file(&dir.join("tokenizer.json"))?.vocab_size()),
        )?;
    if let Some(from) = &config.init_from {
        tensors = weights_from(from, dir, tensors, config.init_partial)?;
        // A checkpoint folder (`checkpoints/step-N`) also holds the auxiliary heads: carry those
        // over too; a plain model folder has none, so they start fresh.
        if !config.fresh_heads {
            heads = weights_from(from, dir, heads, true)?;
        }
    }
    tensors.extend(heads);
    Ok(tensors)
}

/// Fresh heads of every loss `config` turns on. `vocabulary` gives the LLM's vocabulary size; it
/// is only asked for when a head names tokens.
fn fresh_heads(
    config: &TrainConfig,
    vocabulary: impl Fn() -> Result<usize>,
) -> Result<HashMap<String, Tensor>> {
    let mut heads = HashMap::new();
    for loss in AUX_LOSSES.iter().filter(|l| l.is_on(config)) {
        let Some(head) = loss.head else { continue };
        let rows = match head.classes {
            Classes::Fixed(rows) => rows,
            Classes::ThenRowsAndColumns(before) => before + 2 * slot_grid(&config.model),
            Classes::Vocabulary => vocabulary()?,
        };
        let width = match head.width {
            Width::Vision => config.model.vision_hidden,
            Width::Llm => config.model.llm_hidden,
        };
        heads.extend(fresh_head(head.prefix, rows, width, config.seed ^ head.seed_salt)?);
    }
    Ok(heads)
}

/// The parameters stored in the model folder `from`, which must have exactly the names and
/// shapes of `fresh` (with `partial`, those it lacks or holds in another shape stay fresh) and
/// the tokenizer written to `dir`.
fn weights_from(
    from: &Path,
    dir: &Path,
    fresh: HashMap<String, Tensor>,
    partial: bool,
) -> Result<HashMap<String, Tensor>> {
    let read =
        |p: PathBuf| std::fs::read(&p).with_context(|| format!("{}: cannot read", p.display()));
    if read(from.join("tokenizer.json"))? != read(dir.join("tokenizer.json"))? {
        bail!(
            "{}: field `init_from`: its tokenizer.json differs from the one this run builds",
            from.display()
        );
    }
    let path = from.join("model.safetensors");
    let stored = candle_core::safetensors::load(&path, &Device::Cpu)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let mut out = HashMap::new();
    for (key, value) in fresh {
        let Some(old) = stored.get(&key) else {
            if partial {
                out.insert(key, value);
                continue;
            }
            bail!(
                "{}: missing tensor `{key}` (set `init_partial` to start new tensors fresh)",
                path.display()
            );
        };
        if old.dims() != value.dims() {
            if partial {
                out.insert(key, value);
                continue;
            }
            bail!(
                "{}: tensor `{key}` has shape {:?}, this run needs {:?}",
                path.display(),
                old.dims(),
                value.dims()
            );
        }
        out.insert(key, old.to_dtype(DType::F32)?);
    }
    Ok(out)
}
