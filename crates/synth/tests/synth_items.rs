//! The synthetic benchmark in memory: determinism, disjoint splits, answers recomputed from the
//! scene by an independent reading of the question, balance, and the closed vocabulary.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use tokenscale_synth as synth;
use tokenscale_synth::{
    item, item_with, png_bytes, prompt_for, prompt_with_style, split_words, words, Category,
    ItemKind, Mix, Scene, Split, SynthItem, COLORS, SHAPES, TINTS,
};
use tokenscale_vlmeval::prompt::PromptStyle;

fn colour_name(i: usize) -> &'static str {
    COLORS[i].0
}

fn shape_name(i: usize) -> &'static str {
    SHAPES[i]
}

fn cell(scene: &Scene, row: usize, col: usize) -> Option<(&'static str, &'static str)> {
    scene.cells[row * 4 + col].map(|p| (colour_name(p.color), shape_name(p.shape)))
}

/// "row 2, column 3" → (1, 2).
fn parse_cell(text: &str) -> (usize, usize) {
    let rest = text.strip_prefix("row ").unwrap_or_else(|| panic!("no row in {text:?}"));
    let (r, c) = rest.split_once(", column ").unwrap_or_else(|| panic!("no column in {text:?}"));
    let (r, c): (usize, usize) = (r.parse().unwrap(), c.parse().unwrap());
    assert!((1..=4).contains(&r) && (1..=4).contains(&c), "{text:?}");
    (r - 1, c - 1)
}

fn plural_shape(word: &str) -> Option<&'static str> {
    SHAPES.iter().copied().find(|s| word == format!("{s}s") || word == format!("{s}es"))
}

/// What `thing` ("circles", "red shapes") counts in the scene.
fn count(scene: &Scene, thing: &str) -> usize {
    let cells = scene.cells.iter().flatten();
    if let Some(shape) = plural_shape(thing) {
        return cells.filter(|p| shape_name(p.shape) == shape).count();
    }
    let colour = thing.strip_suffix(" shapes").unwrap_or_else(|| panic!("cannot count {thing:?}"));
    cells.filter(|p| colour_name(p.color) == colour).count()
}

/// "directly left of the red circle" → the (colour, shape) of the neighbour, checking that the
/// anchor is the only red circle.
fn neighbour(scene: &Scene, text: &str) -> (&'static str, &'static str) {
    let rest = text.strip_prefix("directly ").unwrap_or_else(|| panic!("{text:?}"));
    let (step, anchor) = [
        ("left of the ", (0, -1)),
        ("right of the ", (0, 1)),
        ("above the ", (-1, 0)),
        ("below the ", (1, 0)),
    ]
    .iter()
    .find_map(|(p, step)| rest.strip_prefix(p).map(|a| (*step, a)))
    .unwrap_or_else(|| panic!("no direction in {text:?}"));
    let (colour, shape) = anchor.split_once(' ').unwrap();
    let places: Vec<(usize, usize)> = (0..4)
        .flat_map(|r| (0..4).map(move |c| (r, c)))
        .filter(|&(r, c)| cell(scene, r, c) == Some((colour, shape)))
        .collect();
    assert_eq!(places.len(), 1, "anchor {anchor:?} is not unique: {places:?}");
    let (r, c) = (places[0].0 as i32 + step.0, places[0].1 as i32 + step.1);
    assert!(
        (0..4).contains(&r) && (0..4).contains(&c),
        "{text:?}: the neighbour is outside the grid"
    );
    cell(scene, r as usize, c as usize)
        .unwrap_or_else(|| panic!("{text:?}: the neighbour cell is empty"))
}

/// The answer to an open question, and whether it is a coarse one.
fn open_answer(scene: &Scene, q: &str) -> (String, bool) {
    let q = q.strip_suffix('?').unwrap_or_else(|| panic!("{q:?} does not end with '?'"));
    if q == "What colour is the background" {
        return (TINTS[scene.background].0.into(), true);
    }
    if q == "What colour is the border" {
        return (colour_name(scene.border).into(), true);
    }
    let answer = if let Some(c) = q.strip_prefix("What colour is the shape in ") {
        let (r, c) = parse_cell(c);
        cell(scene, r, c).map(|x| x.0).unwrap_or("none").to_string()
    } else if let Some(c) = q.strip_prefix("What shape is in ") {
        let (r, c) = parse_cell(c);
        cell(scene, r, c).map(|x| x.1).unwrap_or("none").to_string()
    } else if let Some(t) = q.strip_prefix("How many ") {
        count(scene, t.strip_suffix(" are there").unwrap()).to_string()
    } else if let Some(t) = q.strip_prefix("What colour is the shape ") {
        neighbour(scene, t).0.to_string()
    } else if let Some(t) = q.strip_prefix("What shape is ") {
        neighbour(scene, t).1.to_string()
    } else {
        panic!("unknown question {q:?}")
    };
    (answer, false)
}

/// The truth of a yes/no claim, and whether it is a coarse one.
fn claim_truth(scene: &Scene, q: &str) -> (bool, bool) {
    let q = q
        .strip_suffix("? Please answer yes or no.")
        .unwrap_or_else(|| panic!("{q:?} lacks the Y/N suffix"));
    if let Some(v) = q.strip_prefix("Is the background ") {
        return (TINTS[scene.background].0 == v, true);
    }
    if let Some(v) = q.strip_prefix("Is the border ") {
        return (colour_name(scene.border) == v, true);
    }
    let truth = if let Some(t) = q.strip_prefix("Is there a ") {
        let (what, place) = t.split_once(" in ").unwrap();
        let (r, c) = parse_cell(place);
        match (what.strip_suffix(" shape"), cell(scene, r, c)) {
            (_, None) => false,
            (Some(colour), Some(x)) => x.0 == colour,
            (None, Some(x)) => x.1 == what,
        }
    } else if let Some(t) = q.strip_prefix("Is the number of ") {
        let (thing, n) = t.rsplit_once(' ').unwrap();
        count(scene, thing).to_string() == n
    } else if let Some(t) = q.strip_prefix("Is the shape ") {
        let (rel, value) = t.rsplit_once(' ').unwrap();
        match rel.strip_suffix(" a") {
            Some(rel) => neighbour(scene, rel).1 == value,
            None => neighbour(scene, rel).0 == value,
        }
    } else {
        panic!("unknown claim {q:?}")
    };
    (truth, false)
}

/// Recompute the item's answer from its scene and compare.
fn check_answer(it: &SynthItem) {
    let coarse = match it.kind {
        ItemKind::YesNo => {
            let (truth, coarse) = claim_truth(&it.scene, &it.question);
            assert_eq!(it.answer, if truth { "yes" } else { "no" }, "{:?}", it.question);
            coarse
        }
        ItemKind::ShortAnswer => {
            let (answer, coarse) = open_answer(&it.scene, &it.question);
            assert_eq!(it.answer, answer, "{:?}", it.question);
            coarse
        }
        ItemKind::Mcq => {
            let (answer, coarse) = open_answer(&it.scene, &it.question);
            assert_eq!(it.options.len(), 4, "{:?}", it.options);
            let distinct: HashSet<&String> = it.options.iter().collect();
            assert_eq!(distinct.len(), 4, "repeated option in {:?}", it.options);
            let at = ["A", "B", "C", "D"]
                .iter()
                .position(|l| *l == it.answer)
                .unwrap_or_else(|| panic!("answer {:?}", it.answer));
            assert_eq!(it.options[at], answer, "{:?} {:?}", it.question, it.options);
            assert_eq!(it.options.iter().filter(|o| **o == answer).count(), 1);
            coarse
        }
    };
    assert_eq!(
        it.category == Category::Coarse,
        coarse,
        "{:?} is filed as {:?}",
        it.question,
        it.category
    );
    assert_eq!(
        it.subtask.starts_with("background") || it.subtask.starts_with("border"),
        coarse,
        "{}",
        it.subtask
    );
}

#[test]
fn same_split_and_index_give_the_same_item() {
    for index in [0, 1, 77, 123_456_789] {
        let (a, b) = (item(Split::Train, index), item(Split::Train, index));
        assert_eq!(png_bytes(&a.image).unwrap(), png_bytes(&b.image).unwrap());
        assert_eq!(
            (&a.question, &a.options, &a.answer, a.kind),
            (&b.question, &b.options, &b.answer, b.kind)
        );
        // The picture depends on (split, index) only: another mix asks something else about it.
        let c =
            item_with(Split::Train, index, &Mix::default().with_subtask("coarse", 0.0).unwrap());
        assert_eq!(c.image, a.image);
        assert_eq!(c.category, Category::Fine);
    }
    assert_ne!(item(Split::Train, 0).image, item(Split::Train, 1).image);
}

#[test]
fn splits_share_no_item() {
    let key = |s: Split, i: u64| {
        let it = item(s, i);
        (png_bytes(&it.image).unwrap(), it.question)
    };
    let train: HashSet<(Vec<u8>, String)> = (0..2000).map(|i| key(Split::Train, i)).collect();
    let test: HashSet<(Vec<u8>, String)> = (0..2000).map(|i| key(Split::Test, i)).collect();
    let val: HashSet<(Vec<u8>, String)> = (0..500).map(|i| key(Split::Val, i)).collect();
    assert!(train.len() > 1990, "train repeats itself: {} distinct of 2000", train.len());
    assert_eq!(train.intersection(&test).count(), 0);
    assert_eq!(train.intersection(&val).count(), 0);
    assert_eq!(test.intersection(&val).count(), 0);
}

#[test]
fn answers_follow_from_the_scene() {
    let mut seen: BTreeMap<(&str, ItemKind), usize> = BTreeMap::new();
    for i in 0..3000 {
        let it = item(Split::Test, i);
        check_answer(&it);
        *seen.entry((it.subtask, it.kind)).or_default() += 1;
    }
    // Every subtask in every kind was checked.
    assert_eq!(seen.len(), synth::SUBTASKS.len() * 3, "{seen:?}");
}

#[test]
fn images_show_the_scene() {
    for i in 0..300 {
        let it = item(Split::Val, i);
        let s = &it.scene;
        let px = |x: u32, y: u32| it.image.get_pixel(x, y).0;
        assert_eq!((it.image.width(), it.image.height()), (64, 64));
        for (x, y) in [(0, 0), (2, 40), (63, 63), (30, 61)] {
            assert_eq!(px(x, y), COLORS[s.border].1, "border at ({x}, {y})");
        }
        // The ring just inside the border is never drawn on.
        for (x, y) in [(3, 3), (3, 30), (60, 60), (45, 3)] {
            assert_eq!(px(x, y), TINTS[s.background].1, "background at ({x}, {y})");
        }
        // Each cell inside the border shows its own shape on the background and nothing else.
        for r in 0..4u32 {
            for c in 0..4u32 {
                let shape = s.cells[(r * 4 + c) as usize].map(|p| COLORS[p.color].1);
                let mut shape_pixels = 0;
                for y in (16 * r).max(3)..(16 * r + 16).min(61) {
                    for x in (16 * c).max(3)..(16 * c + 16).min(61) {
                        if Some(px(x, y)) == shape {
                            shape_pixels += 1;
                        } else {
                            assert_eq!(
                                px(x, y),
                                TINTS[s.background].1,
                                "item {i}: row {r}, column {c}, pixel ({x}, {y})"
                            );
                        }
                    }
                }
                // A 9-px cross, the smallest shape, covers 45 pixels.
                assert!(
                    shape.is_none() || shape_pixels >= 45,
                    "item {i}: row {r}, column {c}: {shape_pixels} pixels"
                );
            }
        }
    }
}

fn share(items: &[SynthItem], f: impl Fn(&SynthItem) -> bool) -> f64 {
    items.iter().filter(|it| f(it)).count() as f64 / items.len() as f64
}

#[test]
fn yes_no_and_option_letters_are_balanced() {
    let yn: Vec<SynthItem> = (0..4000)
        .map(|i| item_with(Split::Train, i, &Mix::default().only_kind(ItemKind::YesNo)))
        .collect();
    let yes = share(&yn, |it| it.answer == "yes");
    assert!((0.45..=0.55).contains(&yes), "yes share {yes}");
    for (name, _) in synth::SUBTASKS {
        let sub: Vec<SynthItem> = yn.iter().filter(|it| it.subtask == name).cloned().collect();
        let yes = share(&sub, |it| it.answer == "yes");
        assert!((0.38..=0.62).contains(&yes), "{name}: yes share {yes} over {}", sub.len());
    }
    let mcq: Vec<SynthItem> = (0..4000)
        .map(|i| item_with(Split::Train, i, &Mix::default().only_kind(ItemKind::Mcq)))
        .collect();
    for letter in ["A", "B", "C", "D"] {
        let s = share(&mcq, |it| it.answer == letter);
        assert!((0.22..=0.28).contains(&s), "letter {letter}: share {s}");
    }
}

#[test]
fn short_answers_are_spread_over_the_answer_set() {
    let items: Vec<SynthItem> = (0..6000)
        .map(|i| item_with(Split::Train, i, &Mix::default().only_kind(ItemKind::ShortAnswer)))
        .collect();
    for (name, _) in synth::SUBTASKS {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        let sub: Vec<&SynthItem> = items.iter().filter(|it| it.subtask == name).collect();
        for it in &sub {
            *counts.entry(it.answer.as_str()).or_default() += 1;
        }
        let values = counts.len() as f64;
        let top = *counts.values().max().unwrap() as f64 / sub.len() as f64;
        // The most frequent answer is at most twice as common as under a uniform spread.
        assert!(top <= 2.0 / values, "{name}: answers {counts:?}");
    }
}

#[test]
fn every_prompt_word_is_in_the_vocabulary() {
    let vocabulary: BTreeSet<String> = words().into_iter().collect();
    assert_eq!(vocabulary.len(), words().len(), "words() repeats a word");
    assert!(vocabulary.iter().all(|w| *w == w.to_lowercase()));
    let mut used = BTreeSet::new();
    for i in 0..5000 {
        let it = item(Split::Train, i);
        let texts = [
            prompt_for(&it),
            prompt_with_style(&it, PromptStyle::Llava),
            it.answer.clone(),
            it.options.join(" "),
        ];
        for w in texts.iter().flat_map(|t| split_words(t)) {
            assert!(
                vocabulary.contains(&w),
                "{w:?} (item {i}: {:?}) is not in words()",
                it.question
            );
            used.insert(w);
        }
    }
    let unused: Vec<&String> = vocabulary.difference(&used).collect();
    assert!(unused.is_empty(), "words() lists words no prompt uses: {unused:?}");
    assert_eq!(
        split_words("Question: Is it 3?\nA. red"),
        ["question", ":", "is", "it", "3", "?", "a", ".", "red"]
    );
}

#[test]
fn prompts_are_the_eval_prompts() {
    let mcq = item_with(Split::Test, 5, &Mix::default().only_kind(ItemKind::Mcq));
    let p = prompt_for(&mcq);
    assert!(
        p.starts_with(&format!("Question: {}\nOptions:\nA. {}\n", mcq.question, mcq.options[0])),
        "{p:?}"
    );
    assert!(p.ends_with("Please select the correct answer from the options above. \n"), "{p:?}");
    let yn = item_with(Split::Test, 5, &Mix::default().only_kind(ItemKind::YesNo));
    assert_eq!(prompt_for(&yn), yn.question);
    assert!(yn.question.ends_with("? Please answer yes or no."));
    let vqa = item_with(Split::Test, 5, &Mix::default().only_kind(ItemKind::ShortAnswer));
    assert_eq!(
        prompt_for(&vqa),
        format!("{}\nAnswer the question using a single word or phrase.", vqa.question)
    );
}

#[test]
fn mix_chooses_subtasks_and_kinds() {
    let mix = Mix::parse("coarse=0, count_shape=0, yorn=0, vqa=0").unwrap();
    for i in 0..300 {
        let it = item_with(Split::Train, i, &mix);
        assert_eq!((it.kind, it.category), (ItemKind::Mcq, Category::Fine));
        assert_ne!(it.subtask, "count_shape");
    }
    let only = Mix::parse("fine=0,border=0").unwrap();
    assert!((0..100).all(|i| item_with(Split::Train, i, &only).subtask == "background"));
    for (spec, msg) in [
        ("colour=1", "unknown subtask \"colour\""),
        ("fine=-1", "not a finite number"),
        ("coarse=0,fine=0", "every subtask weight 0"),
        ("mcq=0,yorn=0,vqa=0", "every item kind weight 0"),
        ("fine", "not name=weight"),
        ("fine=x", "is not a number"),
    ] {
        let e = Mix::parse(spec).unwrap_err().to_string();
        assert!(e.contains(msg), "{spec}: {e}");
    }
    assert_eq!(synth::chance_level("count_shape", ItemKind::ShortAnswer), Some(1.0 / 7.0));
    assert_eq!(synth::chance_level("cell_colour", ItemKind::ShortAnswer), Some(1.0 / 6.0));
    assert_eq!(synth::chance_level("border", ItemKind::Mcq), Some(0.25));
    assert_eq!(synth::chance_level("nope", ItemKind::YesNo), None);
}

/// Accuracy of guessing from the text alone, learnt on one half of the items and measured on the
/// other: MCQ picks the option that was most often right, yes/no answers by the claimed value.
#[test]
fn answers_cannot_be_read_from_the_text() {
    fn text_only(kind: ItemKind, subtask: &str, items: &[SynthItem]) -> f64 {
        let items: Vec<&SynthItem> = items.iter().filter(|it| it.subtask == subtask).collect();
        let (learn, check) = items.split_at(items.len() / 2);
        let truth = |it: &SynthItem| match kind {
            ItemKind::Mcq => it.options[(it.answer.as_bytes()[0] - b'A') as usize].clone(),
            _ => it.answer.clone(),
        };
        let claimed = |it: &SynthItem| {
            it.question.split('?').next().unwrap_or("").rsplit(' ').next().unwrap_or("").to_string()
        };
        let mut seen: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
        for it in learn {
            let key = if kind == ItemKind::Mcq { String::new() } else { claimed(it) };
            *seen.entry(key).or_default().entry(truth(it)).or_default() += 1;
        }
        let hits = check
            .iter()
            .filter(|it| {
                let key = if kind == ItemKind::Mcq { String::new() } else { claimed(it) };
                let counts = seen.get(&key).cloned().unwrap_or_default();
                let guess = match kind {
                    ItemKind::Mcq => it
                        .options
                        .iter()
                        .max_by_key(|o| counts.get(*o).copied().unwrap_or(0))
                        .cloned(),
                    _ => counts.iter().max_by_key(|x| x.1).map(|x| x.0.clone()),
                };
                guess == Some(truth(it))
            })
            .count();
        hits as f64 / check.len() as f64
    }
    for (kind, limit) in [(ItemKind::Mcq, 0.31), (ItemKind::YesNo, 0.56)] {
        let items: Vec<SynthItem> = (0..12_000)
            .map(|i| item_with(Split::Val, i, &Mix::default().only_kind(kind)))
            .collect();
        for (name, _) in synth::SUBTASKS {
            let acc = text_only(kind, name, &items);
            assert!(acc <= limit, "{kind:?} {name}: the text alone gives {acc:.3}");
        }
    }
}

#[test]
fn the_answer_cell_holds_the_short_answer() {
    let mix = Mix::default().only_kind(ItemKind::ShortAnswer);
    let mut checked = BTreeMap::new();
    for i in 0..2000 {
        let it = item_with(Split::Train, i, &mix);
        let Some(at) = it.subject.answer_cell(&it.scene) else {
            assert!(
                !it.subtask.starts_with("cell_") && !it.subtask.starts_with("relation_"),
                "{}: {}",
                it.subtask,
                it.question
            );
            continue;
        };
        let held = it.scene.cells[at];
        let expected = match it.subtask {
            "cell_colour" | "relation_colour" => held.map_or("none", |p| colour_name(p.color)),
            "cell_shape" | "relation_shape" => held.map_or("none", |p| shape_name(p.shape)),
            other => panic!("{other} has no answer cell"),
        };
        assert_eq!(it.answer, expected, "{}: {}", it.subtask, it.question);
        *checked.entry(it.subtask).or_insert(0) += 1;
    }
    assert_eq!(checked.len(), 4, "{checked:?}");
}

#[test]
fn a_relation_questions_anchor_is_the_named_shape_and_its_answer_cell_the_neighbour() {
    use synth::questions::{Subject, DIRECTIONS};
    let mix = Mix::default().only_kind(ItemKind::ShortAnswer);
    let mut checked = 0;
    for i in 0..2000 {
        let it = item_with(Split::Train, i, &mix);
        let anchor = it.subject.anchor_cell(&it.scene);
        let Subject::Neighbour { colour, shape, dir } = it.subject else {
            assert_eq!(anchor, None, "{}", it.question);
            continue;
        };
        let at = anchor.expect("a relation question's anchor is in the scene");
        let held = it.scene.cells[at].expect("the anchor cell holds a shape");
        assert_eq!((held.color, held.shape), (colour, shape), "{}", it.question);
        assert!(
            it.question.contains(&format!("{} {}", colour_name(colour), shape_name(shape))),
            "{}",
            it.question
        );
        let (_, dr, dc) = DIRECTIONS[dir];
        let (r, c) = ((at / 4) as i32 + dr, (at % 4) as i32 + dc);
        assert_eq!(
            it.subject.answer_cell(&it.scene),
            Some((r * 4 + c) as usize),
            "{}",
            it.question
        );
        checked += 1;
    }
    assert!(checked > 200, "{checked} relation questions");
}

#[test]
fn a_counting_questions_counted_cells_number_its_answer() {
    let mix = Mix::default().only_kind(ItemKind::ShortAnswer);
    let mut checked = 0;
    for i in 0..2000 {
        let it = item_with(Split::Train, i, &mix);
        let counted = it.subject.counted_cells(&it.scene);
        if !it.subtask.starts_with("count_") {
            assert_eq!(counted, None, "{}", it.question);
            continue;
        }
        let cells = counted.expect("a counting question counts cells");
        assert_eq!(cells.len().to_string(), it.answer, "{}", it.question);
        assert!(cells.iter().all(|&c| it.scene.cells[c].is_some()), "{}", it.question);
        checked += 1;
    }
    assert!(checked > 200, "{checked} counting questions");
}
