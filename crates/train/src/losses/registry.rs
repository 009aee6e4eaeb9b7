//! The one list of auxiliary losses. Everything else that depends on which losses exist is
//! derived from `AUX_LOSSES`, in its order: the `aux_*` columns of loss.csv and
//! `LossRow::aux_terms`, the heads a run creates, checkpoints and never ships, the config fields
//! `load.rs` checks, and what the LLM's forward pass has to keep for the losses that read it.
//!
//! A new loss is one entry here (appended: stored `aux_terms` are read as a prefix of this list),
//! its weight field in `TrainConfig`, and its loss function.

use anyhow::Result;
use candle_core::Tensor;

use super::inputs::{AuxInputs, Slot, Targets};
use super::{attention, llm, vision};
use crate::config::TrainConfig;
use crate::data::COUNT_CLASSES;
use crate::losses::heads::{CELL_CLASSES, SUMMARY_CLASSES};

/// What of an example's forward pass a loss reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reads {
    /// The global view's merged vision tokens (the vision tower's output).
    VisionTokens,
    /// The query decoder's states that fill the QED slots.
    QuerySlots,
    /// The LLM's hidden states (kept only when such a loss applies).
    LlmStates,
    /// The LLM's attention probabilities (captured only when such a loss applies).
    LlmAttention,
}

/// The width of the states a head reads.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Width {
    /// `TinyShape::vision_hidden`: vision tokens and query-decoder states.
    Vision,
    /// `TinyShape::llm_hidden`: LLM states.
    Llm,
}

/// How many classes (rows) a head has.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Classes {
    /// A fixed number.
    Fixed(usize),
    /// This many, then the slot grid's rows and its columns (`2 × slot_grid`).
    ThenRowsAndColumns(usize),
    /// One per token of the LLM's vocabulary.
    Vocabulary,
}

/// A linear head of a loss: `{prefix}.weight` `[classes, width]` and `{prefix}.bias` `[classes]`,
/// trained and checkpointed but never shipped in the model folder.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Head {
    /// Parameter-name prefix (without the dot).
    pub prefix: &'static str,
    /// What its input states are.
    pub width: Width,
    /// Its number of classes.
    pub classes: Classes,
    /// XORed into the run's seed for the head's initialisation (distinct per head).
    pub seed_salt: u64,
}

/// A config field naming the LLM layer (1-based) a loss reads; checked to lie within the LLM.
#[derive(Clone, Copy)]
pub(crate) struct LayerField {
    /// The field's name in the config file.
    pub name: &'static str,
    /// Its value.
    pub value: fn(&TrainConfig) -> usize,
}

/// One auxiliary loss.
#[derive(Clone, Copy)]
pub(crate) struct AuxLoss {
    /// Its loss.csv column.
    pub name: &'static str,
    /// The config field holding its weight (finite, ≥ 0; 0 turns it off).
    pub weight_field: &'static str,
    /// That field's value.
    pub weight: fn(&TrainConfig) -> f64,
    /// The layer field it reads, when it reads an LLM layer.
    pub layer: Option<LayerField>,
    /// Its own head; `None` for losses on attention or through the LM head.
    pub head: Option<Head>,
    /// What it reads of the forward pass.
    pub reads: Reads,
    /// Whether an example gives it something to supervise, decided before the forward pass.
    pub applies: fn(&Targets) -> bool,
    /// The unweighted loss of one example (`None`: nothing to supervise after all, e.g. the
    /// budget has no slot for the target).
    pub loss: fn(&AuxInputs) -> Result<Option<Tensor>>,
}

impl AuxLoss {
    /// Whether `config` turns this loss on.
    pub fn is_on(&self, config: &TrainConfig) -> bool {
        (self.weight)(config) > 0.0
    }
}

fn always(_: &Targets) -> bool {
    true
}

const fn head(
    prefix: &'static str,
    width: Width,
    classes: Classes,
    seed_salt: u64,
) -> Option<Head> {
    Some(Head { prefix, width, classes, seed_salt })
}

const fn layer(name: &'static str, value: fn(&TrainConfig) -> usize) -> Option<LayerField> {
    Some(LayerField { name, value })
}

/// Number of auxiliary losses.
pub const AUX_TERMS: usize = AUX_LOSSES.len();

/// The weighted auxiliary losses of one example (or a sum of them), in `AUX_LOSSES` order.
pub type AuxTerms = [f64; AUX_TERMS];

/// The auxiliary losses' names (loss.csv's `aux_*` columns), in `AUX_LOSSES` order.
pub const AUX_TERM_NAMES: [&str; AUX_TERMS] = {
    let mut names = [""; AUX_TERMS];
    let mut i = 0;
    while i < AUX_TERMS {
        names[i] = AUX_LOSSES[i].name;
        i += 1;
    }
    names
};

/// Every auxiliary loss, in loss.csv's column order. What each supervises is documented on its
/// weight field in `TrainConfig` and on its loss function.
pub(crate) const AUX_LOSSES: [AuxLoss; 14] = [
    AuxLoss {
        name: "aux_cell",
        weight_field: "aux_cell_weight",
        weight: |c| c.aux_cell_weight,
        layer: None,
        head: head("aux_cells", Width::Vision, Classes::Fixed(CELL_CLASSES), 0xa0c5),
        reads: Reads::VisionTokens,
        applies: always,
        loss: vision::cell_loss,
    },
    AuxLoss {
        name: "aux_slot",
        weight_field: "aux_slot_weight",
        weight: |c| c.aux_slot_weight,
        layer: None,
        head: head("aux_slots", Width::Vision, Classes::ThenRowsAndColumns(CELL_CLASSES), 0x5107),
        reads: Reads::QuerySlots,
        applies: always,
        loss: vision::slot_loss,
    },
    AuxLoss {
        name: "aux_routed",
        weight_field: "aux_routed_weight",
        weight: |c| c.aux_routed_weight,
        layer: None,
        head: head("aux_routed", Width::Vision, Classes::Fixed(CELL_CLASSES), 0x7047),
        reads: Reads::QuerySlots,
        applies: always,
        loss: vision::routed_loss,
    },
    AuxLoss {
        name: "aux_query",
        weight_field: "aux_query_weight",
        weight: |c| c.aux_query_weight,
        layer: layer("aux_query_layer", |c| c.aux_query_layer),
        head: head("aux_query", Width::Llm, Classes::ThenRowsAndColumns(0), 0x9e4),
        reads: Reads::LlmStates,
        applies: |t| matches!(t.lookup, Some(Slot::Cell(_))),
        loss: llm::query_loss,
    },
    AuxLoss {
        name: "aux_prev",
        weight_field: "aux_prev_weight",
        weight: |c| c.aux_prev_weight,
        layer: None,
        head: head("aux_prev", Width::Llm, Classes::Vocabulary, 0x93e),
        reads: Reads::LlmStates,
        applies: always,
        loss: llm::previous_token_loss,
    },
    AuxLoss {
        name: "aux_attend",
        weight_field: "aux_attend_weight",
        weight: |c| c.aux_attend_weight,
        layer: layer("aux_attend_layer", |c| c.aux_attend_layer),
        head: None,
        reads: Reads::LlmAttention,
        applies: |t| t.lookup.is_some(),
        loss: attention::attend_loss,
    },
    AuxLoss {
        name: "aux_anchor",
        weight_field: "aux_anchor_weight",
        weight: |c| c.aux_anchor_weight,
        layer: layer("aux_anchor_layer", |c| c.aux_anchor_layer),
        head: None,
        reads: Reads::LlmAttention,
        applies: |t| t.example.anchor_cell.is_some(),
        loss: attention::anchor_loss,
    },
    AuxLoss {
        name: "aux_count",
        weight_field: "aux_count_weight",
        weight: |c| c.aux_count_weight,
        layer: layer("aux_count_layer", |c| c.aux_count_layer),
        head: None,
        reads: Reads::LlmAttention,
        applies: |t| t.example.counted_cells.is_some(),
        loss: attention::count_loss,
    },
    AuxLoss {
        name: "aux_summary",
        weight_field: "aux_summary_weight",
        weight: |c| c.aux_summary_weight,
        layer: None,
        head: head("aux_summary", Width::Vision, Classes::Fixed(SUMMARY_CLASSES), 0x5a3),
        reads: Reads::QuerySlots,
        applies: always,
        loss: vision::summary_loss,
    },
    AuxLoss {
        name: "aux_fetch",
        weight_field: "aux_fetch_weight",
        weight: |c| c.aux_fetch_weight,
        layer: layer("aux_attend_layer", |c| c.aux_attend_layer),
        head: head("aux_fetch", Width::Llm, Classes::Fixed(CELL_CLASSES + COUNT_CLASSES), 0xfe7c),
        reads: Reads::LlmStates,
        applies: always,
        loss: llm::fetch_loss,
    },
    AuxLoss {
        name: "aux_llm_slot",
        weight_field: "aux_llm_slot_weight",
        weight: |c| c.aux_llm_slot_weight,
        layer: layer("aux_attend_layer", |c| c.aux_attend_layer),
        head: head("aux_llm_slots", Width::Llm, Classes::Fixed(CELL_CLASSES), 0x11e5),
        reads: Reads::LlmStates,
        applies: always,
        loss: llm::llm_slot_loss,
    },
    AuxLoss {
        name: "aux_anchor_query",
        weight_field: "aux_anchor_query_weight",
        weight: |c| c.aux_anchor_query_weight,
        layer: layer("aux_anchor_layer", |c| c.aux_anchor_layer),
        head: head("aux_anchor_query", Width::Llm, Classes::Fixed(CELL_CLASSES), 0xa9c4),
        reads: Reads::LlmStates,
        applies: always,
        loss: llm::anchor_query_loss,
    },
    AuxLoss {
        name: "aux_early_answer",
        weight_field: "aux_early_answer_weight",
        weight: |c| c.aux_early_answer_weight,
        layer: layer("aux_attend_layer", |c| c.aux_attend_layer),
        head: None,
        reads: Reads::LlmStates,
        applies: always,
        loss: llm::early_answer_loss,
    },
    AuxLoss {
        name: "aux_anchor_fetch",
        weight_field: "aux_anchor_fetch_weight",
        weight: |c| c.aux_anchor_fetch_weight,
        layer: layer("aux_anchor_layer", |c| c.aux_anchor_layer),
        head: head("aux_anchor_fetch", Width::Llm, Classes::ThenRowsAndColumns(0), 0xa9fe),
        reads: Reads::LlmStates,
        applies: always,
        loss: llm::anchor_fetch_loss,
    },
];

/// Whether parameter `name` belongs to an auxiliary head (checkpointed, never shipped).
pub(crate) fn is_head_parameter(name: &str) -> bool {
    AUX_LOSSES
        .iter()
        .filter_map(|l| l.head)
        .any(|h| name.strip_prefix(h.prefix).is_some_and(|rest| rest.starts_with('.')))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::{Map, Value};

    use super::*;

    /// The default config with `field` set to `value`, read as a config file would be.
    fn config_with(field: &str, value: Value) -> TrainConfig {
        let mut fields = Map::new();
        fields.insert(field.to_string(), value);
        serde_json::from_value(Value::Object(fields)).unwrap_or_else(|e| panic!("{field}: {e}"))
    }

    #[test]
    fn the_registry_names_every_auxiliary_field_of_the_config_and_reads_it() {
        let defaults = serde_json::to_value(TrainConfig::default()).unwrap();
        let aux_fields = |suffix: &str| -> BTreeSet<String> {
            defaults
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| k.starts_with("aux_") && k.ends_with(suffix))
                .cloned()
                .collect()
        };
        let weights: BTreeSet<String> =
            AUX_LOSSES.iter().map(|l| l.weight_field.to_string()).collect();
        assert_eq!(weights, aux_fields("_weight"));
        let layers: BTreeSet<String> =
            AUX_LOSSES.iter().filter_map(|l| l.layer).map(|f| f.name.to_string()).collect();
        assert_eq!(layers, aux_fields("_layer"));
        for loss in &AUX_LOSSES {
            assert_eq!(loss.weight_field, format!("{}_weight", loss.name));
            assert_eq!(
                (loss.weight)(&config_with(loss.weight_field, Value::from(0.25))),
                0.25,
                "{}",
                loss.name
            );
            if let Some(layer) = loss.layer {
                assert_eq!(
                    (layer.value)(&config_with(layer.name, Value::from(7))),
                    7,
                    "{}",
                    loss.name
                );
            }
        }
    }

    #[test]
    fn names_heads_and_seeds_are_distinct() {
        let names: BTreeSet<&str> = AUX_LOSSES.iter().map(|l| l.name).collect();
        assert_eq!(names.len(), AUX_TERMS);
        assert_eq!(AUX_TERM_NAMES.to_vec(), AUX_LOSSES.iter().map(|l| l.name).collect::<Vec<_>>());
        let heads: Vec<Head> = AUX_LOSSES.iter().filter_map(|l| l.head).collect();
        assert_eq!(heads.iter().map(|h| h.prefix).collect::<BTreeSet<_>>().len(), heads.len());
        assert_eq!(heads.iter().map(|h| h.seed_salt).collect::<BTreeSet<_>>().len(), heads.len());
    }

    #[test]
    fn only_head_parameters_are_kept_out_of_the_model() {
        assert!(
            is_head_parameter("aux_cells.weight") && is_head_parameter("aux_anchor_fetch.bias")
        );
        assert!(
            !is_head_parameter("aux_cellsx.weight"),
            "a prefix of a longer name is not the head"
        );
        assert!(!is_head_parameter("llm.embed_tokens.weight"));
    }
}
