//! Training examples: an image, the exact prompt the evaluation gives the model, one-word answer.

use std::collections::BTreeSet;

use anyhow::Result;
use image::RgbImage;
use tokenscale_synth::questions::Subject;

/// One training or validation example, with what the auxiliary losses supervise.
#[derive(Clone, Debug)]
pub struct Example {
    /// The image the model sees.
    pub image: RgbImage,
    /// The question, as the evaluation words it.
    pub prompt: String,
    /// The expected answer (one word; exact match).
    pub answer: String,
    /// What each cell of the scene's grid holds, row-major, as (colour, shape) class ids with 0
    /// meaning empty (colour 1 + `COLORS` index, shape 1 + `SHAPES` index); empty when unknown.
    pub cells: Vec<(u32, u32)>,
    /// The index into `cells` of the cell whose content answers the question, if one does.
    pub answer_cell: Option<usize>,
    /// The index into `cells` of the cell the question names by row and column, if it does.
    pub asked_cell: Option<usize>,
    /// The index into `cells` of the anchor a relation question names by colour and shape ("the
    /// red circle"), if it does.
    pub anchor_cell: Option<usize>,
    /// The indices into `cells` of the cells a counting question counts; `None` for other
    /// questions.
    pub counted_cells: Option<Vec<usize>>,
    /// The whole-image facts as class ids: (background tint, border colour); `None` when unknown.
    pub summary: Option<(u32, u32)>,
    /// Whether the question asks about the whole image (background or border).
    pub asks_summary: bool,
}

/// Colour classes of `Example::cells`: 0 (empty) and one per synthetic-scene colour.
pub const COLOUR_CLASSES: usize = 1 + tokenscale_synth::scene::COLORS.len();
/// Shape classes of `Example::cells`: 0 (empty) and one per synthetic-scene shape.
pub const SHAPE_CLASSES: usize = 1 + tokenscale_synth::scene::SHAPES.len();
/// Background tints of `Example::summary`'s first id.
pub const TINT_CLASSES: usize = tokenscale_synth::scene::TINTS.len();
/// Border colours of `Example::summary`'s second id (a border always has a colour: no empty class).
pub const BORDER_CLASSES: usize = tokenscale_synth::scene::COLORS.len();
/// Answers of a counting question ("0" … "6"): the count of `Example::counted_cells`.
pub const COUNT_CLASSES: usize = tokenscale_synth::questions::COUNTS.len();

/// Where a run's examples come from.
///
/// `Sync`: a batch's slices are drawn from it on several threads.
pub trait ExampleSource: Sync {
    /// Training example `index` (a pure function of it, so a resumed run sees the same data).
    fn example(&self, index: u64) -> Result<Example>;
    /// Validation example `index`, from data training never sees.
    fn validation_example(&self, index: u64) -> Result<Example>;
    /// Every word the tokenizers must know.
    fn words(&self) -> BTreeSet<String>;
}

/// The synthetic benchmark: training examples from its train split, validation from its val
/// split, prompts exactly as `tokenscale eval` builds them for the query-fused model.
pub struct SynthSource {
    /// How subtasks and item kinds are weighted in the training split.
    pub mix: tokenscale_synth::Mix,
}

impl SynthSource {
    fn convert(item: tokenscale_synth::SynthItem) -> Example {
        let prompt = tokenscale_synth::prompt_for(&item);
        let cells = item
            .scene
            .cells
            .iter()
            .map(|c| c.as_ref().map_or((0, 0), |p| (1 + p.color as u32, 1 + p.shape as u32)))
            .collect();
        let answer_cell = item.subject.answer_cell(&item.scene);
        let asked_cell = match item.subject {
            Subject::Cell(..) => answer_cell,
            _ => None,
        };
        let anchor_cell = item.subject.anchor_cell(&item.scene);
        let counted_cells = item.subject.counted_cells(&item.scene);
        let summary = Some((item.scene.background as u32, item.scene.border as u32));
        let asks_summary = matches!(item.subject, Subject::Background | Subject::Border);
        Example {
            image: item.image,
            prompt,
            answer: item.answer,
            cells,
            answer_cell,
            asked_cell,
            anchor_cell,
            counted_cells,
            summary,
            asks_summary,
        }
    }
}

/// Items sampled to collect the prompts' words (every template phrase appears within a few
/// hundred items; the rest of the vocabulary comes from the generator's own word list).
const VOCABULARY_SAMPLE: u64 = 4000;

impl ExampleSource for SynthSource {
    fn example(&self, index: u64) -> Result<Example> {
        Ok(Self::convert(tokenscale_synth::item_with(
            tokenscale_synth::Split::Train,
            index,
            &self.mix,
        )))
    }

    fn validation_example(&self, index: u64) -> Result<Example> {
        Ok(Self::convert(tokenscale_synth::item_with(
            tokenscale_synth::Split::Val,
            index,
            &self.mix,
        )))
    }

    fn words(&self) -> BTreeSet<String> {
        let mut words = BTreeSet::new();
        crate::tiny::words_of("USER: ASSISTANT:", &mut words);
        for w in tokenscale_synth::words() {
            crate::tiny::words_of(&w, &mut words);
            crate::tiny::words_of(&w.to_uppercase(), &mut words);
            let mut chars = w.chars();
            if let Some(first) = chars.next() {
                crate::tiny::words_of(
                    &format!("{}{}", first.to_uppercase(), chars.as_str()),
                    &mut words,
                );
            }
        }
        for i in 0..VOCABULARY_SAMPLE {
            let example = Self::convert(tokenscale_synth::item(tokenscale_synth::Split::Train, i));
            crate::tiny::words_of(&example.prompt, &mut words);
            crate::tiny::words_of(&example.answer, &mut words);
        }
        words
    }
}
