//! Rule-based scorers (no LLM judge), reproducing VLMEvalKit's numbers.

pub mod caption;
pub mod mcq;
pub mod ocrbench;
pub mod ptb;
pub mod vqa;
pub mod yorn;

use crate::dataset::Item;
use crate::kind::Kind;
use serde::{Deserialize, Serialize};

/// Which VLMEvalKit rules to apply where they changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Compat {
    /// Current rules (VLMEvalKit HEAD e8e78f05).
    #[default]
    #[serde(rename = "head")]
    Head,
    /// The paper's commit 0ff0c3e (ChartQA arguments swapped, older MCQ extraction, narrower
    /// circular detection).
    #[serde(rename = "0ff0c3e")]
    V0ff0c3e,
}

impl Compat {
    /// Reads a compatibility name: `head` (also `HEAD`, `e8e78f05`) or `0ff0c3e`; errors
    /// on anything else.
    pub fn parse(s: &str) -> anyhow::Result<Compat> {
        match s {
            "head" | "HEAD" | "e8e78f05" => Ok(Compat::Head),
            "0ff0c3e" => Ok(Compat::V0ff0c3e),
            _ => anyhow::bail!("unknown VLMEvalKit compatibility {s:?} (head, 0ff0c3e)"),
        }
    }
    /// The name [`Compat::parse`] reads back (`head` or `0ff0c3e`).
    pub fn as_str(self) -> &'static str {
        match self {
            Compat::Head => "head",
            Compat::V0ff0c3e => "0ff0c3e",
        }
    }
}

/// Scoring options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoreOptions {
    /// Which VLMEvalKit version's scoring behaviour to reproduce.
    pub compat: Compat,
    /// Captions: tokenise with the PTB tokenizer first (the lmms-eval convention).
    pub ptb: bool,
}

/// One prediction to score.
#[derive(Clone, Copy, Debug)]
pub struct Row<'a> {
    /// The benchmark item predicted for.
    pub item: &'a Item,
    /// The model's raw answer text.
    pub prediction: &'a str,
}

/// One number of a scores table (VLMEvalKit metric names and scales).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// The split the number is restricted to (`None`: all rows).
    pub split: Option<String>,
    /// The category the number is restricted to (`None`: all rows).
    pub category: Option<String>,
    /// The VLMEvalKit metric name (e.g. `Overall`, `acc`, `Final Score`).
    pub metric: String,
    /// The value, on VLMEvalKit's scale for this metric (mostly percent).
    pub value: f64,
}

impl Metric {
    /// A metric from its parts (the name is copied).
    pub fn new(
        split: Option<String>,
        category: Option<String>,
        metric: &str,
        value: f64,
    ) -> Metric {
        Metric { split, category, metric: metric.to_string(), value }
    }
}

/// Score a dataset's predictions with the rules its name and kind select.
pub fn score(
    dataset: &str,
    kind: Kind,
    rows: &[Row],
    opts: ScoreOptions,
) -> anyhow::Result<Vec<Metric>> {
    Ok(match kind {
        Kind::Mcq => mcq::score(dataset, rows, opts.compat)?,
        Kind::Yorn => yorn::score(dataset, rows)?,
        Kind::Vqa => vqa::score(dataset, rows, opts.compat),
        Kind::Ocrbench => ocrbench::score(rows)?,
        Kind::Caption => caption::score(rows, opts.ptb),
    })
}

/// The per-row extracted answer VLMEvalKit stores next to predictions (MCQ letter, Yes/No).
pub fn extracted(kind: Kind, row: &Row, opts: ScoreOptions) -> Option<String> {
    match kind {
        Kind::Mcq => Some(mcq::extract(row, opts.compat).to_string()),
        Kind::Yorn => Some(yorn::extract(row.prediction).to_string()),
        _ => None,
    }
}
