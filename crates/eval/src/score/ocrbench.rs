//! OCRBench (`image_vqa.py: OCRBench.evaluate`).

use super::{Metric, Row};
use crate::py;
use anyhow::{bail, Result};

/// OCRBench's ten categories, in its order; the first six sum to "Text Recognition".
pub const CATEGORIES: [&str; 10] = [
    "Regular Text Recognition",
    "Irregular Text Recognition",
    "Artistic Text Recognition",
    "Handwriting Recognition",
    "Digit String Recognition",
    "Non-Semantic Text Recognition",
    "Scene Text-centric VQA",
    "Doc-oriented VQA",
    "Key Information Extraction",
    "Handwritten Mathematical Expression Recognition",
];
const HMER: &str = "Handwritten Mathematical Expression Recognition";

/// Whether one OCRBench sample scores.
pub fn hit(category: &str, answers: &[String], prediction: &str) -> bool {
    if category == HMER {
        let p = py::strip(prediction).replace('\n', " ").replace(' ', "");
        answers.iter().any(|a| p.contains(&py::strip(a).replace('\n', " ").replace(' ', "")))
    } else {
        let p = py::strip(&prediction.to_lowercase()).replace('\n', " ");
        answers.iter().any(|a| p.contains(&py::strip(&a.to_lowercase()).replace('\n', " ")))
    }
}

/// OCRBench's scores: hits per group and the final score (hit counts, not percent).
/// Errors on a row whose category is not one of [`CATEGORIES`].
pub fn score(rows: &[Row]) -> Result<Vec<Metric>> {
    let mut counts = [0u64; 10];
    for r in rows.iter().filter(|r| r.item.answer.is_some()) {
        let cat = r.item.category.as_deref().unwrap_or("");
        let Some(ci) = CATEGORIES.iter().position(|c| *c == cat) else {
            bail!("line {}: column 'category': unknown OCRBench category {cat:?}", r.item.line);
        };
        if hit(cat, &r.item.answers(), r.prediction) {
            counts[ci] += 1;
        }
    }
    let tr: u64 = counts[..6].iter().sum();
    let groups = [
        ("Text Recognition", tr),
        ("Scene Text-centric VQA", counts[6]),
        ("Doc-oriented VQA", counts[7]),
        ("Key Information Extraction", counts[8]),
        ("Handwritten Mathematical Expression Recognition", counts[9]),
    ];
    let total: u64 = groups.iter().map(|g| g.1).sum();
    let mut out = vec![
        Metric::new(None, None, "Final Score", total as f64),
        Metric::new(None, None, "Final Score Norm", total as f64 / 10.0),
    ];
    for (g, v) in groups {
        out.push(Metric::new(None, Some(g.to_string()), "score", v as f64));
    }
    for (c, v) in CATEGORIES.iter().zip(counts) {
        if !groups.iter().any(|g| g.0 == *c) {
            out.push(Metric::new(None, Some(c.to_string()), "score", v as f64));
        }
    }
    Ok(out)
}
