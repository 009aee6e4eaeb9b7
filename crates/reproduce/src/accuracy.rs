//! Accuracy per vision-token count n, overall and per subset (kind, category, subtask), with
//! the chance level of each subset. Items are scored with the benchmark scorers' own per-item
//! rules, so a kind's overall accuracy equals what `tokenscale eval` reports for it.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tokenscale_eval::score::{mcq, vqa, yorn, Row};
use tokenscale_eval::{Dataset, Item, Kind, ScoreOptions};
use tokenscale_synth as synth;
use tokenscale_synth::ItemKind;

/// One accuracy number: items of `subset` (along `axis`) answered at n vision tokens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccuracyRow {
    /// Vision tokens per image the items were answered at.
    pub n: usize,
    /// `overall`, `kind`, `category` or `subtask`.
    pub axis: String,
    /// The subset's name along `axis` (`all`, a kind, a category or a subtask name).
    pub subset: String,
    /// How many items the subset holds (the accuracy's denominator).
    pub items: usize,
    /// Percent (mean per-item score × 100; VQA items score their soft accuracy).
    pub accuracy: f64,
    /// Percent expected from uniform guessing (see [`chance_levels`]).
    pub chance: f64,
}

/// Score in 0..=1 of one prediction, by the rule the item's dataset is scored with.
pub fn item_score(ds: &Dataset, item: &Item, prediction: &str, opts: ScoreOptions) -> Result<f64> {
    let hit = |ok: bool| if ok { 1.0 } else { 0.0 };
    let answer = item.answer.as_deref().unwrap_or_default();
    Ok(match ds.kind {
        Kind::Mcq => {
            hit(mcq::extract(&Row { item, prediction }, opts.compat).to_string() == answer)
        }
        Kind::Yorn => hit(yorn::extract(prediction) == answer),
        Kind::Vqa => {
            vqa::sample_score(vqa::method_for(&ds.name), &item.answers(), prediction, opts.compat)
        }
        other => bail!(
            "{}: {} datasets are not part of the reproduce benchmark (MCQ, Y/N and VQA are)",
            ds.name,
            other.as_str()
        ),
    })
}

fn kind_label(kind: Kind) -> &'static str {
    match kind {
        Kind::Mcq => "MCQ",
        Kind::Yorn => "Y/N",
        Kind::Vqa => "VQA",
        Kind::Ocrbench => "OCRBench",
        Kind::Caption => "caption",
    }
}

fn subtask(item: &Item) -> Option<&str> {
    item.extra.get("subtask").map(String::as_str)
}

/// Chance level (0..=1) of every item of `ds`, in item order: the generator's own value for a
/// synthetic subtask, else 1/options (MCQ), 1/2 (Y/N), or one over the distinct answers of the
/// item's category in the dataset (short answers).
pub fn chance_levels(ds: &Dataset) -> Vec<f64> {
    let mut answers: HashMap<Option<&str>, HashSet<String>> = HashMap::new();
    for it in &ds.items {
        let first = it.answers().first().map(|a| vqa::process_answer(a)).unwrap_or_default();
        answers.entry(it.category.as_deref()).or_default().insert(first);
    }
    let synth_kind = ItemKind::parse(ds.kind.as_str());
    ds.items
        .iter()
        .map(|it| {
            let known = subtask(it).zip(synth_kind).and_then(|(s, k)| synth::chance_level(s, k));
            known.unwrap_or_else(|| match ds.kind {
                Kind::Mcq => 1.0 / it.options.len().max(1) as f64,
                Kind::Yorn => 0.5,
                _ => {
                    1.0 / answers.get(&it.category.as_deref()).map_or(1, |s| s.len().max(1)) as f64
                }
            })
        })
        .collect()
}

/// The subsets an item belongs to, as (axis, name).
fn subsets(ds: &Dataset, item: &Item) -> Vec<(&'static str, String)> {
    let mut out = vec![("overall", "all".to_string()), ("kind", kind_label(ds.kind).to_string())];
    if let Some(c) = &item.category {
        out.push(("category", c.clone()));
    }
    if let Some(s) = subtask(item) {
        out.push(("subtask", s.to_string()));
    }
    out
}

const AXES: [&str; 4] = ["overall", "kind", "category", "subtask"];

/// Accuracy rows for every n and subset. `prediction(dataset, item, n)` gives the stored answer;
/// a missing one is an error naming the item.
pub fn accuracy_table<'a>(
    datasets: &'a [Dataset],
    vision_tokens: &[usize],
    opts: ScoreOptions,
    prediction: impl Fn(&Dataset, &Item, usize) -> Option<&'a str>,
) -> Result<Vec<AccuracyRow>> {
    // (axis, subset) → (items, chance sum, score sum per n)
    let mut sums: BTreeMap<(usize, String), (usize, f64, Vec<f64>)> = BTreeMap::new();
    let mut order: Vec<(usize, String)> = Vec::new();
    for ds in datasets {
        let chance = chance_levels(ds);
        for (item, chance) in ds.items.iter().zip(chance) {
            let mut scores = Vec::with_capacity(vision_tokens.len());
            for &n in vision_tokens {
                let Some(p) = prediction(ds, item, n) else {
                    bail!("{}: index {}: no prediction at n = {n}", ds.name, item.index);
                };
                scores.push(item_score(ds, item, p, opts)?);
            }
            for (axis, name) in subsets(ds, item) {
                let key = (AXES.iter().position(|a| *a == axis).unwrap_or(AXES.len()), name);
                let entry = sums.entry(key.clone()).or_insert_with(|| {
                    order.push(key);
                    (0, 0.0, vec![0.0; vision_tokens.len()])
                });
                entry.0 += 1;
                entry.1 += chance;
                entry.2.iter_mut().zip(&scores).for_each(|(s, x)| *s += x);
            }
        }
    }
    // Axes in a fixed order; within an axis, kinds in dataset order and the rest sorted.
    order.sort_by(|a, b| {
        a.0.cmp(&b.0).then_with(|| {
            if AXES[a.0] == "kind" {
                std::cmp::Ordering::Equal
            } else {
                a.1.cmp(&b.1)
            }
        })
    });
    let mut rows = Vec::new();
    for key in order {
        let (items, chance, scores) = &sums[&key];
        for (&n, score) in vision_tokens.iter().zip(scores) {
            rows.push(AccuracyRow {
                n,
                axis: AXES[key.0].to_string(),
                subset: key.1.clone(),
                items: *items,
                accuracy: 100.0 * score / *items as f64,
                chance: 100.0 * chance / *items as f64,
            });
        }
    }
    Ok(rows)
}

/// The (n, accuracy) points of one subset, in n order.
pub fn series(rows: &[AccuracyRow], axis: &str, subset: &str) -> Vec<(f64, f64)> {
    rows.iter()
        .filter(|r| r.axis == axis && r.subset == subset)
        .map(|r| (r.n as f64, r.accuracy))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenscale_eval::score::score;

    /// Predictions right for every third item at n = 1 and for every other item at n = 8.
    fn fake(ds: &Dataset, item: &Item, n: usize) -> String {
        let right = if n == 1 { item.row.is_multiple_of(3) } else { item.row.is_multiple_of(2) };
        let truth = item.answers().first().cloned().unwrap_or_default();
        match (right, ds.kind) {
            (true, _) => truth,
            (false, Kind::Yorn) => if truth == "Yes" { "No" } else { "Yes" }.into(),
            (false, Kind::Mcq) => item
                .options
                .iter()
                .map(|o| o.0.to_string())
                .find(|l| *l != truth)
                .unwrap_or_default(),
            (false, _) => "no idea".into(),
        }
    }

    #[test]
    fn short_answers_without_a_subtask_guess_among_their_category_answers() {
        let dir = tempfile::tempdir().unwrap();
        let paths = synth::generate(dir.path(), 3, 8, 32).unwrap();
        let vqa = Dataset::load(
            paths.iter().find(|p| p.to_string_lossy().contains("VQA")).unwrap(),
            None,
        )
        .unwrap();
        for (it, chance) in vqa.items.iter().zip(chance_levels(&vqa)) {
            let distinct: HashSet<String> = vqa
                .items
                .iter()
                .filter(|o| o.category == it.category)
                .map(|o| vqa::process_answer(&o.answers()[0]))
                .collect();
            assert!((chance - 1.0 / distinct.len() as f64).abs() < 1e-12);
        }
    }

    #[test]
    fn kind_accuracy_equals_the_benchmark_scorer() {
        let dir = tempfile::tempdir().unwrap();
        let datasets: Vec<Dataset> =
            synth::write_benchmark(dir.path(), synth::Split::Test, 12, &synth::Mix::default())
                .unwrap()
                .iter()
                .map(|p| Dataset::load(p, None).unwrap())
                .collect();
        let preds: HashMap<(String, String, usize), String> = datasets
            .iter()
            .flat_map(|ds| {
                ds.items.iter().flat_map(move |it| {
                    [1, 8].map(|n| ((ds.name.clone(), it.index.clone(), n), fake(ds, it, n)))
                })
            })
            .collect();
        let opts = ScoreOptions::default();
        let rows = accuracy_table(&datasets, &[1, 8], opts, |ds, it, n| {
            preds.get(&(ds.name.clone(), it.index.clone(), n)).map(String::as_str)
        })
        .unwrap();
        let total: usize = datasets.iter().map(|d| d.items.len()).sum();
        for ds in &datasets {
            let scale = if ds.kind == Kind::Mcq { 100.0 } else { 1.0 };
            for n in [1, 8] {
                let scored: Vec<Row> = ds
                    .items
                    .iter()
                    .map(|item| Row {
                        item,
                        prediction: &preds[&(ds.name.clone(), item.index.clone(), n)],
                    })
                    .collect();
                // The last Overall row is the all-splits one (MCQ here has one split, `dev`).
                let overall = score(&ds.name, ds.kind, &scored, opts)
                    .unwrap()
                    .into_iter()
                    .rfind(|m| m.metric == "Overall")
                    .unwrap();
                let mine = rows
                    .iter()
                    .find(|r| r.n == n && r.axis == "kind" && r.subset == kind_label(ds.kind))
                    .unwrap();
                assert!(
                    (mine.accuracy - overall.value * scale).abs() < 1e-9,
                    "{} n={n}: {} vs {}",
                    ds.name,
                    mine.accuracy,
                    overall.value
                );
            }
        }
        let overall: Vec<&AccuracyRow> = rows.iter().filter(|r| r.axis == "overall").collect();
        assert_eq!(overall.len(), 2);
        assert_eq!(overall[0].items, total);
        assert!(overall[1].accuracy > overall[0].accuracy);
        // Chance: Y/N is one half; MCQ with four options one quarter.
        let yn = rows.iter().find(|r| r.subset == "Y/N").unwrap();
        assert!((yn.chance - 50.0).abs() < 1e-9);
        let mcq = rows.iter().find(|r| r.subset == "MCQ").unwrap();
        assert!((mcq.chance - 25.0).abs() < 1e-9);
        // Short answers: the generator's chance level of each item's subtask, averaged.
        let vqa = datasets.iter().find(|d| d.kind == Kind::Vqa).unwrap();
        let expected = vqa
            .items
            .iter()
            .map(|it| synth::chance_level(subtask(it).unwrap(), ItemKind::ShortAnswer).unwrap())
            .sum::<f64>()
            / vqa.items.len() as f64;
        let mine = rows.iter().find(|r| r.subset == "VQA").unwrap();
        assert!((mine.chance - 100.0 * expected).abs() < 1e-9);
        assert!(rows.iter().any(|r| r.axis == "category" && r.subset == "fine"));
        // A missing prediction names the item.
        let err = accuracy_table(&datasets, &[2], opts, |_, _, _| None).unwrap_err().to_string();
        assert!(err.contains("no prediction at n = 2"), "{err}");
    }
}
