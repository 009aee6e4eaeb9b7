//! Checkpoint tools for the query-fused model (the seed's `_update_ckpt.py` and
//! `init_imgque_with_new_backbone.py`):
//!
//! - [`plan_update`]: take the latest `checkpoint-N` of a training folder, drop the vision tower's
//!   `post_layernorm`, rename `clip_model.vision_model.vision_model.` → `clip_model.vision_model.`,
//!   set `text_config.max_position_embeddings = 1024` and write a fresh checkpoint folder.
//! - [`plan_swap_llm`]: replace every `llm_backbone.*` tensor with another `*ForCausalLM` of the
//!   same hidden size, keeping the vision tower, query decoder and fusion.
//!
//! Tensors are copied byte for byte in their stored dtype (a bf16 checkpoint stays bf16): they
//! are streamed from the memory-mapped sources into one `model.safetensors`. Output goes into a
//! temporary folder beside the target, is verified there (every tensor re-read and compared with
//! its source, then the folder loaded with [`ImgQuePipeline::load`]), and only then moved into
//! place, so a failed run never leaves a half-written checkpoint.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device};

use crate::config::read_json_value;
use crate::imgque::{ImgQueConfig, MODEL_TYPE};
use crate::imgque_pipeline::ImgQuePipeline;
use crate::llama::LlamaConfig;
use crate::weights::checkpoint_files;

/// The vision tower's key prefix in the stage-1 model (`ImageHDMultiQueryCLIPModel`).
pub const OLD_VISION_PREFIX: &str = "clip_model.vision_model.vision_model.";
/// The vision tower's key prefix after the update (what the current model loads).
pub const NEW_VISION_PREFIX: &str = "clip_model.vision_model.";
const IMGQUE_PREFIX: &str = "imgque_backbone.";
const LLM_PREFIX: &str = "llm_backbone.";

/// `text_config.max_position_embeddings` as `_update_ckpt.py` sets it.
pub const UPDATED_TEXT_MAX_POSITIONS: u64 = 1024;

/// Tokenizer / processor files carried into a written checkpoint when present.
pub const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.json",
    "chat_template.jinja",
];
const PROCESSOR_FILES: &[&str] = &["preprocessor_config.json", "processor_config.json"];

/// A set of memory-mapped safetensors files (a checkpoint folder's shards).
pub struct Source {
    /// The checkpoint folder.
    pub dir: PathBuf,
    /// Its safetensors files (one, or the shards of an index), in load order.
    pub files: Vec<PathBuf>,
    store: MmapedSafetensors,
}

impl Source {
    /// Memory-maps every safetensors file of `dir`, checking each header; fails on a missing or
    /// invalid file.
    pub fn open(dir: &Path) -> Result<Self> {
        let files = checkpoint_files(dir)?;
        for f in &files {
            check_header(f)?;
        }
        // SAFETY: the files are only read while the map lives.
        let store = unsafe { MmapedSafetensors::multi(&files) }
            .with_context(|| format!("{}: not a valid safetensors file", files[0].display()))?;
        Ok(Self { dir: dir.to_path_buf(), files, store })
    }

    /// Every tensor key across the shards, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.store.tensors().into_iter().map(|(k, _)| k).collect();
        keys.sort();
        keys
    }

    fn origin(&self) -> String {
        if self.files.len() == 1 {
            self.files[0].display().to_string()
        } else {
            format!("{} ({} shards)", self.dir.display(), self.files.len())
        }
    }

    /// Stored dtype name (`F32`, `BF16`, …), shape and bytes of one tensor.
    fn raw(&self, key: &str) -> Result<RawTensor<'_>> {
        let view = self
            .store
            .get(key)
            .with_context(|| format!("{}: missing tensor `{key}`", self.origin()))?;
        let dtype = serde_json::to_value(view.dtype())?.as_str().unwrap_or_default().to_string();
        Ok(RawTensor { dtype, shape: view.shape().to_vec(), data: view.data() })
    }
}

struct RawTensor<'a> {
    dtype: String,
    shape: Vec<usize>,
    data: &'a [u8],
}

impl safetensors::View for RawTensor<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        serde_json::from_value(serde_json::Value::String(self.dtype.clone()))
            .expect("dtype checked when planned")
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// One tensor of the output: its key, and where it comes from (source index, source key).
#[derive(Debug, Clone)]
pub struct PlannedTensor {
    /// The key written to the output.
    pub key: String,
    /// Index into [`Plan::sources`] of the file set it is read from.
    pub source: usize,
    /// The key it has there.
    pub source_key: String,
}

/// Everything a checkpoint tool will write, computed before anything is written.
pub struct Plan {
    /// The tool's name (`"update"` or `"swap-llm"`), for messages.
    pub action: &'static str,
    /// The checkpoint folder to write.
    pub target: PathBuf,
    /// Whether an existing checkpoint at `target` may be replaced.
    pub overwrite: bool,
    /// The checkpoints tensors are read from; [`PlannedTensor::source`] indexes this.
    pub sources: Vec<Source>,
    /// The `config.json` to write.
    pub config: serde_json::Value,
    /// Every tensor to write, in output order.
    pub tensors: Vec<PlannedTensor>,
    /// (source file or folder, path relative to the target)
    pub copies: Vec<(PathBuf, PathBuf)>,
    /// Source keys left out of the output.
    pub dropped: Vec<String>,
    /// (source key, output key) of every tensor whose key changes.
    pub renamed: Vec<(String, String)>,
    /// Human-readable notes on config changes and other decisions, for the summary.
    pub notes: Vec<String>,
}

/// What a finished write checked.
#[derive(Debug)]
pub struct Report {
    /// The folder that was written and verified.
    pub target: PathBuf,
    /// Number of tensors written.
    pub tensors: usize,
    /// Total tensor bytes written.
    pub bytes: u64,
    /// Tensor count per stored dtype name (`F32`, `BF16`, …).
    pub dtypes: BTreeMap<String, usize>,
    /// Whether the folder was loaded as a query-fused model (only for that model type).
    pub pipeline_loaded: bool,
}

/// `checkpoint-<N>` with the largest N (numerically) under `root`.
pub fn latest_checkpoint(root: &Path) -> Result<(u64, PathBuf)> {
    if !root.is_dir() {
        bail!("{}: training folder not found", root.display());
    }
    let mut best: Option<(u64, PathBuf)> = None;
    for entry in
        std::fs::read_dir(root).with_context(|| format!("{}: cannot read", root.display()))?
    {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        let Some(n) = name.strip_prefix("checkpoint-").and_then(|s| s.parse::<u64>().ok()) else {
            continue;
        };
        if path.is_dir() && best.as_ref().is_none_or(|(b, _)| n > *b) {
            best = Some((n, path));
        }
    }
    best.with_context(|| format!("{}: no checkpoint-N folder", root.display()))
}

/// The key with the old vision prefix renamed, `None` when unchanged.
fn renamed_key(key: &str) -> Option<String> {
    for outer in ["", IMGQUE_PREFIX] {
        let old = format!("{outer}{OLD_VISION_PREFIX}");
        if let Some(rest) = key.strip_prefix(&old) {
            return Some(format!("{outer}{NEW_VISION_PREFIX}{rest}"));
        }
    }
    None
}

/// The vision tower's `post_layernorm` (replaced by `pos_layrnorm` in the HD model).
fn is_dropped(key: &str) -> bool {
    key.contains(NEW_VISION_PREFIX) && key.contains("post_layernorm")
}

fn existing_files(dir: &Path, names: &[&str]) -> Vec<(PathBuf, PathBuf)> {
    names.iter().map(|n| (dir.join(n), PathBuf::from(n))).filter(|(p, _)| p.is_file()).collect()
}

fn check_target(target: &Path, overwrite: bool) -> Result<()> {
    let config = target.join("config.json");
    if config.exists() && !overwrite {
        bail!(
            "{}: already exists (the `overwrite` option replaces the checkpoint)",
            config.display()
        );
    }
    if target.exists() && !target.is_dir() {
        bail!("{}: exists and is not a folder", target.display());
    }
    let parent = parent_of(target);
    if !parent.is_dir() {
        bail!("{}: output's parent folder does not exist", parent.display());
    }
    Ok(())
}

/// Removes the temporary folders (`.NAME.ckpt-tmp-PID`) that killed runs left beside the
/// target; a folder of a process still running is its own business and stays.
fn remove_stale_temporaries(parent: &Path, name: &str) -> Result<()> {
    let prefix = format!(".{name}.ckpt-tmp-");
    let Ok(entries) = std::fs::read_dir(parent) else { return Ok(()) };
    for entry in entries.filter_map(|e| e.ok()) {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = file_name.strip_prefix(&prefix).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() || !tokenscale_fsio::process_alive(pid) {
            let path = entry.path();
            std::fs::remove_dir_all(&path).with_context(|| {
                format!("{}: cannot remove stale temporary folder", path.display())
            })?;
        }
    }
    Ok(())
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn check_dtypes(plan: &Plan) -> Result<()> {
    for t in &plan.tensors {
        let raw = plan.sources[t.source].raw(&t.source_key)?;
        if serde_json::from_value::<safetensors::Dtype>(serde_json::Value::String(
            raw.dtype.clone(),
        ))
        .is_err()
        {
            bail!(
                "{}: tensor `{}` has dtype {} the writer does not know",
                plan.sources[t.source].origin(),
                t.source_key,
                raw.dtype
            );
        }
    }
    Ok(())
}

/// `ckpt update`: plan a fresh checkpoint at `target` (default `root`) from `root`'s latest
/// `checkpoint-N`.
pub fn plan_update(root: &Path, target: Option<&Path>, overwrite: bool) -> Result<Plan> {
    let (step, ckpt) = latest_checkpoint(root)?;
    let target = target.unwrap_or(root).to_path_buf();
    check_target(&target, overwrite)?;
    let config_path = ckpt.join("config.json");
    let mut config = read_json_value(&config_path)?;
    let mut notes = vec![format!("checkpoint: {} (step {step})", ckpt.display())];
    // `config.text_config.max_position_embeddings = 1024`: of the nested imgque config for the
    // full model, of the config itself for the stage-1 CLIP model.
    let (field, text_config) = if config.get("imgque_config").is_some() {
        let iq =
            config.get_mut("imgque_config").and_then(|v| v.as_object_mut()).with_context(|| {
                format!("{}: field `imgque_config` must be an object", config_path.display())
            })?;
        (
            "imgque_config.text_config",
            iq.entry("text_config").or_insert_with(|| serde_json::json!({})),
        )
    } else {
        let map = config
            .as_object_mut()
            .with_context(|| format!("{}: not a JSON object", config_path.display()))?;
        ("text_config", map.entry("text_config").or_insert_with(|| serde_json::json!({})))
    };
    let text = text_config
        .as_object_mut()
        .with_context(|| format!("{}: field `{field}` must be an object", config_path.display()))?;
    let before = text
        .insert("max_position_embeddings".into(), serde_json::json!(UPDATED_TEXT_MAX_POSITIONS));
    notes.push(format!(
        "config: {field}.max_position_embeddings {} -> {UPDATED_TEXT_MAX_POSITIONS}",
        before.map(|v| v.to_string()).unwrap_or_else(|| "(unset)".into())
    ));

    let source = Source::open(&ckpt)?;
    let mut tensors = Vec::new();
    let mut dropped = Vec::new();
    let mut renamed = Vec::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    for key in source.keys() {
        let new_key = renamed_key(&key);
        let out_key = new_key.clone().unwrap_or_else(|| key.clone());
        if is_dropped(&out_key) {
            dropped.push(key);
            continue;
        }
        if let Some(other) = seen.insert(out_key.clone(), key.clone()) {
            bail!("{}: tensors `{other}` and `{key}` both become `{out_key}`", source.origin());
        }
        if let Some(n) = new_key {
            renamed.push((key.clone(), n));
        }
        tensors.push(PlannedTensor { key: out_key, source: 0, source_key: key });
    }
    if tensors.is_empty() {
        bail!("{}: no tensors left to write", source.origin());
    }
    let mut copies = existing_files(&ckpt, TOKENIZER_FILES);
    copies.extend(existing_files(&ckpt, PROCESSOR_FILES));
    copies.extend(existing_files(&ckpt, &["generation_config.json"]));
    if ckpt.join("clip").is_dir() {
        copies.push((ckpt.join("clip"), PathBuf::from("clip")));
    }
    let plan = Plan {
        action: "update",
        target,
        overwrite,
        sources: vec![source],
        config,
        tensors,
        copies,
        dropped,
        renamed,
        notes,
    };
    check_dtypes(&plan)?;
    Ok(plan)
}

/// `ckpt swap-llm`: plan `out` = the checkpoint at `ckpt` with its LLM backbone replaced by the
/// `*ForCausalLM` folder `llm`.
pub fn plan_swap_llm(ckpt: &Path, llm: &Path, out: &Path, overwrite: bool) -> Result<Plan> {
    if !ckpt.is_dir() {
        bail!("{}: checkpoint folder not found", ckpt.display());
    }
    if !llm.is_dir() {
        bail!("{}: LLM folder not found", llm.display());
    }
    check_target(out, overwrite)?;
    let ckpt_config_path = ckpt.join("config.json");
    let mut config = read_json_value(&ckpt_config_path)?;
    let ckpt_origin = ckpt_config_path.display().to_string();
    let parsed = ImgQueConfig::from_value(&config, &ckpt_origin)?;
    let llm_config_path = llm.join("config.json");
    let llm_origin = llm_config_path.display().to_string();
    let llm_value = read_json_value(&llm_config_path)?;
    let new_llm = LlamaConfig::from_value(&llm_value, &llm_origin, "")?;
    if parsed.llm.hidden_size != new_llm.hidden_size {
        bail!(
            "hidden size mismatch: {ckpt_origin} field `llm_config.hidden_size` = {}, {llm_origin} field `hidden_size` = {}",
            parsed.llm.hidden_size,
            new_llm.hidden_size
        );
    }
    let old_llm_name = config.get("llm_model_name_or_path").cloned();
    let map =
        config.as_object_mut().with_context(|| format!("{ckpt_origin}: not a JSON object"))?;
    map.insert("llm_config".into(), llm_value.clone());
    map.insert("llm_model_name_or_path".into(), serde_json::json!(llm.display().to_string()));
    let mut notes = vec![
        format!(
            "config: llm_model_name_or_path {} -> {}",
            old_llm_name.map(|v| v.to_string()).unwrap_or_else(|| "(unset)".into()),
            llm.display()
        ),
        format!(
            "config: llm_config replaced by {llm_origin} ({}, hidden {}, {} layers, vocab {})",
            new_llm.model_type(),
            new_llm.hidden_size,
            new_llm.num_hidden_layers,
            new_llm.vocab_size
        ),
    ];
    if parsed.llm.vocab_size != new_llm.vocab_size {
        notes.push(format!(
            "vocabulary changes ({} -> {}): the new LLM's tokenizer is written; choose a chat `template` that fits it",
            parsed.llm.vocab_size, new_llm.vocab_size
        ));
    }

    let old = Source::open(ckpt)?;
    let new = Source::open(llm)?;
    let mut tensors = Vec::new();
    let mut dropped = Vec::new();
    for key in old.keys() {
        if key.starts_with(LLM_PREFIX) {
            dropped.push(key);
        } else {
            tensors.push(PlannedTensor { key: key.clone(), source: 0, source_key: key });
        }
    }
    let proj = "fusion_backbone.imgque_proj.weight";
    if !tensors.iter().any(|t| t.key == proj) {
        bail!("{}: missing tensor `{proj}`", old.origin());
    }
    let mut renamed = Vec::new();
    let mut has_head = false;
    let mut has_embed = false;
    for key in new.keys() {
        if !(key.starts_with("model.") || key == "lm_head.weight") {
            bail!("{}: tensor `{key}` is neither `model.*` nor `lm_head.weight` (expected a *ForCausalLM)", new.origin());
        }
        has_head |= key == "lm_head.weight";
        has_embed |= key == "model.embed_tokens.weight";
        let out_key = format!("{LLM_PREFIX}{key}");
        renamed.push((key.clone(), out_key.clone()));
        tensors.push(PlannedTensor { key: out_key, source: 1, source_key: key });
    }
    if !has_embed {
        bail!("{}: missing tensor `model.embed_tokens.weight`", new.origin());
    }
    if !has_head {
        if new_llm.tie_word_embeddings {
            notes.push("tied embeddings: no lm_head.weight is written; llm_config.tie_word_embeddings = true makes the loader use llm_backbone.model.embed_tokens.weight".into());
        } else {
            bail!(
                "{}: missing tensor `lm_head.weight` (and tie_word_embeddings is false)",
                new.origin()
            );
        }
    }
    let mut dtypes_old: BTreeMap<String, usize> = BTreeMap::new();
    for t in tensors.iter().filter(|t| t.source == 0) {
        *dtypes_old.entry(old.raw(&t.source_key)?.dtype).or_default() += 1;
    }
    let mut dtypes_new: BTreeMap<String, usize> = BTreeMap::new();
    for t in tensors.iter().filter(|t| t.source == 1) {
        *dtypes_new.entry(new.raw(&t.source_key)?.dtype).or_default() += 1;
    }
    if dtypes_old.keys().ne(dtypes_new.keys()) {
        notes.push(format!(
            "dtypes kept as stored: imgque/fusion {:?}, new LLM {:?} (the loader converts to its working dtype)",
            dtypes_old.keys().collect::<Vec<_>>(),
            dtypes_new.keys().collect::<Vec<_>>()
        ));
    }
    // The NEW LLM's tokenizer goes to the root (the original kept the old one, which is only
    // right when both LLMs share a vocabulary); CLIP tokenizer and processor from the checkpoint.
    let mut copies = existing_files(llm, TOKENIZER_FILES);
    if !copies.iter().any(|(_, rel)| rel == Path::new("tokenizer.json")) {
        bail!("{}: missing tokenizer.json (the new LLM's tokenizer is written to the checkpoint root)", llm.display());
    }
    copies.extend(existing_files(llm, &["generation_config.json"]));
    let processor = existing_files(ckpt, PROCESSOR_FILES);
    if !processor.iter().any(|(_, rel)| rel == Path::new("preprocessor_config.json")) {
        bail!("{}: missing preprocessor_config.json", ckpt.display());
    }
    copies.extend(processor);
    if !ckpt.join("clip").join("tokenizer.json").is_file() {
        bail!(
            "{}: missing clip/tokenizer.json (the CLIP tokenizer of the query decoder)",
            ckpt.display()
        );
    }
    copies.push((ckpt.join("clip"), PathBuf::from("clip")));
    let plan = Plan {
        action: "swap-llm",
        target: out.to_path_buf(),
        overwrite,
        sources: vec![old, new],
        config,
        tensors,
        copies,
        dropped,
        renamed,
        notes,
    };
    check_dtypes(&plan)?;
    Ok(plan)
}

impl Plan {
    /// Human-readable description of what [`Plan::execute`] would do.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        let out = |s: &mut String, line: String| {
            s.push_str(&line);
            s.push('\n');
        };
        out(&mut s, format!("ckpt {}: target {}", self.action, self.target.display()));
        for (i, src) in self.sources.iter().enumerate() {
            let files: Vec<String> = src.files.iter().map(|f| f.display().to_string()).collect();
            out(&mut s, format!("source {i}: {}", files.join(", ")));
        }
        for n in &self.notes {
            out(&mut s, n.clone());
        }
        out(&mut s, format!("dropped {} tensors:", self.dropped.len()));
        for k in &self.dropped {
            out(&mut s, format!("  - {k}"));
        }
        out(&mut s, format!("renamed {} tensors:", self.renamed.len()));
        for (a, b) in &self.renamed {
            out(&mut s, format!("  {a} -> {b}"));
        }
        out(
            &mut s,
            format!(
                "writes {} tensors (stored dtypes kept) to model.safetensors, and config.json",
                self.tensors.len()
            ),
        );
        for (src, rel) in &self.copies {
            out(&mut s, format!("copies {} -> {}", src.display(), rel.display()));
        }
        if self.target.join("config.json").exists() {
            out(
                &mut s,
                format!("replaces the checkpoint files in {} (`overwrite`)", self.target.display()),
            );
        }
        s
    }

    /// Writes into a temporary folder beside the target, verifies it, then moves it into place.
    pub fn execute(&self) -> Result<Report> {
        check_target(&self.target, self.overwrite)?;
        let parent = parent_of(&self.target);
        let name = self
            .target
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "checkpoint".into());
        remove_stale_temporaries(&parent, &name)?;
        let tmp = parent.join(format!(".{name}.ckpt-tmp-{}", std::process::id()));
        std::fs::create_dir(&tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
        let result =
            self.write_into(&tmp).and_then(|report| self.move_into_place(&tmp).map(|_| report));
        if tmp.exists() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        let mut report = result?;
        report.target = self.target.clone();
        Ok(report)
    }

    fn write_into(&self, dir: &Path) -> Result<Report> {
        let progress = tokenscale_base::progress::Progress::new(
            &format!("writing {}", self.target.display()),
            (self.tensors.len() + self.copies.len()) as u64,
            "tensors and files",
        );
        let mut raws = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            raws.push((t.key.clone(), self.sources[t.source].raw(&t.source_key)?));
            progress.inc(1);
        }
        let weights = dir.join("model.safetensors");
        let metadata: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
        safetensors::serialize_to_file(raws, Some(metadata), &weights)
            .map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", weights.display()))?;
        let config = serde_json::to_string_pretty(&self.config)? + "\n";
        std::fs::write(dir.join("config.json"), config)
            .with_context(|| format!("{}: cannot write", dir.join("config.json").display()))?;
        for (src, rel) in &self.copies {
            copy_path(src, &dir.join(rel))?;
            progress.inc(1);
        }
        self.verify(dir)
    }

    /// Every planned tensor re-read from the written file equals its source (dtype, shape and
    /// bytes), no other tensor is present, and the folder loads as a query-fused model.
    fn verify(&self, dir: &Path) -> Result<Report> {
        let written = Source::open(dir)?;
        let keys = written.keys();
        if keys.len() != self.tensors.len() {
            bail!(
                "{}: {} tensors written, {} planned",
                written.origin(),
                keys.len(),
                self.tensors.len()
            );
        }
        let mut dtypes: BTreeMap<String, usize> = BTreeMap::new();
        let mut bytes = 0u64;
        for t in &self.tensors {
            let a = written.raw(&t.key)?;
            let b = self.sources[t.source].raw(&t.source_key)?;
            if a.dtype != b.dtype || a.shape != b.shape || a.data != b.data {
                bail!(
                    "{}: tensor `{}` differs from its source `{}` in {}",
                    written.origin(),
                    t.key,
                    t.source_key,
                    self.sources[t.source].origin()
                );
            }
            *dtypes.entry(a.dtype.clone()).or_default() += 1;
            bytes += a.data.len() as u64;
        }
        let model_type = self.config.get("model_type").and_then(|v| v.as_str()).unwrap_or("");
        let pipeline_loaded = if model_type == MODEL_TYPE {
            let dtype = match dtypes.iter().max_by_key(|(_, n)| **n).map(|(d, _)| d.as_str()) {
                Some("BF16") => DType::BF16,
                Some("F16") => DType::F16,
                _ => DType::F32,
            };
            ImgQuePipeline::load(dir, dtype, &Device::Cpu)
                .context("the written checkpoint does not load")?;
            true
        } else {
            false
        };
        Ok(Report {
            target: dir.to_path_buf(),
            tensors: keys.len(),
            bytes,
            dtypes,
            pipeline_loaded,
        })
    }

    /// A new target: one rename of the whole folder. An existing target (a training root, or
    /// --overwrite): its config.json is removed first, the files are moved in, and config.json
    /// comes last, so the folder is never a loadable mix of old and new files.
    fn move_into_place(&self, tmp: &Path) -> Result<()> {
        let target = &self.target;
        // Everything written reaches the disk before a rename makes it visible.
        tokenscale_fsio::sync_tree(tmp)?;
        let result = self.rename_into_place(tmp);
        if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
            tokenscale_fsio::sync_dir(parent)?;
        }
        result
    }

    fn rename_into_place(&self, tmp: &Path) -> Result<()> {
        let target = &self.target;
        let empty = target.is_dir() && std::fs::read_dir(target)?.next().is_none();
        if empty {
            std::fs::remove_dir(target)
                .with_context(|| format!("{}: cannot replace empty folder", target.display()))?;
        }
        if !target.exists() {
            return std::fs::rename(tmp, target).with_context(|| {
                format!("{}: cannot move {} into place", target.display(), tmp.display())
            });
        }
        let config = target.join("config.json");
        if config.exists() {
            std::fs::remove_file(&config)
                .with_context(|| format!("{}: cannot remove", config.display()))?;
        }
        // Weights of an older layout would shadow or mix with the new file.
        let index = target.join("model.safetensors.index.json");
        if index.is_file() {
            if let Ok(value) = read_json_value(&index) {
                if let Some(map) = value.get("weight_map").and_then(|m| m.as_object()) {
                    for shard in map.values().filter_map(|v| v.as_str()) {
                        let _ = std::fs::remove_file(target.join(shard));
                    }
                }
            }
            std::fs::remove_file(&index)
                .with_context(|| format!("{}: cannot remove", index.display()))?;
        }
        let mut entries: Vec<PathBuf> =
            std::fs::read_dir(tmp)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort_by_key(|p| p.file_name() == Some("config.json".as_ref()));
        for src in entries {
            let dest = target.join(src.file_name().context("temporary entry without a name")?);
            if dest.is_dir() {
                std::fs::remove_dir_all(&dest)
                    .with_context(|| format!("{}: cannot replace", dest.display()))?;
            }
            std::fs::rename(&src, &dest)
                .with_context(|| format!("{}: cannot move into place", dest.display()))?;
        }
        tokenscale_fsio::sync_dir(target)?;
        Ok(())
    }
}

fn copy_path(src: &Path, dest: &Path) -> Result<()> {
    if src.is_dir() {
        std::fs::create_dir_all(dest)
            .with_context(|| format!("{}: cannot create", dest.display()))?;
        for entry in
            std::fs::read_dir(src).with_context(|| format!("{}: cannot read", src.display()))?
        {
            let entry = entry?;
            copy_path(&entry.path(), &dest.join(entry.file_name()))?;
        }
        Ok(())
    } else {
        std::fs::copy(src, dest)
            .with_context(|| format!("{}: cannot copy to {}", src.display(), dest.display()))?;
        Ok(())
    }
}

/// A truncated file is an error naming it instead of a failure inside the mapping.
fn check_header(path: &Path) -> Result<()> {
    let len =
        std::fs::metadata(path).with_context(|| format!("{}: cannot open", path.display()))?.len();
    let mut file =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut head = [0u8; 8];
    std::io::Read::read_exact(&mut file, &mut head).map_err(|_| {
        anyhow::anyhow!("{}: truncated safetensors file (no header)", path.display())
    })?;
    let n = u64::from_le_bytes(head);
    if n == 0 || 8 + n > len {
        bail!("{}: truncated or corrupt safetensors file (header length {n})", path.display());
    }
    Ok(())
}
