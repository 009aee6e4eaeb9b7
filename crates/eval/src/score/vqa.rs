//! Short-answer VQA (`vlmeval/dataset/utils/vqa_eval.py`, `ImageVQADataset.evaluate_heuristic`).

use super::yorn::process_punctuation;
use super::{Compat, Metric, Row};
use crate::py;
use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;

const CONTRACTIONS: &[(&str, &str)] = &[
    ("aint", "ain't"),
    ("arent", "aren't"),
    ("cant", "can't"),
    ("couldve", "could've"),
    ("couldnt", "couldn't"),
    ("couldn'tve", "couldn't've"),
    ("couldnt've", "couldn't've"),
    ("didnt", "didn't"),
    ("doesnt", "doesn't"),
    ("dont", "don't"),
    ("hadnt", "hadn't"),
    ("hadnt've", "hadn't've"),
    ("hadn'tve", "hadn't've"),
    ("hasnt", "hasn't"),
    ("havent", "haven't"),
    ("hed", "he'd"),
    ("hed've", "he'd've"),
    ("he'dve", "he'd've"),
    ("hes", "he's"),
    ("howd", "how'd"),
    ("howll", "how'll"),
    ("hows", "how's"),
    ("Id've", "I'd've"),
    ("I'dve", "I'd've"),
    ("Im", "I'm"),
    ("Ive", "I've"),
    ("isnt", "isn't"),
    ("itd", "it'd"),
    ("itd've", "it'd've"),
    ("it'dve", "it'd've"),
    ("itll", "it'll"),
    ("let's", "let's"),
    ("maam", "ma'am"),
    ("mightnt", "mightn't"),
    ("mightnt've", "mightn't've"),
    ("mightn'tve", "mightn't've"),
    ("mightve", "might've"),
    ("mustnt", "mustn't"),
    ("mustve", "must've"),
    ("neednt", "needn't"),
    ("notve", "not've"),
    ("oclock", "o'clock"),
    ("oughtnt", "oughtn't"),
    ("ow's'at", "'ow's'at"),
    ("'ows'at", "'ow's'at"),
    ("'ow'sat", "'ow's'at"),
    ("shant", "shan't"),
    ("shed've", "she'd've"),
    ("she'dve", "she'd've"),
    ("she's", "she's"),
    ("shouldve", "should've"),
    ("shouldnt", "shouldn't"),
    ("shouldnt've", "shouldn't've"),
    ("shouldn'tve", "shouldn't've"),
    ("somebody'd", "somebodyd"),
    ("somebodyd've", "somebody'd've"),
    ("somebody'dve", "somebody'd've"),
    ("somebodyll", "somebody'll"),
    ("somebodys", "somebody's"),
    ("someoned", "someone'd"),
    ("someoned've", "someone'd've"),
    ("someone'dve", "someone'd've"),
    ("someonell", "someone'll"),
    ("someones", "someone's"),
    ("somethingd", "something'd"),
    ("somethingd've", "something'd've"),
    ("something'dve", "something'd've"),
    ("somethingll", "something'll"),
    ("thats", "that's"),
    ("thered", "there'd"),
    ("thered've", "there'd've"),
    ("there'dve", "there'd've"),
    ("therere", "there're"),
    ("theres", "there's"),
    ("theyd", "they'd"),
    ("theyd've", "they'd've"),
    ("they'dve", "they'd've"),
    ("theyll", "they'll"),
    ("theyre", "they're"),
    ("theyve", "they've"),
    ("twas", "'twas"),
    ("wasnt", "wasn't"),
    ("wed've", "we'd've"),
    ("we'dve", "we'd've"),
    ("weve", "we've"),
    ("werent", "weren't"),
    ("whatll", "what'll"),
    ("whatre", "what're"),
    ("whats", "what's"),
    ("whatve", "what've"),
    ("whens", "when's"),
    ("whered", "where'd"),
    ("wheres", "where's"),
    ("whereve", "where've"),
    ("whod", "who'd"),
    ("whod've", "who'd've"),
    ("who'dve", "who'd've"),
    ("wholl", "who'll"),
    ("whos", "who's"),
    ("whove", "who've"),
    ("whyll", "why'll"),
    ("whyre", "why're"),
    ("whys", "why's"),
    ("wont", "won't"),
    ("wouldve", "would've"),
    ("wouldnt", "wouldn't"),
    ("wouldnt've", "wouldn't've"),
    ("wouldn'tve", "wouldn't've"),
    ("yall", "y'all"),
    ("yall'll", "y'all'll"),
    ("y'allll", "y'all'll"),
    ("yall'd've", "y'all'd've"),
    ("y'alld've", "y'all'd've"),
    ("y'all'dve", "y'all'd've"),
    ("youd", "you'd"),
    ("youd've", "you'd've"),
    ("you'dve", "you'd've"),
    ("youll", "you'll"),
    ("youre", "you're"),
    ("youve", "you've"),
];

fn contractions() -> &'static HashMap<&'static str, &'static str> {
    static M: OnceLock<HashMap<&'static str, &'static str>> = OnceLock::new();
    M.get_or_init(|| CONTRACTIONS.iter().copied().collect())
}

/// `_process_digit_article`: lower-case, number words → digits, drop articles, contractions.
pub fn process_digit_article(in_text: &str) -> String {
    let lower = in_text.to_lowercase();
    let mut out: Vec<String> = Vec::new();
    for w in py::split(&lower) {
        let w = match w {
            "none" | "zero" => "0",
            "one" => "1",
            "two" => "2",
            "three" => "3",
            "four" => "4",
            "five" => "5",
            "six" => "6",
            "seven" => "7",
            "eight" => "8",
            "nine" => "9",
            "ten" => "10",
            w => w,
        };
        if !matches!(w, "a" | "an" | "the") {
            out.push(w.to_string());
        }
    }
    let c = contractions();
    for w in out.iter_mut() {
        if let Some(r) = c.get(w.as_str()) {
            *w = r.to_string();
        }
    }
    out.join(" ")
}

/// `process_answer`.
pub fn process_answer(a: &str) -> String {
    let a = a.replace(['\n', '\t'], " ");
    let a = py::strip(&a);
    process_digit_article(&process_punctuation(a))
}

/// Which per-sample method a VQA dataset uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// The VQA score: mean over annotators of min(other matching answers / 3, 1), normalised.
    VqaScore,
    /// ChartQA's relaxed accuracy: numbers within 5%, other answers exact.
    Relaxed,
    /// Exact match to any answer, trimmed and lower-cased (OCRVQA, GQA).
    Accuracy,
    /// ANLS: 1 − the least normalised Levenshtein distance, 0 below 0.5 (DocVQA, InfoVQA).
    Anls,
}

/// The method VLMEvalKit picks from the dataset name (default: the VQA score).
pub fn method_for(dataset: &str) -> Method {
    if dataset.contains("TextVQA") {
        Method::VqaScore
    } else if dataset.contains("ChartQA") {
        Method::Relaxed
    } else if dataset.contains("OCRVQA") || dataset.contains("GQA") {
        Method::Accuracy
    } else if dataset.contains("DocVQA") || dataset.contains("InfoVQA") {
        Method::Anls
    } else {
        Method::VqaScore
    }
}

fn to_float(text: &str) -> Option<f64> {
    if let Some(stripped) = text.strip_suffix('%') {
        py::float(stripped.trim_end_matches('%')).map(|x| x / 100.0)
    } else {
        py::float(text)
    }
}

/// `relaxed_correctness(target, prediction)` (pix2struct's, 5%).
pub fn relaxed_correctness(target: &str, prediction: &str) -> bool {
    let p = to_float(prediction);
    let t = to_float(target);
    match (p, t) {
        (Some(p), Some(t)) if t != 0.0 => (p - t).abs() / t.abs() <= 0.05,
        _ => prediction.to_lowercase() == target.to_lowercase(),
    }
}

/// Levenshtein distance over code points.
pub fn levenshtein(a: &str, b: &str) -> usize {
    let (mut s1, mut s2): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if s1.len() > s2.len() {
        std::mem::swap(&mut s1, &mut s2);
    }
    let mut d: Vec<usize> = (0..=s1.len()).collect();
    for (i2, c2) in s2.iter().enumerate() {
        let mut nd = Vec::with_capacity(s1.len() + 1);
        nd.push(i2 + 1);
        for (i1, c1) in s1.iter().enumerate() {
            if c1 == c2 {
                nd.push(d[i1]);
            } else {
                nd.push(1 + d[i1].min(d[i1 + 1]).min(*nd.last().unwrap()));
            }
        }
        d = nd;
    }
    *d.last().unwrap()
}

/// `anls_compute(gt, pred)`: normalised Levenshtein over the *raw* lengths (Py quirk:
/// `max(len(gt.upper()), len(pred.upper()))`).
pub fn anls_compute(gt: &str, pred: &str) -> f64 {
    let norm = |s: &str| py::split(&py::strip(s).to_lowercase()).join(" ");
    let dist = levenshtein(&norm(gt), &norm(pred));
    let length = py::len(&gt.to_uppercase()).max(py::len(&pred.to_uppercase()));
    if length == 0 {
        0.0
    } else {
        dist as f64 / length as f64
    }
}

/// The per-sample score in 0..1.
pub fn sample_score(method: Method, answers: &[String], prediction: &str, compat: Compat) -> f64 {
    if answers.is_empty() {
        return f64::NAN;
    }
    match method {
        Method::VqaScore => {
            let gt: Vec<String> = answers.iter().map(|a| process_answer(a)).collect();
            let pred = process_answer(prediction);
            let m: Vec<f64> = (0..gt.len())
                .map(|i| {
                    let n = (0..gt.len()).filter(|&j| j != i && gt[j] == pred).count();
                    (n as f64 / 3.0).min(1.0)
                })
                .collect();
            py::np_mean(&m)
        }
        Method::Relaxed => {
            let pred = py::strip(prediction);
            let hit = answers.iter().any(|t| match compat {
                Compat::Head => relaxed_correctness(t, pred),
                // 0ff0c3e passed the arguments the other way round (#1204).
                Compat::V0ff0c3e => relaxed_correctness(pred, t),
            });
            if hit {
                1.0
            } else {
                0.0
            }
        }
        Method::Accuracy => {
            let p = py::strip(prediction).to_lowercase();
            if answers.iter().any(|x| py::strip(x).to_lowercase() == p) {
                1.0
            } else {
                0.0
            }
        }
        Method::Anls => {
            let m =
                answers.iter().map(|x| anls_compute(x, prediction)).fold(f64::INFINITY, f64::min);
            if 1.0 - m < 0.5 {
                0.0
            } else {
                1.0 - m
            }
        }
    }
}

/// The VQA scores: `Overall` in percent, per split if the rows have splits, else per
/// category too. Rows without an answer are skipped.
pub fn score(dataset: &str, rows: &[Row], compat: Compat) -> Vec<Metric> {
    let method = method_for(dataset);
    let rows: Vec<&Row> = rows.iter().filter(|r| r.item.answer.is_some()).collect();
    let hits: Vec<f64> = rows
        .iter()
        .map(|r| sample_score(method, &r.item.answers(), r.prediction, compat))
        .collect();
    let mut out = Vec::new();
    let has_split = rows.iter().any(|r| r.item.split.is_some());
    if has_split {
        let splits: BTreeSet<Option<String>> = rows.iter().map(|r| r.item.split.clone()).collect();
        for sp in splits {
            let v: Vec<f64> = rows
                .iter()
                .zip(&hits)
                .filter(|(r, _)| r.item.split == sp)
                .map(|(_, h)| *h)
                .collect();
            out.push(Metric::new(
                sp.or(Some("nan".into())),
                None,
                "Overall",
                py::np_mean(&v) * 100.0,
            ));
        }
        out.push(Metric::new(None, None, "Overall", py::np_mean(&hits) * 100.0));
    } else {
        out.push(Metric::new(None, None, "Overall", py::np_mean(&hits) * 100.0));
        let cats: BTreeSet<String> = rows.iter().filter_map(|r| r.item.category.clone()).collect();
        for c in cats {
            let v: Vec<f64> = rows
                .iter()
                .zip(&hits)
                .filter(|(r, _)| r.item.category.as_deref() == Some(c.as_str()))
                .map(|(_, h)| *h)
                .collect();
            out.push(Metric::new(None, Some(c), "acc", py::np_mean(&v) * 100.0));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn normalisation() {
        assert_eq!(process_answer("The two dogs."), "2 dogs");
        assert_eq!(process_answer("dont know"), "don't know");
        assert_eq!(process_answer(" An apple\n"), "apple");
    }
    #[test]
    fn relaxed() {
        assert!(relaxed_correctness("100", "104"));
        assert!(!relaxed_correctness("100", "106"));
        assert!(relaxed_correctness("50%", "0.51"));
        assert!(relaxed_correctness("Yes", "yes"));
        assert!(!relaxed_correctness("0", "0.0"));
        assert!(relaxed_correctness("0", "0"));
    }
    #[test]
    fn anls() {
        assert_eq!(anls_compute("abc", "abc"), 0.0);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        let s = sample_score(Method::Anls, &["hello world".into()], "hello wrld", Compat::Head);
        assert!((s - (1.0 - 1.0 / 11.0)).abs() < 1e-15);
    }
}
