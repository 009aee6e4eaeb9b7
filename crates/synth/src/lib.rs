//! tokenscale-synth: a seeded synthetic visual benchmark with graded difficulty, built so that a tiny model can be
//! trained on it and evaluated with the same strings.
//!
//! Each image (64×64 RGB) shows a light background tint, a coloured 3-px border and a 4×4 grid
//! of 16-px cells, each empty (p = 0.4) or holding one small shape (circle, square, triangle,
//! cross; red, green, blue, yellow, purple; 9–12 px). *Coarse* questions ask about the background
//! and the border (a 16×16 summary suffices); *fine* ones about single cells, counts and
//! neighbours (the small shapes must be resolved). Items are multiple choice (4 options), yes/no
//! (balanced) or short answer; every answer is one word of the closed vocabulary [`words`].
//!
//! An item is a pure function of (split, index, mix): [`item`] / [`item_with`] in memory for
//! training, [`write_benchmark`] as VLMEvalKit TSVs for `tokenscale eval`. The image depends on
//! (split, index) only, so changing the mix changes questions, never pictures.
//!
//! [`generate`] is the older small fixture that the sweep tests use.

#![warn(missing_docs)]

mod fixture;
pub mod mix;
mod pick;
pub mod questions;
pub mod rng;
pub mod scene;
mod tsv;
pub mod vocab;

pub use fixture::{generate, picture, Shape};
pub use mix::Mix;
pub use questions::{Category, SUBTASKS};
pub use rng::Rng;
pub use scene::{Scene, COLORS, SHAPES, TINTS};
pub use tsv::{file_name, png_bytes, write_benchmark};
pub use vocab::{split_words, words};

use image::RgbImage;
use questions::{answer_set, ask, candidates, claim, Candidate};
use rng::stream_seed;
use tokenscale_vlmeval::prompt::{build_prompt, PromptStyle, QuestionText};
use tokenscale_vlmeval::Kind;

/// Disjoint seed streams: no (split, index) shares its seed with another split's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Split {
    /// The training split (what `tokenscale train` reads).
    Train,
    /// The validation split, for model selection during training.
    Val,
    /// The held-out test split that the sweep evaluates.
    Test,
}

impl Split {
    /// Every split, in declaration order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    /// The lowercase name (`train`, `val`, `test`) used in file names; [`Split::parse`] reads it.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }

    /// Reads a split name, case-insensitively (`validation` also means `val`); errors otherwise.
    pub fn parse(s: &str) -> anyhow::Result<Split> {
        match s.to_ascii_lowercase().as_str() {
            "train" => Ok(Split::Train),
            "val" | "validation" => Ok(Split::Val),
            "test" => Ok(Split::Test),
            _ => anyhow::bail!("unknown split {s:?} (train, val, test)"),
        }
    }

    /// The split's seed tag (arbitrary distinct constants; changing one changes the split).
    fn tag(self) -> u64 {
        match self {
            Split::Train => 0x7472_6169_6e00_0001,
            Split::Val => 0x7661_6c00_0000_0002,
            Split::Test => 0x7465_7374_0000_0003,
        }
    }
}

/// The three item formats, each scored as its VLMEvalKit kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ItemKind {
    /// Four options A–D; the answer is the letter.
    Mcq,
    /// A claim to confirm; the answer is "yes" or "no".
    YesNo,
    /// An open question answered with one word.
    ShortAnswer,
}

impl ItemKind {
    /// Every item kind, in the order of `Mix` kind weights.
    pub const ALL: [ItemKind; 3] = [ItemKind::Mcq, ItemKind::YesNo, ItemKind::ShortAnswer];

    /// The VLMEvalKit kind name (`mcq`, `yorn`, `vqa`).
    pub fn as_str(self) -> &'static str {
        self.eval_kind().as_str()
    }

    /// Reads a kind name, case-insensitively: `mcq`, `yorn`/`yn`/`yesno`, `vqa`/`short`;
    /// `None` for anything else.
    pub fn parse(s: &str) -> Option<ItemKind> {
        match s.to_ascii_lowercase().as_str() {
            "mcq" => Some(ItemKind::Mcq),
            "yorn" | "yn" | "yesno" => Some(ItemKind::YesNo),
            "vqa" | "short" => Some(ItemKind::ShortAnswer),
            _ => None,
        }
    }

    /// The VLMEvalKit dataset kind this item kind is prompted and scored as.
    pub fn eval_kind(self) -> Kind {
        match self {
            ItemKind::Mcq => Kind::Mcq,
            ItemKind::YesNo => Kind::Yorn,
            ItemKind::ShortAnswer => Kind::Vqa,
        }
    }

    fn position(self) -> usize {
        match self {
            ItemKind::Mcq => 0,
            ItemKind::YesNo => 1,
            ItemKind::ShortAnswer => 2,
        }
    }
}

/// One benchmark item in memory.
#[derive(Clone, Debug)]
pub struct SynthItem {
    /// The rendered scene (64×64 RGB).
    pub image: RgbImage,
    /// The question as the TSV's `question` cell holds it (yes/no questions end with VLMEvalKit's
    /// "Please answer yes or no."); `prompt_for` adds what the eval prompt adds.
    pub question: String,
    /// MCQ option texts for A–D; empty for the other kinds.
    pub options: Vec<String>,
    /// The expected answer: "A"–"D" for MCQ (VLMEvalKit's option extraction is case-sensitive),
    /// otherwise one lower-case word (colour, tint, shape, "0"–"6", "none", "yes", "no").
    pub answer: String,
    /// The item's format (MCQ, yes/no or short answer).
    pub kind: ItemKind,
    /// Whether the subtask is coarse (global summary) or fine (small shapes).
    pub category: Category,
    /// The subtask's name, one of `questions::SUBTASKS`.
    pub subtask: &'static str,
    /// What the image shows (the ground truth the answer was computed from).
    pub scene: Scene,
    /// What the question is about.
    pub subject: questions::Subject,
}

const SCENE_STREAM: u64 = 1;
const QUESTION_STREAM: u64 = 2;
/// Fresh scenes tried when none of the mix's subtasks can be asked about a scene.
const SCENE_TRIES: usize = 64;

/// Item `index` of `split` with every subtask and kind equally likely.
pub fn item(split: Split, index: u64) -> SynthItem {
    item_with(split, index, &Mix::default())
}

/// Item `index` of `split` with subtasks and kinds drawn by `mix`.
pub fn item_with(split: Split, index: u64, mix: &Mix) -> SynthItem {
    let mut scene_rng = Rng::new(stream_seed(split.tag(), index, SCENE_STREAM));
    let mut rng = Rng::new(stream_seed(split.tag(), index, QUESTION_STREAM));
    let kind = ItemKind::ALL[rng.weighted(mix.kind_weights()).unwrap_or(0)];
    for _ in 0..SCENE_TRIES {
        let scene = Scene::random(&mut scene_rng);
        let mut weights = mix.subtask_weights().to_vec();
        while let Some(subtask) = rng.weighted(&weights) {
            let cands = candidates(subtask, &scene);
            if !cands.is_empty() {
                return build(scene, subtask, &cands, kind, &mut rng);
            }
            weights[subtask] = 0.0;
        }
    }
    // Unreachable in practice (a mix of relation questions only and 64 scenes without a unique
    // shape that has a neighbour); the background can always be asked about.
    let scene = Scene::random(&mut scene_rng);
    let cands = candidates(0, &scene);
    build(scene, 0, &cands, kind, &mut rng)
}

fn build(
    scene: Scene,
    subtask: usize,
    cands: &[Candidate],
    kind: ItemKind,
    rng: &mut Rng,
) -> SynthItem {
    let (question, options, answer, subject) = match kind {
        ItemKind::YesNo => {
            let (c, value) = pick::claim_question(subtask, cands, rng);
            let answer = if c.answer == value { "yes" } else { "no" };
            (claim(subtask, c.subject, value), Vec::new(), answer.to_string(), c.subject)
        }
        ItemKind::ShortAnswer => {
            let c = pick::open_question(subtask, cands, rng);
            (ask(subtask, c.subject), Vec::new(), c.answer.to_string(), c.subject)
        }
        ItemKind::Mcq => {
            let (c, mut options) = pick::choice_question(subtask, cands, rng);
            let at = rng.below(4).min(options.len());
            options.insert(at, c.answer);
            let letter = char::from(b'A' + at as u8).to_string();
            (
                ask(subtask, c.subject),
                options.iter().map(|o| o.to_string()).collect(),
                letter,
                c.subject,
            )
        }
    };
    let (name, category) = SUBTASKS[subtask];
    SynthItem {
        image: scene.render(),
        question,
        options,
        answer,
        kind,
        category,
        subtask: name,
        scene,
        subject,
    }
}

/// The item as the evaluator reads it back from the TSV: the question cell, no hint, the options
/// lettered from A (what the eval prompt is built from).
fn as_read(item: &SynthItem) -> QuestionText {
    QuestionText {
        question: item.question.clone(),
        hint: None,
        options: item
            .options
            .iter()
            .enumerate()
            .map(|(i, o)| (char::from(b'A' + i as u8), o.clone()))
            .collect(),
    }
}

/// Exactly the text `tokenscale eval` gives a query-fused model (VLMEvalKit's default prompt) for
/// this item once it is written to a TSV.
pub fn prompt_for(item: &SynthItem) -> String {
    prompt_with_style(item, PromptStyle::Default)
}

/// The eval prompt under another prompt style (LLaVA models get `PromptStyle::Llava`).
pub fn prompt_with_style(item: &SynthItem, style: PromptStyle) -> String {
    build_prompt(&as_read(item), item.kind.eval_kind(), style)
}

/// Accuracy of uniform guessing over the possible answers: 1/4 for MCQ, 1/2 for yes/no, one
/// over the answer set for short answers (`None` for an unknown subtask).
pub fn chance_level(subtask: &str, kind: ItemKind) -> Option<f64> {
    let i = SUBTASKS.iter().position(|s| s.0 == subtask)?;
    Some(match kind {
        ItemKind::Mcq => 0.25,
        ItemKind::YesNo => 0.5,
        ItemKind::ShortAnswer => 1.0 / answer_set(i).len() as f64,
    })
}
