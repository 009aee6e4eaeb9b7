//! Subtasks: what each one asks about a scene, its answer set, and the question texts.
//!
//! A subtask lists its *candidates* in a scene (a subject it can ask about and the true answer);
//! the generator then picks the answer it wants first and a candidate with that answer, so that
//! answers are close to uniform and the question text alone says little about the answer.

use super::scene::{Scene, COLORS, GRID, SHAPES, SHAPES_PLURAL, TINTS};

/// Coarse questions need only a global summary of the image; fine ones need the small shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    /// Answerable from a global summary (background tint, border colour).
    Coarse,
    /// Needs the small shapes in the grid cells (cell contents, counts, relations).
    Fine,
}

impl Category {
    /// The lowercase name (`coarse`, `fine`) used in reports and in mix names.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Coarse => "coarse",
            Category::Fine => "fine",
        }
    }
}

/// The subtasks, in a fixed order (the order of `Mix` weights and of reports).
pub const SUBTASKS: [(&str, Category); 8] = [
    ("background", Category::Coarse),
    ("border", Category::Coarse),
    ("cell_colour", Category::Fine),
    ("cell_shape", Category::Fine),
    ("count_shape", Category::Fine),
    ("count_colour", Category::Fine),
    ("relation_colour", Category::Fine),
    ("relation_shape", Category::Fine),
];

/// The answer word when the asked cell or neighbour holds no shape.
pub const NONE: &str = "none";
/// The answer words of counting questions (a colour or shape can fill at most 6 cells).
pub const COUNTS: [&str; 7] = ["0", "1", "2", "3", "4", "5", "6"];
/// Appended to yes/no questions, as VLMEvalKit's Y/N datasets phrase them.
pub const YN_SUFFIX: &str = " Please answer yes or no.";

/// Neighbour directions of the relation subtasks: (phrase, row step, column step).
pub const DIRECTIONS: [(&str, i32, i32); 4] =
    [("left of", 0, -1), ("right of", 0, 1), ("above", -1, 0), ("below", 1, 0)];

/// What a question is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    /// The background tint of the whole image.
    Background,
    /// The colour of the 3-px border.
    Border,
    /// 0-based row and column.
    Cell(usize, usize),
    /// How many cells hold this shape (index into `SHAPES`).
    ShapeCount(usize),
    /// How many cells hold a shape of this colour (index into `COLORS`).
    ColourCount(usize),
    /// The shape next to the unique shape of this (colour, shape), in `DIRECTIONS[dir]`.
    Neighbour {
        /// The anchor shape's colour (index into `COLORS`).
        colour: usize,
        /// The anchor shape's kind (index into `SHAPES`).
        shape: usize,
        /// The direction from the anchor (index into `DIRECTIONS`).
        dir: usize,
    },
}

impl Subject {
    /// The row-major index of the grid cell whose content answers a question about this subject
    /// in `scene` (the asked cell, or the anchor's neighbour); `None` for whole-image subjects
    /// and counts.
    pub fn answer_cell(&self, scene: &Scene) -> Option<usize> {
        match *self {
            Subject::Cell(r, c) => Some(r * GRID + c),
            Subject::Neighbour { dir, .. } => {
                let anchor = self.anchor_cell(scene)?;
                let (_, dr, dc) = DIRECTIONS[dir];
                let (r, c) = ((anchor / GRID) as i32 + dr, (anchor % GRID) as i32 + dc);
                let inside = (0..GRID as i32).contains(&r) && (0..GRID as i32).contains(&c);
                inside.then(|| r as usize * GRID + c as usize)
            }
            _ => None,
        }
    }

    /// The row-major indices of the cells a counting question counts (those holding a shape of
    /// the asked kind or colour); `None` for other subjects.
    pub fn counted_cells(&self, scene: &Scene) -> Option<Vec<usize>> {
        let counts = |p: &super::scene::Placed| match *self {
            Subject::ShapeCount(shape) => p.shape == shape,
            Subject::ColourCount(colour) => p.color == colour,
            _ => false,
        };
        matches!(self, Subject::ShapeCount(_) | Subject::ColourCount(_)).then(|| {
            scene
                .cells
                .iter()
                .enumerate()
                .filter(|(_, c)| c.as_ref().is_some_and(counts))
                .map(|(i, _)| i)
                .collect()
        })
    }

    /// The row-major index of the shape a relation question names by colour and shape (its
    /// anchor); `None` for other subjects or when the scene has no such shape.
    pub fn anchor_cell(&self, scene: &Scene) -> Option<usize> {
        match *self {
            Subject::Neighbour { colour, shape, .. } => scene
                .cells
                .iter()
                .position(|p| p.is_some_and(|p| p.color == colour && p.shape == shape)),
            _ => None,
        }
    }
}

/// One question a subtask can ask in a scene, with its true answer (a word of the answer set).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// What the question asks about.
    pub subject: Subject,
    /// The true answer in this scene, a word of the subtask's answer set.
    pub answer: &'static str,
}

/// Every answer a subtask's open question can have.
pub fn answer_set(subtask: usize) -> Vec<&'static str> {
    let colours = || COLORS.iter().map(|c| c.0);
    match SUBTASKS[subtask].0 {
        "background" => TINTS.iter().map(|c| c.0).collect(),
        "border" | "relation_colour" => colours().collect(),
        "cell_colour" => colours().chain([NONE]).collect(),
        "cell_shape" => SHAPES.iter().copied().chain([NONE]).collect(),
        "relation_shape" => SHAPES.to_vec(),
        _ => COUNTS.to_vec(),
    }
}

/// The values a yes/no question may claim ("Is there a none …" is not a question).
pub fn claim_set(subtask: usize) -> Vec<&'static str> {
    answer_set(subtask).into_iter().filter(|a| *a != NONE).collect()
}

/// The questions `subtask` can ask about `scene`.
pub fn candidates(subtask: usize, scene: &Scene) -> Vec<Candidate> {
    let cells = || (0..GRID).flat_map(|r| (0..GRID).map(move |c| (r, c)));
    let count = |f: &dyn Fn(usize, usize) -> bool| {
        scene.cells.iter().flatten().filter(|p| f(p.shape, p.color)).count()
    };
    let count_word = |n: usize| COUNTS.get(n).copied();
    match SUBTASKS[subtask].0 {
        "background" => {
            vec![Candidate { subject: Subject::Background, answer: TINTS[scene.background].0 }]
        }
        "border" => vec![Candidate { subject: Subject::Border, answer: COLORS[scene.border].0 }],
        "cell_colour" => cells()
            .map(|(r, c)| Candidate {
                subject: Subject::Cell(r, c),
                answer: scene.at(r, c).map(|p| COLORS[p.color].0).unwrap_or(NONE),
            })
            .collect(),
        "cell_shape" => cells()
            .map(|(r, c)| Candidate {
                subject: Subject::Cell(r, c),
                answer: scene.at(r, c).map(|p| SHAPES[p.shape]).unwrap_or(NONE),
            })
            .collect(),
        // Counts above 6 are not asked: the answer set stops there.
        "count_shape" => (0..SHAPES.len())
            .filter_map(|s| {
                count_word(count(&|shape, _| shape == s))
                    .map(|answer| Candidate { subject: Subject::ShapeCount(s), answer })
            })
            .collect(),
        "count_colour" => (0..COLORS.len())
            .filter_map(|k| {
                count_word(count(&|_, colour| colour == k))
                    .map(|answer| Candidate { subject: Subject::ColourCount(k), answer })
            })
            .collect(),
        name => {
            let want_colour = name == "relation_colour";
            let mut out = Vec::new();
            for (r, c) in cells() {
                let Some(anchor) = scene.at(r, c) else { continue };
                // The anchor must be the only shape of its colour and kind, or "the red circle"
                // would not say which one.
                if count(&|shape, colour| shape == anchor.shape && colour == anchor.color) != 1 {
                    continue;
                }
                for (dir, (_, dr, dc)) in DIRECTIONS.iter().enumerate() {
                    let (nr, nc) = (r as i32 + dr, c as i32 + dc);
                    if nr < 0 || nc < 0 {
                        continue;
                    }
                    let Some(n) = scene.at(nr as usize, nc as usize) else { continue };
                    let answer = if want_colour { COLORS[n.color].0 } else { SHAPES[n.shape] };
                    out.push(Candidate {
                        subject: Subject::Neighbour {
                            colour: anchor.color,
                            shape: anchor.shape,
                            dir,
                        },
                        answer,
                    });
                }
            }
            out
        }
    }
}

fn cell_text(r: usize, c: usize) -> String {
    format!("row {}, column {}", r + 1, c + 1)
}

fn anchor_text(colour: usize, shape: usize, dir: usize) -> String {
    format!("directly {} the {} {}", DIRECTIONS[dir].0, COLORS[colour].0, SHAPES[shape])
}

/// The open question (multiple choice and short answer).
pub fn ask(subtask: usize, subject: Subject) -> String {
    match (SUBTASKS[subtask].0, subject) {
        (_, Subject::Background) => "What colour is the background?".into(),
        (_, Subject::Border) => "What colour is the border?".into(),
        ("cell_shape", Subject::Cell(r, c)) => format!("What shape is in {}?", cell_text(r, c)),
        (_, Subject::Cell(r, c)) => format!("What colour is the shape in {}?", cell_text(r, c)),
        (_, Subject::ShapeCount(s)) => format!("How many {} are there?", SHAPES_PLURAL[s]),
        (_, Subject::ColourCount(k)) => format!("How many {} shapes are there?", COLORS[k].0),
        ("relation_shape", Subject::Neighbour { colour, shape, dir }) => {
            format!("What shape is {}?", anchor_text(colour, shape, dir))
        }
        (_, Subject::Neighbour { colour, shape, dir }) => {
            format!("What colour is the shape {}?", anchor_text(colour, shape, dir))
        }
    }
}

/// The yes/no question claiming `value` (a word of `claim_set`), with VLMEvalKit's Y/N suffix.
pub fn claim(subtask: usize, subject: Subject, value: &str) -> String {
    let q = match (SUBTASKS[subtask].0, subject) {
        (_, Subject::Background) => format!("Is the background {value}?"),
        (_, Subject::Border) => format!("Is the border {value}?"),
        ("cell_shape", Subject::Cell(r, c)) => {
            format!("Is there a {value} in {}?", cell_text(r, c))
        }
        (_, Subject::Cell(r, c)) => format!("Is there a {value} shape in {}?", cell_text(r, c)),
        (_, Subject::ShapeCount(s)) => format!("Is the number of {} {value}?", SHAPES_PLURAL[s]),
        (_, Subject::ColourCount(k)) => format!("Is the number of {} shapes {value}?", COLORS[k].0),
        ("relation_shape", Subject::Neighbour { colour, shape, dir }) => {
            format!("Is the shape {} a {value}?", anchor_text(colour, shape, dir))
        }
        (_, Subject::Neighbour { colour, shape, dir }) => {
            format!("Is the shape {} {value}?", anchor_text(colour, shape, dir))
        }
    };
    q + YN_SUFFIX
}
