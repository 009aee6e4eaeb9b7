//! Multiple choice: VLMEvalKit's rule-based option extraction (`matching_util.py`), vanilla and
//! circular evaluation and `report_acc` (`multiple_choice.py`).

use super::{Compat, Metric, Row};
use crate::py;
use regex::Regex;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

const REJECT: [&str; 4] = [
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm sorry, but without the image provided",
    "Cannot determine the answer",
];

/// Outcome of extraction; `None` is Python's `False`.
pub type Extracted = Option<char>;

fn answer_is_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"(?i)(?:correct\s+)?answer\s+is\s+\**([ABCD])\**").unwrap())
}

/// `can_infer_option(answer, choices)`.
pub fn can_infer_option(answer: &str, choices: &[(char, String)], compat: Compat) -> Extracted {
    if answer.contains("Failed to obtain answer via API") {
        return None;
    }
    if REJECT.iter().any(|r| answer.contains(r)) {
        return Some('Z');
    }
    let mut answer_mod = answer.to_string();
    for c in ".()[],:;!*#{}".chars() {
        answer_mod = answer_mod.replace(c, " ");
    }
    let splits: Vec<&str> = py::split(&answer_mod).into_iter().map(py::strip).collect();
    let count = choices
        .iter()
        .filter(|(l, _)| splits.iter().any(|s| s.len() == 1 && s.starts_with(*l)))
        .count();
    let has = |ch: char| splits.iter().position(|s| s.len() == 1 && s.starts_with(ch));
    if count == 1 {
        for (ch, _) in choices {
            if let Some(pos) = has(*ch) {
                match compat {
                    Compat::V0ff0c3e => return Some(*ch),
                    Compat::Head => {
                        if pos as isize > splits.len() as isize - 5 {
                            return Some(*ch);
                        }
                    }
                }
            }
        }
    } else if count == 0 && has('Z').is_some() {
        return Some('Z');
    }
    if compat == Compat::Head {
        if let Some(c) = answer_is_re().captures(answer) {
            // VLMEvalKit upper-cases the captured letter before looking it up.
            let l = c[1].chars().next().unwrap().to_ascii_uppercase();
            if choices.iter().any(|(k, _)| *k == l) {
                return Some(l);
            }
        }
    }
    None
}

/// `can_infer_text(answer, choices)`.
pub fn can_infer_text(answer: &str, choices: &[(char, String)], compat: Compat) -> Extracted {
    let answer = answer.to_lowercase();
    if compat == Compat::Head {
        let total: usize = choices.iter().map(|(_, t)| py::len(t)).sum();
        if py::len(&answer) > 2 * total {
            return None;
        }
    }
    let cands: Vec<char> = choices
        .iter()
        .filter(|(_, t)| answer.contains(&t.to_lowercase()))
        .map(|(l, _)| *l)
        .collect();
    if cands.len() == 1 {
        Some(cands[0])
    } else {
        None
    }
}

/// `can_infer(answer, choices)`.
pub fn can_infer(answer: &str, choices: &[(char, String)], compat: Compat) -> Extracted {
    can_infer_option(answer, choices, compat).or_else(|| can_infer_text(answer, choices, compat))
}

/// Whether the dataset is evaluated circularly.
pub fn is_circular(dataset: &str, compat: Compat) -> bool {
    let l = dataset.to_lowercase();
    let base = l.contains("mmbench") || l.contains("ccbench");
    match compat {
        Compat::V0ff0c3e => base,
        Compat::Head => base || l.contains("circular") || l.contains("mmcr"),
    }
}

fn abbr(c: &str) -> &str {
    match c {
        "coarse_perception" => "CP",
        "finegrained_perception (instance-level)" => "FP-S",
        "finegrained_perception (cross-instance)" => "FP-C",
        "logic_reasoning" => "LR",
        "relation_reasoning" => "RR",
        "attribute_reasoning" => "AR",
        _ => c,
    }
}

/// Per-row extraction result (for the predictions file).
pub fn extract(row: &Row, compat: Compat) -> char {
    can_infer(row.prediction, &row.item.options, compat).unwrap_or('Z')
}

/// Score MCQ rows. Returns (metrics, per-row hit for the rows that carry one).
pub fn score(dataset: &str, rows: &[Row], compat: Compat) -> anyhow::Result<Vec<Metric>> {
    let rows: Vec<&Row> = rows.iter().filter(|r| r.item.answer.is_some()).collect();
    let gt = |r: &Row| r.item.answer.clone().unwrap_or_default();
    // (row, hit)
    let mut scored: Vec<(&Row, f64)> = Vec::new();
    if is_circular(dataset, compat) {
        let mut groups: BTreeMap<i64, Vec<&Row>> = BTreeMap::new();
        let mut mains: Vec<(i64, &Row)> = Vec::new();
        for r in &rows {
            let idx: i64 = r.item.index.trim().parse().map_err(|_| {
                anyhow::anyhow!(
                    "line {}: column 'index': circular evaluation needs integer indices, got {:?}",
                    r.item.line,
                    r.item.index
                )
            })?;
            let g = match r.item.extra.get("g_index") {
                Some(g) if compat == Compat::Head => {
                    g.trim().parse::<f64>().map(|x| x as i64).map_err(|_| {
                        anyhow::anyhow!(
                            "line {}: column 'g_index': not an integer: {g:?}",
                            r.item.line
                        )
                    })?
                }
                _ => idx % 1_000_000,
            };
            groups.entry(g).or_default().push(r);
            if idx == g {
                mains.push((g, r));
            }
        }
        for (g, main) in mains {
            let members = &groups[&g];
            // Exact matching: the group scores 1 only if every copy is extracted and correct.
            let hit = members.iter().all(|r| {
                can_infer(r.prediction, &r.item.options, compat).map(|c| c.to_string())
                    == Some(gt(r))
            });
            scored.push((main, if hit { 1.0 } else { 0.0 }));
        }
    } else {
        for r in &rows {
            let p = extract(r, compat);
            scored.push((r, if p.to_string() == gt(r) { 1.0 } else { 0.0 }));
        }
    }
    Ok(report_acc(&scored))
}

/// VLMEvalKit's `report_acc`: per split, Overall then each l2-category and category value
/// (sorted), means of `hit` as fractions.
pub fn report_acc(scored: &[(&Row, f64)]) -> Vec<Metric> {
    let split_of = |r: &Row| r.item.split.clone();
    let splits: BTreeSet<Option<String>> = scored.iter().map(|(r, _)| split_of(r)).collect();
    let mut out = Vec::new();
    for sp in &splits {
        let in_split: Vec<&(&Row, f64)> =
            scored.iter().filter(|(r, _)| &split_of(r) == sp).collect();
        let hits: Vec<f64> = in_split.iter().map(|x| x.1).collect();
        out.push(Metric::new(sp.clone(), None, "Overall", py::np_mean(&hits)));
        // Later groups overwrite earlier ones of the same (abbreviated) name, as in the dict.
        let mut cols: Vec<(String, f64)> = Vec::new();
        for level in ["l2-category", "category"] {
            let get = |r: &Row| -> Option<String> {
                if level == "category" {
                    r.item.category.clone()
                } else {
                    r.item.l2_category.clone()
                }
            };
            let abilities: BTreeSet<String> = scored.iter().filter_map(|(r, _)| get(r)).collect();
            for ab in abilities {
                let h: Vec<f64> = in_split
                    .iter()
                    .filter(|(r, _)| get(r).as_deref() == Some(ab.as_str()))
                    .map(|x| x.1)
                    .collect();
                if h.is_empty() {
                    continue; // NaN in VLMEvalKit's table
                }
                let name = abbr(&ab).to_string();
                let v = py::np_mean(&h);
                if let Some(e) = cols.iter_mut().find(|(n, _)| *n == name) {
                    e.1 = v;
                } else {
                    cols.push((name, v));
                }
            }
        }
        for (n, v) in cols {
            out.push(Metric::new(sp.clone(), Some(n), "acc", v));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    fn ch(v: &[(char, &str)]) -> Vec<(char, String)> {
        v.iter().map(|(c, s)| (*c, s.to_string())).collect()
    }
    #[test]
    fn extraction() {
        let c = ch(&[('A', "cat"), ('B', "dog"), ('C', "bird")]);
        let h = Compat::Head;
        assert_eq!(can_infer("B", &c, h), Some('B'));
        assert_eq!(can_infer("(C) bird", &c, h), Some('C'));
        assert_eq!(can_infer("It is a dog.", &c, h), Some('B'));
        assert_eq!(can_infer("A or B", &c, h), None);
        assert_eq!(can_infer("Z", &c, h), Some('Z'));
        assert_eq!(can_infer("Cannot determine the answer", &c, h), Some('Z'));
        // Letter not among the last 5 tokens: HEAD refuses, 0ff0c3e accepts.
        assert_eq!(can_infer("B is what I would say here for sure", &c, h), None);
        assert_eq!(
            can_infer("B is what I would say here for sure", &c, Compat::V0ff0c3e),
            Some('B')
        );
        assert_eq!(can_infer("I think the answer is **C** because A B", &c, h), Some('C'));
        assert_eq!(can_infer("the answer is c", &c, h), Some('C'));
    }
}
