//! Yes/no datasets: `YOrN_Extraction`, MME, POPE, HallusionBench and the default rating
//! (`vlmeval/dataset/utils/yorn.py`).

use super::{Metric, Row};
use crate::py;
use anyhow::{bail, Result};
use std::collections::BTreeSet;

/// VLMEvalKit's `process_punctuation` (the official VQA routine, `vlmeval/smp/misc.py`).
/// Py quirks kept: a punctuation mark is deleted everywhere when *any* occurrence touches a
/// space (or when `\d,\d` occurs anywhere), else replaced by a space everywhere; the period
/// pattern is `(?!<=\d)(\.)(?!\d)` — a look-ahead typo, so it is effectively `\.(?!\d)` — and
/// `re.UNICODE` is passed as `count`, so at most 32 periods are removed.
pub fn process_punctuation(in_text: &str) -> String {
    const PUNCT: [char; 21] = [
        ';', '/', '[', ']', '"', '{', '}', '(', ')', '=', '+', '\\', '_', '-', '>', '<', '@', '`',
        ',', '?', '!',
    ];
    let chars: Vec<char> = in_text.chars().collect();
    let comma_strip =
        chars.windows(3).any(|w| py::is_digit(w[0]) && w[1] == ',' && py::is_digit(w[2]));
    let mut out = in_text.to_string();
    for p in PUNCT {
        let touches = in_text.contains(&format!("{p} ")) || in_text.contains(&format!(" {p}"));
        if touches || comma_strip {
            out = out.replace(p, "");
        } else {
            out = out.replace(p, " ");
        }
    }
    let chars: Vec<char> = out.chars().collect();
    let mut res = String::with_capacity(out.len());
    let mut removed = 0;
    for (i, &c) in chars.iter().enumerate() {
        if c == '.' && removed < 32 && !(i + 1 < chars.len() && py::is_digit(chars[i + 1])) {
            removed += 1;
            continue;
        }
        res.push(c);
    }
    res
}

/// `YOrN_Extraction`: "Yes", "No" or "Unknown".
pub fn extract(output: &str) -> &'static str {
    let s = output.to_lowercase();
    let p = process_punctuation(&s);
    let words = py::split(&p);
    let yes = words.contains(&"yes");
    let no = words.contains(&"no");
    if yes && !no {
        "Yes"
    } else if no && !yes {
        "No"
    } else {
        "Unknown"
    }
}

fn score_of(r: &Row) -> f64 {
    let gt = r.item.answer.as_deref().unwrap_or("");
    if gt == extract(r.prediction) {
        1.0
    } else {
        0.0
    }
}

fn mean100(v: &[f64]) -> f64 {
    py::np_mean(v) * 100.0
}

/// The yes/no scores by VLMEvalKit's rules for MME, HallusionBench, POPE or any other
/// Y/N dataset. Rows without an answer are skipped.
pub fn score(dataset: &str, rows: &[Row]) -> Result<Vec<Metric>> {
    let rows: Vec<&Row> = rows.iter().filter(|r| r.item.answer.is_some()).collect();
    if dataset.contains("MME") {
        mme(&rows)
    } else if dataset.contains("Hallusion") {
        hallusion(&rows)
    } else if dataset.contains("POPE") {
        Ok(pope(&rows))
    } else {
        Ok(default_rating(&rows))
    }
}

/// MME's perception subtasks (their scores sum to the perception score).
pub const MME_PERCEPTION: [&str; 10] = [
    "OCR",
    "artwork",
    "celebrity",
    "color",
    "count",
    "existence",
    "landmark",
    "position",
    "posters",
    "scene",
];
/// MME's reasoning subtasks (their scores sum to the reasoning score).
pub const MME_REASONING: [&str; 4] =
    ["code_reasoning", "commonsense_reasoning", "numerical_calculation", "text_translation"];

/// `MME_rating`. Categories absent from the data are left out of the totals (VLMEvalKit raises
/// a KeyError instead).
fn mme(rows: &[&Row]) -> Result<Vec<Metric>> {
    // category -> image_path -> scores, in order of first appearance.
    type ScoresByImage = Vec<(String, Vec<f64>)>;
    let mut stats: Vec<(String, ScoresByImage)> = Vec::new();
    for r in rows {
        let cat = r.item.category.clone().unwrap_or_else(|| "nan".into());
        let ip = r.item.image_path.join("|");
        let ci = match stats.iter().position(|(c, _)| *c == cat) {
            Some(i) => i,
            None => {
                stats.push((cat, vec![]));
                stats.len() - 1
            }
        };
        let imgs = &mut stats[ci].1;
        match imgs.iter_mut().find(|(p, _)| *p == ip) {
            Some(e) => e.1.push(score_of(r)),
            None => imgs.push((ip, vec![score_of(r)])),
        }
    }
    let mut per_cat = Vec::new();
    for (cat, imgs) in &stats {
        let normal: Vec<f64> = imgs.iter().flat_map(|(_, v)| v.iter().copied()).collect();
        let mut plus = Vec::new();
        for (p, v) in imgs {
            if v.len() < 2 {
                bail!("MME: category {cat:?}, image_path {p:?} has {} question(s); MME pairs two questions per image", v.len());
            }
            plus.push(v[0] * v[1]);
        }
        let acc = mean100(&normal);
        let accp = mean100(&plus);
        per_cat.push((cat.clone(), acc, accp, acc + accp));
    }
    let mut out = Vec::new();
    for (name, list) in [("perception", &MME_PERCEPTION[..]), ("reasoning", &MME_REASONING[..])] {
        let mut base = 0.0f64;
        let mut any = false;
        for c in list {
            if let Some(x) = per_cat.iter().find(|x| x.0 == *c) {
                base += x.3;
                any = true;
            }
        }
        if any {
            out.push(Metric::new(None, None, name, base));
        }
    }
    for (c, acc, accp, s) in per_cat {
        out.push(Metric::new(None, Some(c.clone()), "score", s));
        out.push(Metric::new(None, Some(c.clone()), "acc", acc));
        out.push(Metric::new(None, Some(c), "acc+", accp));
    }
    Ok(out)
}

fn f1(y_true: &[bool], y_pred: &[bool]) -> (f64, f64, f64) {
    let tp = y_true.iter().zip(y_pred).filter(|(t, p)| **t && **p).count() as f64;
    let fp = y_true.iter().zip(y_pred).filter(|(t, p)| !**t && **p).count() as f64;
    let fn_ = y_true.iter().zip(y_pred).filter(|(t, p)| **t && !**p).count() as f64;
    let precision = if tp + fp != 0.0 { tp / (tp + fp) } else { 0.0 };
    let recall = if tp + fn_ != 0.0 { tp / (tp + fn_) } else { 0.0 };
    let f1 = if precision + recall != 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    (f1, precision, recall)
}

/// `POPE_rating`, plus `yes_ratio` (share of predictions read as Yes, ×100; a tokenscale
/// addition from POPE's own report). Py quirk kept: comma-separated categories are exploded
/// before the Overall row is computed, so such rows count once per category there too.
fn pope(rows: &[&Row]) -> Vec<Metric> {
    let mut ex: Vec<(Option<String>, &Row)> = Vec::new();
    for r in rows {
        match &r.item.category {
            Some(c) => {
                for part in c.split(',') {
                    ex.push((Some(part.to_string()), r));
                }
            }
            None => ex.push((None, r)),
        }
    }
    let block = |sub: &[&(Option<String>, &Row)], cat: Option<String>, out: &mut Vec<Metric>| {
        let t: Vec<bool> =
            sub.iter().map(|(_, r)| r.item.answer.as_deref() == Some("Yes")).collect();
        let p: Vec<bool> = sub.iter().map(|(_, r)| extract(r.prediction) == "Yes").collect();
        let (f, pr, rc) = f1(&t, &p);
        let sc: Vec<f64> = sub.iter().map(|(_, r)| score_of(r)).collect();
        let yes: Vec<f64> = p.iter().map(|&b| if b { 1.0 } else { 0.0 }).collect();
        out.push(Metric::new(None, cat.clone(), "Overall", f * 100.0));
        out.push(Metric::new(None, cat.clone(), "acc", mean100(&sc)));
        out.push(Metric::new(None, cat.clone(), "precision", pr * 100.0));
        out.push(Metric::new(None, cat.clone(), "recall", rc * 100.0));
        out.push(Metric::new(None, cat, "yes_ratio", mean100(&yes)));
    };
    let mut out = Vec::new();
    let all: Vec<&(Option<String>, &Row)> = ex.iter().collect();
    block(&all, None, &mut out);
    let cats: BTreeSet<String> = ex.iter().filter_map(|(c, _)| c.clone()).collect();
    for c in cats {
        let sub: Vec<&(Option<String>, &Row)> =
            ex.iter().filter(|(x, _)| x.as_deref() == Some(c.as_str())).collect();
        block(&sub, Some(c), &mut out);
    }
    out
}

/// (set_id, figure_id, question_id) from a HallusionBench index (`x.split('_')[3..6]`), or from
/// columns of those names.
fn hallusion_ids(r: &Row) -> Result<(String, String, String)> {
    let parts: Vec<&str> = r.item.index.split('_').collect();
    if parts.len() >= 6 {
        return Ok((parts[3].into(), parts[4].into(), parts[5].into()));
    }
    let e = &r.item.extra;
    match (e.get("set_id"), e.get("figure_id"), e.get("question_id")) {
        (Some(a), Some(b), Some(c)) => Ok((a.clone(), b.clone(), c.clone())),
        _ => bail!(
            "line {}: column 'index': HallusionBench needs an index like cat_sub_x_SET_FIG_Q (or set_id/figure_id/question_id columns), got {:?}",
            r.item.line,
            r.item.index
        ),
    }
}

fn hallusion(rows: &[&Row]) -> Result<Vec<Metric>> {
    let mut ids = Vec::new();
    for r in rows {
        ids.push(hallusion_ids(r)?);
    }
    let block = |sel: &[usize], cat: Option<String>, out: &mut Vec<Metric>| {
        let sc: Vec<f64> = sel.iter().map(|&i| score_of(rows[i])).collect();
        let group_acc = |key: &dyn Fn(usize) -> String| -> f64 {
            let mut groups: Vec<(String, bool)> = Vec::new();
            for &i in sel {
                let k = key(i);
                let ok = score_of(rows[i]) == 1.0;
                match groups.iter_mut().find(|(g, _)| *g == k) {
                    Some(g) => g.1 &= ok,
                    None => groups.push((k, ok)),
                }
            }
            let v: Vec<f64> = groups.iter().map(|g| if g.1 { 1.0 } else { 0.0 }).collect();
            mean100(&v)
        };
        let l2 = |i: usize| rows[i].item.l2_category.clone().unwrap_or_else(|| "nan".into());
        let f = group_acc(&|i| format!("{}_{}_{}", l2(i), ids[i].0, ids[i].1));
        let q = group_acc(&|i| format!("{}_{}_{}", l2(i), ids[i].0, ids[i].2));
        out.push(Metric::new(None, cat.clone(), "aAcc", mean100(&sc)));
        out.push(Metric::new(None, cat.clone(), "fAcc", f));
        out.push(Metric::new(None, cat, "qAcc", q));
    };
    let mut out = Vec::new();
    let all: Vec<usize> = (0..rows.len()).collect();
    block(&all, None, &mut out);
    for level in ["category", "l2-category"] {
        let get = |r: &Row| {
            if level == "category" {
                r.item.category.clone()
            } else {
                r.item.l2_category.clone()
            }
        };
        let cats: BTreeSet<String> = rows.iter().filter_map(|r| get(r)).collect();
        for c in cats {
            let sel: Vec<usize> =
                (0..rows.len()).filter(|&i| get(rows[i]).as_deref() == Some(c.as_str())).collect();
            block(&sel, Some(c), &mut out);
        }
    }
    Ok(out)
}

/// `default_rating`: Overall and each category / l2-category, ×100.
fn default_rating(rows: &[&Row]) -> Vec<Metric> {
    let sc: Vec<f64> = rows.iter().map(|r| score_of(r)).collect();
    let mut out = vec![Metric::new(None, None, "Overall", mean100(&sc))];
    for level in ["category", "l2-category"] {
        let get = |r: &Row| {
            if level == "category" {
                r.item.category.clone()
            } else {
                r.item.l2_category.clone()
            }
        };
        let cats: BTreeSet<String> = rows.iter().filter_map(|r| get(r)).collect();
        for c in cats {
            let v: Vec<f64> = rows
                .iter()
                .filter(|r| get(r).as_deref() == Some(c.as_str()))
                .map(|r| score_of(r))
                .collect();
            out.push(Metric::new(None, Some(c), "acc", mean100(&v)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn extraction() {
        assert_eq!(extract("Yes, it is."), "Yes");
        assert_eq!(extract("No."), "No");
        assert_eq!(extract("yes or no"), "Unknown");
        assert_eq!(extract("Yes-no"), "Unknown");
        assert_eq!(extract("Yes - no"), "Unknown");
        assert_eq!(extract("nope"), "Unknown");
        assert_eq!(process_punctuation("a-b, c 1,000."), "ab c 1000");
        assert_eq!(process_punctuation("3.5 and end."), "3.5 and end");
    }
}
