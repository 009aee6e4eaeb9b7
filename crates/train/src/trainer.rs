//! The training loop: seeded batches of synthetic examples, a vision-token budget n drawn per
//! example (nested queries: one checkpoint serves every n ≤ n_max), answer-only cross-entropy,
//! AdamW with warm-up and cosine decay, checkpoints every K steps that a killed run resumes from.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use serde::{Deserialize, Serialize};
use tokenscale_model::chat::token_type::{ANS, EOS};
use tokenscale_model::chat::Conversation;
use tokenscale_model::generation::{generate, GenerationConfig};
use tokenscale_model::imgque_pipeline::ImgQuePipeline;
use tokenscale_model::{AttentionCapture, Forward, ForwardOptions};
use tokenscale_model::weights::Weights;

use crate::checkpoint::{latest_checkpoint, write_checkpoint, Checkpoint};
use crate::data::{Example, ExampleSource};
use crate::init::Gaussian;
use crate::optim::{AdamW, AdamWConfig};
use crate::tiny::{initial_parameters, write_model_files, TinyShape};

/// Everything that determines a run; stored with every checkpoint, and a resumed run must match.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub model: TinyShape,
    pub steps: u64,
    pub batch: usize,
    pub lr: f64,
    pub min_lr: f64,
    pub warmup: u64,
    pub weight_decay: f64,
    pub seed: u64,
    pub checkpoint_every: u64,
    /// `None`: n log-uniform in [1, n_max] per example; `Some(n)`: always n.
    pub fixed_vision_tokens: Option<usize>,
    /// Validation examples scored (greedy, exact match) at each checkpoint, at n = 1 and n_max.
    pub validation_items: usize,
    /// Training-set weights by subtask name (or `coarse` / `fine`), applied in order over equal
    /// weights; empty: every subtask equally.
    pub subtask_weights: Vec<(String, f64)>,
    /// Training-set weights by item kind (`mcq`, `yn`, `short`); empty: every kind equally.
    pub kind_weights: Vec<(String, f64)>,
    /// Start from this model folder's weights (an earlier stage of a curriculum) instead of a
    /// fresh initialisation; its tokenizer must be the one this run builds. A checkpoint folder
    /// (`out/checkpoints/step-N`) also hands over the auxiliary heads this run trains.
    pub init_from: Option<PathBuf>,
    /// With `init_from`: tensors that model lacks (layers added to a deeper shape) or holds in
    /// another shape (a changed patch size) keep their fresh initialisation instead of being an
    /// error.
    pub init_partial: bool,
    /// With `init_from` a checkpoint folder: start the auxiliary heads fresh anyway (a stage that
    /// began from the previous stage's shipped model folder replays exactly this way).
    pub fresh_heads: bool,
    /// Weight of an auxiliary loss: a linear head (`aux_cells.*`, kept out of the shipped model)
    /// reads each of the global view's merged tokens and predicts what the grid cell under it
    /// holds (colour and shape; 0 = off). Needs a `crop / patch / 2` grid equal to the scene grid.
    pub aux_cell_weight: f64,
    /// Weight of a second auxiliary loss: a linear head (`aux_slots.*`, not shipped) reads the
    /// state of QED slot j (j < min(n, cells), and j < `routed_from_slot` when routed slots are
    /// trained too) and predicts what grid cell j holds, so that the
    /// first slots become a spatial summary the LLM can look cells up in (0 = off).
    pub aux_slot_weight: f64,
    /// Weight of a third auxiliary loss: a linear head (`aux_routed.*`, not shipped) reads every
    /// QED slot from `routed_from_slot` on and predicts the content of the cell the question is
    /// about (cell and relation questions), so those slots learn to fetch the asked detail (0 = off).
    pub aux_routed_weight: f64,
    pub routed_from_slot: usize,
    /// Weight of a fourth auxiliary loss: a linear head (`aux_query.*`, not shipped) reads the
    /// LLM's state after `aux_query_layer` layers at the position that predicts the answer and
    /// names the row and column a cell question asks about — the question parsing a cell lookup
    /// needs before it can match a slot (0 = off).
    pub aux_query_weight: f64,
    pub aux_query_layer: usize,
    /// Weight of a fifth auxiliary loss: a linear head (`aux_prev.*`, not shipped) reads the LLM's
    /// state after its first layer at every text position and names the previous token, so each
    /// word knows its left neighbour ("2" after "row" vs after "column") early (0 = off).
    pub aux_prev_weight: f64,
    /// Weight of a sixth auxiliary loss: the first attention head of LLM layer
    /// `aux_attend_layer` (1-based), at the position that predicts the answer, is asked to look at
    /// the QED slot of the cell a cell question names (−log of that probability; no head of its
    /// own) — the lookup itself, supervised (0 = off).
    pub aux_attend_weight: f64,
    pub aux_attend_layer: usize,
    /// Weight of a seventh auxiliary loss, for relation questions ("the shape directly left of
    /// the red circle"): the first attention head of LLM layer `aux_anchor_layer`, at the position
    /// that predicts the answer, is asked to look at the anchor's QED slot (the first hop). While
    /// it is on, the query and attend losses also cover relation questions, with the neighbour
    /// cell the answer comes from as their target (the second hop) (0 = off).
    pub aux_anchor_weight: f64,
    pub aux_anchor_layer: usize,
    /// Weight of an eighth auxiliary loss, for counting questions: the first attention head of
    /// LLM layer `aux_count_layer`, at the position that predicts the answer, is asked to spread
    /// its attention evenly over the first token (a sink) and the slots of the counted cells, so
    /// that the share left on the sink, 1 / (count + 1), carries the count (cross-entropy
    /// against that even target; 0 = off).
    pub aux_count_weight: f64,
    pub aux_count_layer: usize,
    /// Weight of a ninth auxiliary loss: a linear head (`aux_summary.*`, not shipped) reads the
    /// last QED slot (the decoder's end-of-query state, present at every n) and names the
    /// background tint and the border colour, so a global summary survives at every budget
    /// beside the cell the slot also holds (0 = off).
    pub aux_summary_weight: f64,
    /// Weight of a tenth auxiliary loss: a linear head (`aux_fetch.*`, not shipped) reads the
    /// LLM's state after `aux_attend_layer` layers at the position that predicts the answer and
    /// names what the lookup should have fetched — the content (colour and shape) of the cell a
    /// cell or relation question is answered from, or the number a counting question asks for
    /// (when the budget holds every counted cell) — so the lookup's value path carries the
    /// detail and not only the attention pattern (0 = off).
    pub aux_fetch_weight: f64,
    /// Weight of an eleventh auxiliary loss: a linear head (`aux_llm_slots.*`, not shipped) reads
    /// the LLM's state entering layer `aux_attend_layer` at each of the first QED slots (slot j ↔
    /// cell j) and names that cell's content, so that what the lookup reads there still holds the
    /// cell after the layers below have worked on it (0 = off).
    pub aux_llm_slot_weight: f64,
    /// Weight of a twelfth auxiliary loss, for relation questions: a linear head
    /// (`aux_anchor_query.*`, not shipped) reads the LLM's state entering layer `aux_anchor_layer`
    /// at the position that predicts the answer and names the anchor's colour and shape — what
    /// the anchor lookup has to search the slots for (0 = off).
    pub aux_anchor_query_weight: f64,
    /// Weight of a thirteenth auxiliary loss: the LLM's state after `aux_attend_layer` layers at
    /// the position that predicts the answer, read through the final norm and the LM head (no
    /// head of its own), must already name the answer's first token — so what the lookup fetched
    /// lies along the answer words' embeddings and the layers above only have to keep it (0 = off).
    pub aux_early_answer_weight: f64,
    /// Weight of a fourteenth auxiliary loss, for relation questions: a linear head
    /// (`aux_anchor_fetch.*`, not shipped) reads the LLM's state after `aux_anchor_layer` layers at
    /// the position that predicts the answer and names the row and column of the anchor the first
    /// hop found, so its value path carries where the anchor is — the neighbour is one step from
    /// there (0 = off).
    pub aux_anchor_fetch_weight: f64,
    /// With the attend loss on: whole-image questions (background, border) are pointed at the
    /// last slot, where the summary head puts the summary.
    pub summary_lookup: bool,
    /// End the run at this step, with the learning-rate schedule still laid out over `steps`
    /// (a stage cut short keeps its exact record, so `reproduce --retrain` replays it).
    pub stop_after: Option<u64>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            model: TinyShape::default(),
            steps: 3000,
            batch: 16,
            lr: 2e-3,
            min_lr: 1e-4,
            warmup: 100,
            weight_decay: 0.01,
            seed: 1,
            checkpoint_every: 100,
            fixed_vision_tokens: None,
            validation_items: 48,
            subtask_weights: Vec::new(),
            kind_weights: Vec::new(),
            init_from: None,
            init_partial: false,
            fresh_heads: false,
            aux_cell_weight: 0.0,
            aux_slot_weight: 0.0,
            aux_routed_weight: 0.0,
            routed_from_slot: 16,
            aux_query_weight: 0.0,
            aux_query_layer: 2,
            aux_prev_weight: 0.0,
            aux_attend_weight: 0.0,
            aux_attend_layer: 3,
            aux_anchor_weight: 0.0,
            aux_anchor_layer: 2,
            aux_count_weight: 0.0,
            aux_count_layer: 3,
            aux_summary_weight: 0.0,
            aux_fetch_weight: 0.0,
            aux_llm_slot_weight: 0.0,
            aux_anchor_query_weight: 0.0,
            aux_early_answer_weight: 0.0,
            aux_anchor_fetch_weight: 0.0,
            summary_lookup: false,
            stop_after: None,
        }
    }
}

impl TrainConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let config: Self = serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        config.validate(&path.display().to_string())?;
        Ok(config)
    }

    pub fn validate(&self, origin: &str) -> Result<()> {
        self.model.validate(origin)?;
        if self.batch == 0 || self.steps == 0 || self.checkpoint_every == 0 {
            bail!("{origin}: fields `steps`, `batch` and `checkpoint_every` must be at least 1");
        }
        if !(self.lr > 0.0 && self.min_lr >= 0.0 && self.min_lr <= self.lr) {
            bail!("{origin}: fields `lr` and `min_lr` must satisfy 0 ≤ min_lr ≤ lr, lr > 0");
        }
        self.mix().map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        let layered = [
            ("aux_query_layer", self.aux_query_weight, self.aux_query_layer),
            ("aux_attend_layer", self.aux_attend_weight, self.aux_attend_layer),
            ("aux_anchor_layer", self.aux_anchor_weight, self.aux_anchor_layer),
            ("aux_count_layer", self.aux_count_weight, self.aux_count_layer),
            ("aux_attend_layer", self.aux_fetch_weight, self.aux_attend_layer),
            ("aux_attend_layer", self.aux_llm_slot_weight, self.aux_attend_layer),
            ("aux_anchor_layer", self.aux_anchor_query_weight, self.aux_anchor_layer),
            ("aux_attend_layer", self.aux_early_answer_weight, self.aux_attend_layer),
            ("aux_anchor_layer", self.aux_anchor_fetch_weight, self.aux_anchor_layer),
        ];
        for (field, weight, layer) in layered {
            if weight > 0.0 && !(1..=self.model.llm_layers).contains(&layer) {
                bail!("{origin}: field `{field}` = {layer} must be in 1..={} (the LLM's layers)", self.model.llm_layers);
            }
        }
        if self.stop_after == Some(0) {
            bail!("{origin}: field `stop_after` must be at least 1");
        }
        if self.aux_routed_weight > 0.0 && self.routed_from_slot >= self.model.max_vision_tokens {
            bail!("{origin}: field `routed_from_slot` = {} must be below max_vision_tokens = {}", self.routed_from_slot, self.model.max_vision_tokens);
        }
        let weights = [
            self.aux_cell_weight,
            self.aux_slot_weight,
            self.aux_routed_weight,
            self.aux_query_weight,
            self.aux_prev_weight,
            self.aux_attend_weight,
            self.aux_anchor_weight,
            self.aux_count_weight,
            self.aux_summary_weight,
            self.aux_fetch_weight,
            self.aux_llm_slot_weight,
            self.aux_anchor_query_weight,
            self.aux_early_answer_weight,
            self.aux_anchor_fetch_weight,
        ];
        if weights.iter().any(|w| !(w.is_finite() && *w >= 0.0)) {
            bail!("{origin}: the `aux_*_weight` fields must be finite and ≥ 0");
        }
        if let Some(n) = self.fixed_vision_tokens {
            if n == 0 || n > self.model.max_vision_tokens {
                bail!("{origin}: field `fixed_vision_tokens` = {n} must be in 1..={}", self.model.max_vision_tokens);
            }
        }
        Ok(())
    }

    /// The synthetic benchmark's training mix this config asks for.
    pub fn mix(&self) -> Result<tokenscale_eval::synth::Mix> {
        let mut mix = tokenscale_eval::synth::Mix::default();
        for (name, weight) in &self.subtask_weights {
            mix = mix.with_subtask(name, *weight)?;
        }
        for (name, weight) in &self.kind_weights {
            let kind = tokenscale_eval::synth::ItemKind::parse(name)
                .with_context(|| format!("field `kind_weights`: unknown kind {name:?} (mcq, yn, short)"))?;
            mix = mix.with_kind(kind, *weight)?;
        }
        Ok(mix)
    }

    /// The step this run ends at: `stop_after` when it comes before `steps`.
    pub fn last_step(&self) -> u64 {
        self.stop_after.map_or(self.steps, |s| s.min(self.steps))
    }

    /// The cell whose slot the answer is read from by a lookup the query and attend losses
    /// supervise: the asked cell, and with the anchor loss on also a relation's neighbour.
    fn lookup_cell(&self, example: &Example) -> Option<Slot> {
        match (example.asked_cell, example.anchor_cell) {
            (Some(cell), _) => Some(Slot::Cell(cell)),
            (None, Some(_)) if self.aux_anchor_weight > 0.0 => example.answer_cell.map(Slot::Cell),
            _ if example.asks_summary && self.summary_lookup => Some(Slot::Last),
            _ => None,
        }
    }

    /// Linear warm-up, then cosine decay from `lr` to `min_lr`.
    pub fn learning_rate(&self, step: u64) -> f64 {
        if step < self.warmup {
            return self.lr * (step + 1) as f64 / self.warmup as f64;
        }
        let span = (self.steps - self.warmup).max(1) as f64;
        let progress = ((step - self.warmup) as f64 / span).min(1.0);
        self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + (std::f64::consts::PI * progress).cos())
    }

    /// The budget of example `j` of batch `step`: log-uniform over [1, n_max].
    pub fn vision_tokens(&self, step: u64, j: usize) -> usize {
        if let Some(n) = self.fixed_vision_tokens {
            return n;
        }
        let mut rng = Gaussian::new(self.seed.wrapping_mul(0x9e37_79b9).wrapping_add(step * 4096 + j as u64));
        let max = self.model.max_vision_tokens as f64;
        let n = (rng.uniform() * (max + 1.0).ln()).exp().floor() as usize;
        n.clamp(1, self.model.max_vision_tokens)
    }
}

/// Reads the terms of a checkpoint written when fewer auxiliary losses existed (they were 0).
fn aux_terms_of_any_age<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<AuxTerms, D::Error> {
    let stored = Vec::<f64>::deserialize(d)?;
    if stored.len() > AUX_TERMS {
        return Err(serde::de::Error::custom(format!("{} auxiliary terms, this build knows {AUX_TERMS}", stored.len())));
    }
    let mut terms = [0.0; AUX_TERMS];
    terms[..stored.len()].copy_from_slice(&stored);
    Ok(terms)
}

/// The sequence positions of the LLM input's QED slots, in order.
fn slot_positions(tps: &[u32]) -> Vec<usize> {
    tps.iter().enumerate().filter(|(_, &t)| t & tokenscale_model::imgque::TPS_QED != 0).map(|(i, _)| i).collect()
}

/// The captured attention probabilities of LLM layer `layer` (1-based).
fn layer_attention(attention: &[Tensor], layer: usize) -> Result<&Tensor> {
    attention.get(layer - 1).with_context(|| format!("attention layer {layer}: only {} attention layers ran", attention.len()))
}

/// A QED slot an attention loss points at.
#[derive(Clone, Copy, Debug)]
enum Slot {
    /// The slot of this grid cell (row-major).
    Cell(usize),
    /// The last slot: the decoder's end-of-query state, which holds the whole-image summary.
    Last,
}

/// One row of loss.csv.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LossRow {
    pub step: u64,
    /// Answer cross-entropy per answer token.
    pub loss: f64,
    /// Weighted auxiliary losses per example (0 without auxiliary heads).
    #[serde(default)]
    pub aux_loss: f64,
    /// `aux_loss` term by term (`AUX_TERM_NAMES`), each per example.
    #[serde(default, deserialize_with = "aux_terms_of_any_age")]
    pub aux_terms: AuxTerms,
    pub lr: f64,
    pub mean_vision_tokens: f64,
    pub seconds: f64,
}

/// Validation accuracy at one checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValidationRow {
    pub step: u64,
    pub vision_tokens: usize,
    pub accuracy: f64,
}

/// Colour classes (empty + 5 colours) and shape classes (empty + 4 shapes) of the auxiliary head.
const AUX_COLOURS: usize = 6;
const AUX_SHAPES: usize = 5;
const CELL_CLASSES: usize = AUX_COLOURS + AUX_SHAPES;
/// Answers of a counting question ("0" … "6"), as the fetch head names them.
const COUNT_CLASSES: usize = tokenscale_eval::synth::questions::COUNTS.len();
/// Background tints the summary head names (the border takes `AUX_COLOURS - 1` colours).
const TINTS: usize = tokenscale_eval::synth::scene::TINTS.len();

/// Side of the grid the slot head names slots by (the global view's merged-token grid, which
/// the scene grid matches in the shapes the cell head accepts).
fn slot_grid(shape: &TinyShape) -> usize {
    (shape.crop / shape.patch).div_ceil(2)
}

/// A fresh auxiliary head `{prefix}.weight` / `{prefix}.bias` (width `h` → `rows` classes).
fn aux_head(prefix: &str, rows: usize, h: usize, seed: u64) -> Result<HashMap<String, Tensor>> {
    let mut rng = Gaussian::new(seed);
    let weight: Vec<f32> = (0..rows * h).map(|_| (0.02 * rng.sample()) as f32).collect();
    Ok(HashMap::from([
        (format!("{prefix}.weight"), Tensor::from_vec(weight, (rows, h), &Device::Cpu)?),
        (format!("{prefix}.bias"), Tensor::zeros(rows, DType::F32, &Device::Cpu)?),
    ]))
}

/// Parameter names of the auxiliary heads: trained and checkpointed, never shipped.
const AUX_PREFIXES: [&str; 10] = [
    "aux_cells.",
    "aux_slots.",
    "aux_routed.",
    "aux_query.",
    "aux_prev.",
    "aux_summary.",
    "aux_fetch.",
    "aux_llm_slots.",
    "aux_anchor_query.",
    "aux_anchor_fetch.",
];

/// The parameters stored in the model folder `from`, which must have exactly the names and
/// shapes of `fresh` and the tokenizer written to `dir`.
fn weights_from(from: &Path, dir: &Path, fresh: HashMap<String, Tensor>, partial: bool) -> Result<HashMap<String, Tensor>> {
    let read = |p: PathBuf| std::fs::read(&p).with_context(|| format!("{}: cannot read", p.display()));
    if read(from.join("tokenizer.json"))? != read(dir.join("tokenizer.json"))? {
        bail!("{}: field `init_from`: its tokenizer.json differs from the one this run builds", from.display());
    }
    let path = from.join("model.safetensors");
    let stored = candle_core::safetensors::load(&path, &Device::Cpu).with_context(|| format!("{}: cannot read", path.display()))?;
    let mut out = HashMap::new();
    for (key, value) in fresh {
        let Some(old) = stored.get(&key) else {
            if partial {
                out.insert(key, value);
                continue;
            }
            bail!("{}: missing tensor `{key}` (set `init_partial` to start new tensors fresh)", path.display());
        };
        if old.dims() != value.dims() {
            if partial {
                out.insert(key, value);
                continue;
            }
            bail!("{}: tensor `{key}` has shape {:?}, this run needs {:?}", path.display(), old.dims(), value.dims());
        }
        out.insert(key, old.to_dtype(DType::F32)?);
    }
    Ok(out)
}

pub struct Trainer<'a> {
    pub config: TrainConfig,
    pub out: PathBuf,
    source: &'a dyn ExampleSource,
    pipeline: ImgQuePipeline,
    params: HashMap<String, Var>,
    optimizer: AdamW,
    pub history: Vec<LossRow>,
    pub validation: Vec<ValidationRow>,
    pub step: u64,
}

/// The weighted auxiliary losses of one example (or a sum of them), in `AUX_TERM_NAMES` order.
pub type AuxTerms = [f64; AUX_TERMS];
pub const AUX_TERMS: usize = 14;
pub const AUX_TERM_NAMES: [&str; AUX_TERMS] = [
    "aux_cell", "aux_slot", "aux_routed", "aux_query", "aux_prev", "aux_attend", "aux_anchor", "aux_count", "aux_summary", "aux_fetch",
    "aux_llm_slot", "aux_anchor_query", "aux_early_answer", "aux_anchor_fetch",
];

/// What a slice of a batch adds up: answer and auxiliary loss values, answer tokens, budgets.
#[derive(Default)]
struct ShardSums {
    answer: f64,
    aux: AuxTerms,
    tokens: usize,
    budget: usize,
}

impl ShardSums {
    fn add(&mut self, other: &ShardSums) {
        self.answer += other.answer;
        for (a, b) in self.aux.iter_mut().zip(other.aux) {
            *a += b;
        }
        self.tokens += other.tokens;
        self.budget += other.budget;
    }
}

/// Fixed slices of every batch (see `Trainer::train_step`).
const SHARDS: usize = 4;

fn model_dir(out: &Path) -> PathBuf {
    out.join("model")
}

impl<'a> Trainer<'a> {
    /// A new run in `out`, or the continuation of the run whose latest checkpoint is there.
    pub fn open(out: &Path, config: TrainConfig, source: &'a dyn ExampleSource) -> Result<Self> {
        config.validate("training config")?;
        let resumed = latest_checkpoint(out)?;
        let (files_dir, tensors, state) = match &resumed {
            Some(ck) => {
                if ck.config != config {
                    bail!(
                        "{}: holds a run with a different configuration (delete the folder or use the same config)",
                        ck.dir.display()
                    );
                }
                let tensors = candle_core::safetensors::load(ck.dir.join("model.safetensors"), &Device::Cpu)
                    .with_context(|| format!("{}: cannot read model.safetensors", ck.dir.display()))?;
                (ck.dir.clone(), tensors, Some(ck))
            }
            None => {
                let dir = model_dir(out);
                write_model_files(&dir, &config.model, &source.words())?;
                let mut tensors = initial_parameters(&dir, config.seed)?;
                let mut heads = HashMap::new();
                if config.aux_cell_weight > 0.0 {
                    heads.extend(aux_head("aux_cells", CELL_CLASSES, config.model.vision_hidden, config.seed ^ 0xa0c5)?);
                }
                if config.aux_slot_weight > 0.0 {
                    heads.extend(aux_head("aux_slots", CELL_CLASSES + 2 * slot_grid(&config.model), config.model.vision_hidden, config.seed ^ 0x5107)?);
                }
                if config.aux_query_weight > 0.0 {
                    let rows = 2 * slot_grid(&config.model);
                    heads.extend(aux_head("aux_query", rows, config.model.llm_hidden, config.seed ^ 0x9e4)?);
                }
                if config.aux_prev_weight > 0.0 {
                    let vocab = tokenscale_model::tokenizer::Tokenizer::from_file(&dir.join("tokenizer.json"))?.vocab_size();
                    heads.extend(aux_head("aux_prev", vocab, config.model.llm_hidden, config.seed ^ 0x93e)?);
                }
                if config.aux_summary_weight > 0.0 {
                    heads.extend(aux_head("aux_summary", TINTS + AUX_COLOURS - 1, config.model.vision_hidden, config.seed ^ 0x5a3)?);
                }
                if config.aux_fetch_weight > 0.0 {
                    heads.extend(aux_head("aux_fetch", CELL_CLASSES + COUNT_CLASSES, config.model.llm_hidden, config.seed ^ 0xfe7c)?);
                }
                if config.aux_llm_slot_weight > 0.0 {
                    heads.extend(aux_head("aux_llm_slots", CELL_CLASSES, config.model.llm_hidden, config.seed ^ 0x11e5)?);
                }
                if config.aux_anchor_query_weight > 0.0 {
                    heads.extend(aux_head("aux_anchor_query", CELL_CLASSES, config.model.llm_hidden, config.seed ^ 0xa9c4)?);
                }
                if config.aux_anchor_fetch_weight > 0.0 {
                    let rows = 2 * slot_grid(&config.model);
                    heads.extend(aux_head("aux_anchor_fetch", rows, config.model.llm_hidden, config.seed ^ 0xa9fe)?);
                }
                if config.aux_routed_weight > 0.0 {
                    heads.extend(aux_head("aux_routed", CELL_CLASSES, config.model.vision_hidden, config.seed ^ 0x7047)?);
                }
                if let Some(from) = &config.init_from {
                    tensors = weights_from(from, &dir, tensors, config.init_partial)?;
                    // A checkpoint folder (`checkpoints/step-N`) also holds the auxiliary heads:
                    // carry those over too; a plain model folder has none, so they start fresh.
                    if !config.fresh_heads {
                        heads = weights_from(from, &dir, heads, true)?;
                    }
                }
                tensors.extend(heads);
                (dir, tensors, None)
            }
        };
        let mut params = HashMap::new();
        for (k, t) in tensors {
            params.insert(k, Var::from_tensor(&t.to_dtype(DType::F32)?)?);
        }
        let shared = params.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect();
        let weights = Weights::from_tensors(shared, "model in training", &Device::Cpu);
        let pipeline = ImgQuePipeline::load_with_weights(&files_dir, &weights)?;
        let adam = AdamWConfig { weight_decay: config.weight_decay, ..Default::default() };
        let mut optimizer = AdamW::new(&params, adam)?;
        let mut trainer_state = (Vec::new(), Vec::new(), 0);
        if let Some(ck) = state {
            let saved = candle_core::safetensors::load(ck.dir.join("optimizer.safetensors"), &Device::Cpu)
                .with_context(|| format!("{}: cannot read optimizer.safetensors", ck.dir.display()))?;
            optimizer.load_state(&saved, ck.step, &ck.dir.join("optimizer.safetensors").display().to_string())?;
            trainer_state = (ck.history.clone(), ck.validation.clone(), ck.step);
        }
        let (history, validation, step) = trainer_state;
        Ok(Self { config, out: out.to_path_buf(), source, pipeline, params, optimizer, history, validation, step })
    }

    pub fn pipeline(&self) -> &ImgQuePipeline {
        &self.pipeline
    }

    /// The weight and bias of auxiliary head `prefix`.
    fn head_tensors(&self, prefix: &str) -> Result<(&Tensor, &Tensor)> {
        let get = |k: String| {
            self.params
                .get(&k)
                .map(Var::as_tensor)
                .with_context(|| format!("the run has no `{k}` (its auxiliary weight was 0 when it started)"))
        };
        Ok((get(format!("{prefix}.weight"))?, get(format!("{prefix}.bias"))?))
    }

    /// Cross-entropy of head `prefix` predicting, from each row of `tokens` `[k, h]`, the
    /// content of the matching cell of `cells` (k of them).
    fn cell_prediction_loss(&self, prefix: &str, tokens: &Tensor, cells: &[(u32, u32)]) -> Result<Tensor> {
        let (w, b) = self.head_tensors(prefix)?;
        let (w, b) = (w.narrow(0, 0, CELL_CLASSES)?, b.narrow(0, 0, CELL_CLASSES)?);
        let logits = tokens.matmul(&w.t()?)?.broadcast_add(&b)?;
        let colours = Tensor::new(cells.iter().map(|c| c.0).collect::<Vec<_>>(), &Device::Cpu)?;
        let shapes = Tensor::new(cells.iter().map(|c| c.1).collect::<Vec<_>>(), &Device::Cpu)?;
        let colour_loss = candle_nn::loss::cross_entropy(&logits.narrow(1, 0, AUX_COLOURS)?, &colours)?;
        let shape_loss = candle_nn::loss::cross_entropy(&logits.narrow(1, AUX_COLOURS, AUX_SHAPES)?, &shapes)?;
        Ok((colour_loss + shape_loss)?)
    }

    /// Auxiliary head over the global view's merged tokens (one per cell).
    fn aux_cell_loss(&self, crops: &Tensor, example: &Example) -> Result<Option<Tensor>> {
        if self.config.aux_cell_weight <= 0.0 || example.cells.is_empty() {
            return Ok(None);
        }
        let cells = example.cells.len();
        let per_crop = crops.dim(1)? - 1;
        if per_crop != cells {
            bail!("aux_cell_weight needs one merged token per grid cell: the global view has {per_crop} tokens, the scene {cells} cells");
        }
        let tokens = crops.get(0)?.narrow(0, 0, cells)?;
        Ok(Some((self.cell_prediction_loss("aux_cells", &tokens, &example.cells)? * self.config.aux_cell_weight)?))
    }

    /// Auxiliary head over the first QED slots' states (slot j ↔ cell j).
    fn aux_slot_loss(&self, query_states: &Tensor, example: &Example) -> Result<Option<Tensor>> {
        if self.config.aux_slot_weight <= 0.0 || example.cells.is_empty() {
            return Ok(None);
        }
        let mut k = query_states.dim(0)?.min(example.cells.len());
        if self.config.aux_routed_weight > 0.0 {
            k = k.min(self.config.routed_from_slot);
        }
        if k == 0 {
            return Ok(None);
        }
        let tokens = query_states.narrow(0, 0, k)?;
        let content = self.cell_prediction_loss("aux_slots", &tokens, &example.cells[..k])?;
        // Each slot also names its own row and column, so the LLM can find a cell's slot by
        // matching the question's row and column words against it.
        let side = slot_grid(&self.config.model);
        if side * side != example.cells.len() {
            bail!("aux_slot_weight: the scene has {} cells, the slot head names a {side}×{side} grid", example.cells.len());
        }
        let (w, b) = self.head_tensors("aux_slots")?;
        let logits = tokens.matmul(&w.narrow(0, CELL_CLASSES, 2 * side)?.t()?)?.broadcast_add(&b.narrow(0, CELL_CLASSES, 2 * side)?)?;
        let rows = Tensor::new((0..k as u32).map(|j| j / side as u32).collect::<Vec<_>>(), &Device::Cpu)?;
        let cols = Tensor::new((0..k as u32).map(|j| j % side as u32).collect::<Vec<_>>(), &Device::Cpu)?;
        let identity = (candle_nn::loss::cross_entropy(&logits.narrow(1, 0, side)?, &rows)?
            + candle_nn::loss::cross_entropy(&logits.narrow(1, side, side)?, &cols)?)?;
        Ok(Some(((content + identity)? * self.config.aux_slot_weight)?))
    }

    /// Auxiliary head over the last QED slot: the background tint and the border colour.
    fn aux_summary_loss(&self, query_states: &Tensor, example: &Example) -> Result<Option<Tensor>> {
        let Some((tint, border)) = example.summary.filter(|_| self.config.aux_summary_weight > 0.0) else { return Ok(None) };
        let last = query_states.narrow(0, query_states.dim(0)? - 1, 1)?;
        let (w, b) = self.head_tensors("aux_summary")?;
        let logits = last.matmul(&w.t()?)?.broadcast_add(b)?;
        let loss = (candle_nn::loss::cross_entropy(&logits.narrow(1, 0, TINTS)?, &Tensor::new(&[tint], &Device::Cpu)?)?
            + candle_nn::loss::cross_entropy(&logits.narrow(1, TINTS, AUX_COLOURS - 1)?, &Tensor::new(&[border], &Device::Cpu)?)?)?;
        Ok(Some((loss * self.config.aux_summary_weight)?))
    }

    /// Auxiliary head on the LLM state after `aux_query_layer` layers at `position`: the asked
    /// cell's row and column.
    fn aux_query_loss(&self, hidden_states: &[Tensor], position: usize, cell: usize) -> Result<Tensor> {
        let state = Self::llm_state(hidden_states, self.config.aux_query_layer, position, "aux_query_layer")?;
        Ok((self.row_column_loss("aux_query", &state, cell)? * self.config.aux_query_weight)?)
    }

    /// Cross-entropy of head `prefix` naming, from `state` `[1, h]`, the row and the column of `cell`.
    fn row_column_loss(&self, prefix: &str, state: &Tensor, cell: usize) -> Result<Tensor> {
        let (w, b) = self.head_tensors(prefix)?;
        let side = w.dim(0)? / 2;
        let logits = state.matmul(&w.t()?)?.broadcast_add(b)?;
        let row = Tensor::new(&[(cell / side) as u32], &Device::Cpu)?;
        let col = Tensor::new(&[(cell % side) as u32], &Device::Cpu)?;
        Ok((candle_nn::loss::cross_entropy(&logits.narrow(1, 0, side)?, &row)?
            + candle_nn::loss::cross_entropy(&logits.narrow(1, side, side)?, &col)?)?)
    }

    /// Auxiliary head on the LLM state after `aux_anchor_layer` layers at `position`: the row and
    /// column of a relation question's anchor (when the budget has its slot).
    fn aux_anchor_fetch_loss(&self, hidden_states: &[Tensor], position: usize, anchor: Option<usize>, n: usize) -> Result<Option<Tensor>> {
        let Some(cell) = anchor.filter(|&a| a < n && self.config.aux_anchor_fetch_weight > 0.0) else { return Ok(None) };
        let state = Self::llm_state(hidden_states, self.config.aux_anchor_layer, position, "aux_anchor_layer")?;
        Ok(Some((self.row_column_loss("aux_anchor_fetch", &state, cell)? * self.config.aux_anchor_fetch_weight)?))
    }

    /// The LLM's state after `layer` layers (0: its input) at `position`: `[1, llm_hidden]`.
    fn llm_state(hidden_states: &[Tensor], layer: usize, position: usize, field: &str) -> Result<Tensor> {
        let states = hidden_states.get(layer).with_context(|| format!("field `{field}`: the LLM has no state after {layer} layers"))?;
        Ok(states.squeeze(0)?.narrow(0, position, 1)?)
    }

    /// Auxiliary head on the LLM state after `aux_attend_layer` layers at `position`: what the
    /// lookup fetched — the answer cell's content, or the count of the counted cells.
    fn aux_fetch_loss(&self, hidden_states: &[Tensor], position: usize, example: &Example, n: usize) -> Result<Option<Tensor>> {
        if self.config.aux_fetch_weight <= 0.0 {
            return Ok(None);
        }
        let cell = example.answer_cell.filter(|&c| c < n).and_then(|c| example.cells.get(c));
        let count = example.counted_cells.as_ref().filter(|counted| counted.iter().all(|&c| c < n)).map(|c| c.len());
        let (w, b) = self.head_tensors("aux_fetch")?;
        let state = || Self::llm_state(hidden_states, self.config.aux_attend_layer, position, "aux_attend_layer");
        let loss = if let Some(cell) = cell {
            self.cell_prediction_loss("aux_fetch", &state()?, std::slice::from_ref(cell))?
        } else if let Some(count) = count.filter(|&c| c < COUNT_CLASSES) {
            let (w, b) = (w.narrow(0, CELL_CLASSES, COUNT_CLASSES)?, b.narrow(0, CELL_CLASSES, COUNT_CLASSES)?);
            let logits = state()?.matmul(&w.t()?)?.broadcast_add(&b)?;
            candle_nn::loss::cross_entropy(&logits, &Tensor::new(&[count as u32], &Device::Cpu)?)?
        } else {
            return Ok(None);
        };
        Ok(Some((loss * self.config.aux_fetch_weight)?))
    }

    /// Auxiliary head on the LLM states entering `aux_attend_layer` at the first QED slots: each
    /// names its cell's content.
    fn aux_llm_slot_loss(&self, hidden_states: &[Tensor], tps: &[u32], example: &Example) -> Result<Option<Tensor>> {
        if self.config.aux_llm_slot_weight <= 0.0 || example.cells.is_empty() {
            return Ok(None);
        }
        let slots = slot_positions(tps);
        let k = slots.len().min(example.cells.len());
        if k == 0 {
            return Ok(None);
        }
        let layer = self.config.aux_attend_layer - 1;
        let states = hidden_states.get(layer).with_context(|| format!("field `aux_attend_layer`: the LLM has no state after {layer} layers"))?;
        let picks = Tensor::new(slots[..k].iter().map(|&i| i as u32).collect::<Vec<_>>(), &Device::Cpu)?;
        let tokens = states.squeeze(0)?.index_select(&picks, 0)?;
        let loss = self.cell_prediction_loss("aux_llm_slots", &tokens, &example.cells[..k])?;
        Ok(Some((loss * self.config.aux_llm_slot_weight)?))
    }

    /// Auxiliary head on the LLM state entering `aux_anchor_layer` at `position`: the colour and
    /// shape of a relation question's anchor.
    fn aux_anchor_query_loss(&self, hidden_states: &[Tensor], position: usize, example: &Example) -> Result<Option<Tensor>> {
        let Some(anchor) = example.anchor_cell.and_then(|a| example.cells.get(a)) else { return Ok(None) };
        if self.config.aux_anchor_query_weight <= 0.0 {
            return Ok(None);
        }
        let state = Self::llm_state(hidden_states, self.config.aux_anchor_layer - 1, position, "aux_anchor_layer")?;
        let loss = self.cell_prediction_loss("aux_anchor_query", &state, std::slice::from_ref(anchor))?;
        Ok(Some((loss * self.config.aux_anchor_query_weight)?))
    }

    /// Cross-entropy of the first answer token `target` read from the LLM state after
    /// `aux_attend_layer` layers at `position` through the final norm and the LM head.
    fn aux_early_answer_loss(&self, hidden_states: &[Tensor], position: usize, target: u32) -> Result<Option<Tensor>> {
        if self.config.aux_early_answer_weight <= 0.0 {
            return Ok(None);
        }
        let state = Self::llm_state(hidden_states, self.config.aux_attend_layer, position, "aux_attend_layer")?;
        let logits = self.pipeline.model.llm.logits_of(&Forward::TRAINING, &state)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &Tensor::new(&[target], &Device::Cpu)?)?;
        Ok(Some((loss * self.config.aux_early_answer_weight)?))
    }

    /// −log of the attention that head 0 of `layer` (1-based), at `position`, pays to the QED slot
    /// of `cell`, times `weight` (`None` when the budget has no slot for it).
    fn attend_loss(&self, attention: &[Tensor], tps: &[u32], position: usize, target: Slot, layer: usize, weight: f64) -> Result<Option<Tensor>> {
        let probs = layer_attention(attention, layer)?;
        let slots = slot_positions(tps);
        let found = match target {
            Slot::Cell(cell) => slots.get(cell),
            Slot::Last => slots.last(),
        };
        let Some(&slot) = found else { return Ok(None) };
        let p = probs.get(0)?.get(0)?.get(position)?.get(slot)?;
        Ok(Some(((p + 1e-9)?.log()?.neg()? * weight)?))
    }

    /// Cross-entropy of head 0 of `aux_count_layer`'s attention at `position` against the even
    /// spread over the first token and the QED slots of `counted` (those the budget has).
    fn count_attention_loss(&self, attention: &[Tensor], tps: &[u32], position: usize, counted: &[usize]) -> Result<Tensor> {
        let probs = layer_attention(attention, self.config.aux_count_layer)?;
        let slots = slot_positions(tps);
        let targets: Vec<u32> = std::iter::once(0).chain(counted.iter().filter_map(|&c| slots.get(c).map(|&i| i as u32))).collect();
        let picked = probs.get(0)?.get(0)?.get(position)?.index_select(&Tensor::new(targets.as_slice(), &Device::Cpu)?, 0)?;
        Ok(((picked + 1e-9)?.log()?.mean_all()?.neg()? * self.config.aux_count_weight)?)
    }

    /// Auxiliary head on the LLM state after one layer: each text position after a text position
    /// names the previous token.
    fn aux_prev_loss(&self, hidden_states: &[Tensor], ids: &[u32], tps: &[u32]) -> Result<Option<Tensor>> {
        if self.config.aux_prev_weight <= 0.0 {
            return Ok(None);
        }
        let text = |i: usize| tps[i] & tokenscale_model::imgque::TPS_QED == 0;
        let (positions, previous): (Vec<u32>, Vec<u32>) =
            (1..ids.len()).filter(|&i| text(i) && text(i - 1)).map(|i| (i as u32, ids[i - 1])).unzip();
        if positions.is_empty() {
            return Ok(None);
        }
        let state = hidden_states.get(1).context("aux_prev_weight: the LLM has no layers")?.squeeze(0)?;
        let state = state.index_select(&Tensor::new(positions.as_slice(), &Device::Cpu)?, 0)?;
        let (w, b) = self.head_tensors("aux_prev")?;
        let logits = state.matmul(&w.t()?)?.broadcast_add(b)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &Tensor::new(previous.as_slice(), &Device::Cpu)?)?;
        Ok(Some((loss * self.config.aux_prev_weight)?))
    }

    /// Auxiliary head over the QED slots from `routed_from_slot` on: each predicts the content of
    /// the cell the question is about.
    fn aux_routed_loss(&self, query_states: &Tensor, example: &Example) -> Result<Option<Tensor>> {
        let from = self.config.routed_from_slot;
        let n = query_states.dim(0)?;
        let Some(cell) = example.answer_cell.and_then(|a| example.cells.get(a)) else { return Ok(None) };
        if self.config.aux_routed_weight <= 0.0 || n <= from {
            return Ok(None);
        }
        let tokens = query_states.narrow(0, from, n - from)?;
        let targets = vec![*cell; n - from];
        Ok(Some((self.cell_prediction_loss("aux_routed", &tokens, &targets)? * self.config.aux_routed_weight)?))
    }

    /// The example's loss to minimise (answer-token cross-entropies summed, plus the weighted
    /// auxiliary losses), its answer tokens, and the two parts' values.
    fn example_loss(&self, example: &Example, n: usize) -> Result<(Tensor, usize, f64, AuxTerms)> {
        let p = &self.pipeline;
        let crops = p.encode_image(&Forward::TRAINING, &example.image)?;
        let aux = self.aux_cell_loss(&crops, example)?;
        let conv = Conversation::new().user(example.prompt.clone()).assistant(example.answer.clone());
        let inputs = p.embeddings(&Forward::TRAINING, &crops, &conv, n, n)?;
        let slot_aux = self.aux_slot_loss(&inputs.query_states, example)?;
        let routed_aux = self.aux_routed_loss(&inputs.query_states, example)?;
        let summary_aux = self.aux_summary_loss(&inputs.query_states, example)?;
        let llm = &p.model.llm;
        let c = &self.config;
        let lookup = c.lookup_cell(example);
        let anchor = example.anchor_cell.filter(|_| c.aux_anchor_weight > 0.0);
        let llm_heads =
            [c.aux_prev_weight, c.aux_fetch_weight, c.aux_llm_slot_weight, c.aux_anchor_query_weight, c.aux_early_answer_weight, c.aux_anchor_fetch_weight];
        let want_query = (c.aux_query_weight > 0.0 && matches!(lookup, Some(Slot::Cell(_)))) || llm_heads.iter().any(|&w| w > 0.0);
        let counted = example.counted_cells.as_deref().filter(|_| c.aux_count_weight > 0.0);
        let want_attention = (c.aux_attend_weight > 0.0 && lookup.is_some()) || anchor.is_some() || counted.is_some();
        let capture = AttentionCapture::new();
        let ctx = if want_attention { Forward::TRAINING.capturing(&capture) } else { Forward::TRAINING };
        let options = if want_query { ForwardOptions::ALL.with_hidden_states() } else { ForwardOptions::ALL };
        let out = llm.forward_embeds(&ctx, &inputs.embeds, &mut llm.new_cache(), options);
        let attention = capture.take();
        let out = out?;
        let (ids, tps) = (&inputs.record.llm.input_ids, &inputs.record.llm.input_tps);
        // Position i predicts token i + 1: train on the answer and the end-of-answer token.
        let mut rows = Vec::new();
        let mut targets = Vec::new();
        for i in 0..ids.len().saturating_sub(1) {
            let next = tps[i + 1];
            if next & ANS != 0 || (next & EOS != 0 && i > 0 && tps[i] & ANS != 0) {
                rows.push(i as u32);
                targets.push(ids[i + 1]);
            }
        }
        if rows.is_empty() {
            bail!("example with prompt {:?}: the answer {:?} gives no target tokens", example.prompt, example.answer);
        }
        let logits = out.logits.squeeze(0)?.index_select(&Tensor::new(rows.as_slice(), &Device::Cpu)?, 0)?;
        let targets = Tensor::new(targets.as_slice(), &Device::Cpu)?;
        let answer = (candle_nn::loss::cross_entropy(&logits, &targets)? * targets.dim(0)? as f64)?;
        let at = rows[0] as usize;
        let query_aux = match lookup {
            Some(Slot::Cell(cell)) if c.aux_query_weight > 0.0 => Some(self.aux_query_loss(&out.hidden_states, at, cell)?),
            _ => None,
        };
        let prev_aux = self.aux_prev_loss(&out.hidden_states, ids, tps)?;
        let attend_aux = match lookup {
            Some(cell) if c.aux_attend_weight > 0.0 => self.attend_loss(&attention, tps, at, cell, c.aux_attend_layer, c.aux_attend_weight)?,
            _ => None,
        };
        let anchor_aux = match anchor {
            Some(cell) => self.attend_loss(&attention, tps, at, Slot::Cell(cell), c.aux_anchor_layer, c.aux_anchor_weight)?,
            None => None,
        };
        let count_aux = match counted {
            Some(cells) => Some(self.count_attention_loss(&attention, tps, at, cells)?),
            None => None,
        };
        let fetch_aux = self.aux_fetch_loss(&out.hidden_states, at, example, n)?;
        let llm_slot_aux = self.aux_llm_slot_loss(&out.hidden_states, tps, example)?;
        let anchor_query_aux = self.aux_anchor_query_loss(&out.hidden_states, at, example)?;
        let early_aux = self.aux_early_answer_loss(&out.hidden_states, at, ids[at + 1])?;
        let anchor_fetch_aux = self.aux_anchor_fetch_loss(&out.hidden_states, at, example.anchor_cell, n)?;
        let answer_value = answer.to_scalar::<f32>()? as f64;
        let (mut loss, mut terms) = (answer, [0.0; AUX_TERMS]);
        let extras = [
            aux, slot_aux, routed_aux, query_aux, prev_aux, attend_aux, anchor_aux, count_aux, summary_aux, fetch_aux, llm_slot_aux, anchor_query_aux,
            early_aux, anchor_fetch_aux,
        ];
        for (value, extra) in terms.iter_mut().zip(extras) {
            if let Some(extra) = extra {
                *value = extra.to_scalar::<f32>()? as f64;
                loss = (loss + extra)?;
            }
        }
        Ok((loss, targets.dim(0)?, answer_value, terms))
    }

    /// Forward and backward of examples `range` of batch `step` on the calling thread: the
    /// gradients of their summed (not yet averaged) loss, the summed loss, answer tokens and budgets.
    fn shard(&self, step: u64, range: std::ops::Range<usize>) -> Result<(GradStore, ShardSums)> {
        let mut total: Option<Tensor> = None;
        let mut sums = ShardSums::default();
        for j in range {
            let index = step * self.config.batch as u64 + j as u64;
            let example = self.source.example(index)?;
            let n = self.config.vision_tokens(step, j);
            let (loss, count, answer, aux) = self.example_loss(&example, n)?;
            total = Some(match total {
                Some(t) => (t + loss)?,
                None => loss,
            });
            sums.add(&ShardSums { answer, aux, tokens: count, budget: n });
        }
        let grads = total.context("empty shard")?.backward()?;
        Ok((grads, sums))
    }

    /// One optimiser step on batch `self.step`; returns its mean per-token loss.
    ///
    /// The batch is cut into `SHARDS` fixed slices whose gradients are summed in slice order, so
    /// the result is the same on any number of cores; the slices run on up to that many threads
    /// (candle's CPU element-wise work is single-threaded, so this is where cores help).
    pub fn train_step(&mut self) -> Result<LossRow> {
        let started = Instant::now();
        let step = self.step;
        let batch = self.config.batch;
        let shards = SHARDS.min(batch);
        let ranges: Vec<_> = (0..shards).map(|s| s * batch / shards..(s + 1) * batch / shards).collect();
        let threads = std::thread::available_parallelism().map_or(1, |p| p.get()).clamp(1, shards);
        let this = &*self;
        let mut results: Vec<Option<Result<(GradStore, ShardSums)>>> = (0..shards).map(|_| None).collect();
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let mine: Vec<(usize, std::ops::Range<usize>)> =
                        ranges.iter().cloned().enumerate().skip(t).step_by(threads).collect();
                    scope.spawn(move || {
                        // The shards' forward passes run in training mode (`Forward::TRAINING`).
                        mine.into_iter().map(|(i, r)| (i, this.shard(step, r))).collect::<Vec<_>>()
                    })
                })
                .collect();
            for handle in handles {
                match handle.join() {
                    Ok(out) => {
                        for (i, r) in out {
                            results[i] = Some(r);
                        }
                    }
                    Err(_) => std::panic::resume_unwind(Box::new("a training thread panicked")),
                }
            }
        });
        let mut merged: Option<GradStore> = None;
        let mut sums = ShardSums::default();
        for result in results {
            let (mut grads, part) = result.context("a training shard did not run")??;
            sums.add(&part);
            merged = Some(match merged {
                None => grads,
                Some(mut acc) => {
                    for var in self.params.values() {
                        if let Some(g) = grads.remove(var.as_tensor()) {
                            let sum = match acc.remove(var.as_tensor()) {
                                Some(a) => (a + g)?,
                                None => g,
                            };
                            acc.insert(var.as_tensor(), sum);
                        }
                    }
                    acc
                }
            });
        }
        let mut grads = merged.context("empty batch")?;
        let tokens = sums.tokens;
        for var in self.params.values() {
            if let Some(g) = grads.remove(var.as_tensor()) {
                grads.insert(var.as_tensor(), (g / tokens as f64)?);
            }
        }
        let lr = self.config.learning_rate(step);
        self.optimizer.step(&grads, lr)?;
        self.step += 1;
        let row = LossRow {
            step: self.step,
            loss: sums.answer / tokens as f64,
            aux_loss: sums.aux.iter().sum::<f64>() / batch as f64,
            aux_terms: sums.aux.map(|v| v / batch as f64),
            lr,
            mean_vision_tokens: sums.budget as f64 / batch as f64,
            seconds: started.elapsed().as_secs_f64(),
        };
        self.history.push(row.clone());
        Ok(row)
    }

    /// Greedy answer of the current model.
    pub fn answer(&self, example: &Example, n: usize) -> Result<String> {
        let p = &self.pipeline;
        let crops = p.encode_image(&Forward::INFERENCE, &example.image)?;
        let conv = Conversation::new().user(example.prompt.clone()).for_generation();
        let inputs = p.embeddings(&Forward::INFERENCE, &crops, &conv, n, n)?;
        let config = GenerationConfig { max_new_tokens: 4, stop_tokens: p.stop_tokens(), ..Default::default() };
        let mut tokens = generate(&Forward::INFERENCE, &p.model.llm, &inputs.embeds, &config, |_| Ok(()))?;
        if tokens.last().is_some_and(|t| config.stop_tokens.contains(t)) {
            tokens.pop();
        }
        p.tokenizer.decode(&tokens, true)
    }

    /// Exact-match accuracy on the first `validation_items` validation examples at budget n.
    pub fn validate(&mut self, n: usize) -> Result<f64> {
        let items = self.config.validation_items;
        if items == 0 {
            return Ok(f64::NAN);
        }
        let mut right = 0usize;
        for i in 0..items as u64 {
            let example = self.source.validation_example(i)?;
            if self.answer(&example, n)?.trim() == example.answer.trim() {
                right += 1;
            }
        }
        let accuracy = right as f64 / items as f64;
        self.validation.push(ValidationRow { step: self.step, vision_tokens: n, accuracy });
        Ok(accuracy)
    }

    /// Every trained tensor, the auxiliary head's included (checkpoints keep it for resuming).
    pub fn parameters(&self) -> HashMap<String, Tensor> {
        self.params.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect()
    }

    /// The model's own tensors: what `out/model/model.safetensors` ships.
    pub fn model_parameters(&self) -> HashMap<String, Tensor> {
        self.parameters().into_iter().filter(|(k, _)| !AUX_PREFIXES.iter().any(|p| k.starts_with(p))).collect()
    }

    /// Writes a checkpoint of the current step (model folder, optimiser state, history) and
    /// refreshes `out/model/` and `out/loss.csv`.
    pub fn checkpoint(&self) -> Result<PathBuf> {
        let ck = Checkpoint {
            dir: PathBuf::new(),
            step: self.step,
            config: self.config.clone(),
            history: self.history.clone(),
            validation: self.validation.clone(),
        };
        write_checkpoint(&self.out, &model_dir(&self.out), &ck, &self.parameters(), &self.model_parameters(), &self.optimizer.state_tensors())
    }
}
