//! What determines a training run: `TrainConfig`, its fields as stage files spell them, and their
//! defaults. A checkpoint stores the config it was started with, and a resumed run must match it.
//! Reading one from a file and checking it is `load.rs`; the auxiliary losses its `aux_*` fields
//! switch on are listed in `losses::registry`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::tiny::TinyShape;

/// Everything that determines a run; stored with every checkpoint, and a resumed run must match.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// The architecture trained (and written to `out/model/config.json`).
    pub model: TinyShape,
    /// Optimiser steps the learning-rate schedule is laid out over (≥ 1).
    pub steps: u64,
    /// Examples per step (≥ 1); each draws its own vision-token budget.
    pub batch: usize,
    /// Peak learning rate, reached at the end of the warm-up (> 0).
    pub lr: f64,
    /// Learning rate the cosine decay ends at on step `steps` (0 ≤ min_lr ≤ lr).
    pub min_lr: f64,
    /// Steps of linear warm-up from lr / warmup to lr.
    pub warmup: u64,
    /// AdamW's decoupled weight decay, applied to matrices only.
    pub weight_decay: f64,
    /// Seeds the initialisation, the budgets drawn per example and the auxiliary heads.
    pub seed: u64,
    /// A checkpoint (and a validation pass) every this many steps (≥ 1).
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
    /// First QED slot the routed loss covers (below `max_vision_tokens`); the slot loss stops here.
    pub routed_from_slot: usize,
    /// Weight of a fourth auxiliary loss: a linear head (`aux_query.*`, not shipped) reads the
    /// LLM's state after `aux_query_layer` layers at the position that predicts the answer and
    /// names the row and column a cell question asks about — the question parsing a cell lookup
    /// needs before it can match a slot (0 = off).
    pub aux_query_weight: f64,
    /// LLM layers (1-based count) below the state the query head reads.
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
    /// LLM layer (1-based) of the cell lookup: the attend, fetch, LLM-slot and early-answer losses
    /// read it.
    pub aux_attend_layer: usize,
    /// Weight of a seventh auxiliary loss, for relation questions ("the shape directly left of
    /// the red circle"): the first attention head of LLM layer `aux_anchor_layer`, at the position
    /// that predicts the answer, is asked to look at the anchor's QED slot (the first hop). While
    /// it is on, the query and attend losses also cover relation questions, with the neighbour
    /// cell the answer comes from as their target (the second hop) (0 = off).
    pub aux_anchor_weight: f64,
    /// LLM layer (1-based) of the anchor lookup: the anchor, anchor-query and anchor-fetch losses
    /// read it.
    pub aux_anchor_layer: usize,
    /// Weight of an eighth auxiliary loss, for counting questions: the first attention head of
    /// LLM layer `aux_count_layer`, at the position that predicts the answer, is asked to spread
    /// its attention evenly over the first token (a sink) and the slots of the counted cells, so
    /// that the share left on the sink, 1 / (count + 1), carries the count (cross-entropy
    /// against that even target; 0 = off).
    pub aux_count_weight: f64,
    /// LLM layer (1-based) whose first head the count loss supervises.
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
    /// The synthetic benchmark's training mix this config asks for.
    pub fn mix(&self) -> Result<tokenscale_synth::Mix> {
        let mut mix = tokenscale_synth::Mix::default();
        for (name, weight) in &self.subtask_weights {
            mix = mix.with_subtask(name, *weight)?;
        }
        for (name, weight) in &self.kind_weights {
            let kind = tokenscale_synth::ItemKind::parse(name).with_context(|| {
                format!("field `kind_weights`: unknown kind {name:?} (mcq, yn, short)")
            })?;
            mix = mix.with_kind(kind, *weight)?;
        }
        Ok(mix)
    }

    /// The step this run ends at: `stop_after` when it comes before `steps`.
    pub fn last_step(&self) -> u64 {
        self.stop_after.map_or(self.steps, |s| s.min(self.steps))
    }
}
