//! Captioning: BLEU-1..4, ROUGE-L and CIDEr-D computed as pycocoevalcap 1.2 computes them, fed
//! as VLMEvalKit's `COCO_Caption_Scorer` feeds them (raw strings, no PTB tokenizer) or, with
//! `ptb`, through the PTBTokenizer path (see `ptb`).

use super::{Metric, Row};
use crate::py;
use std::collections::HashMap;

type Ngram<'a> = Vec<&'a str>;

/// Ordered n-gram counts (Python dict insertion order: k = 1..n, then position).
struct Counts<'a> {
    order: Vec<Ngram<'a>>,
    map: HashMap<Ngram<'a>, usize>,
}

fn precook<'a>(words: &[&'a str], n: usize) -> Counts<'a> {
    let mut c = Counts { order: Vec::new(), map: HashMap::new() };
    for k in 1..=n {
        if words.len() + 1 < k + 1 {
            continue;
        }
        for i in 0..(words.len() + 1).saturating_sub(k) {
            let g: Ngram = words[i..i + k].to_vec();
            match c.map.get_mut(&g) {
                Some(v) => *v += 1,
                None => {
                    c.map.insert(g.clone(), 1);
                    c.order.push(g);
                }
            }
        }
    }
    c
}

/// pycocoevalcap `Bleu(4).compute_score` (option "closest"); returns [B1..B4] in 0..1.
// Indexing by the n-gram order k keeps the loops line for line with pycocoevalcap's.
#[allow(clippy::needless_range_loop)]
pub fn bleu(gts: &[Vec<String>], res: &[String]) -> [f64; 4] {
    let n = 4;
    let small = 1e-9;
    let tiny = 1e-15;
    let mut total_guess = [0usize; 4];
    let mut total_correct = [0usize; 4];
    let mut testlen_sum = 0usize;
    let mut reflen_sum = 0usize;
    for (refs, hyp) in gts.iter().zip(res) {
        let mut reflens = Vec::new();
        let mut maxcounts: HashMap<Ngram, usize> = HashMap::new();
        for r in refs {
            let w = py::split(r);
            reflens.push(w.len());
            let c = precook(&w, n);
            for (g, cnt) in c.map {
                let e = maxcounts.entry(g).or_insert(0);
                *e = (*e).max(cnt);
            }
        }
        let w = py::split(hyp);
        let testlen = w.len();
        // min((abs(l - testlen), l) for l in reflens)[1]
        let reflen = reflens
            .iter()
            .map(|&l| ((l as i64 - testlen as i64).abs(), l))
            .min()
            .map(|x| x.1)
            .unwrap_or(0);
        let c = precook(&w, n);
        for k in 0..n {
            total_guess[k] += (testlen + 1).saturating_sub(k + 1);
        }
        for (g, cnt) in &c.map {
            total_correct[g.len() - 1] += (*maxcounts.get(g).unwrap_or(&0)).min(*cnt);
        }
        testlen_sum += testlen;
        reflen_sum += reflen;
    }
    let mut bleus = [0.0; 4];
    let mut b = 1.0f64;
    for k in 0..n {
        b *= (total_correct[k] as f64 + tiny) / (total_guess[k] as f64 + small);
        bleus[k] = b.powf(1.0 / (k as f64 + 1.0));
    }
    let ratio = (testlen_sum as f64 + tiny) / (reflen_sum as f64 + small);
    if ratio < 1.0 {
        for x in bleus.iter_mut() {
            *x *= (1.0 - 1.0 / ratio).exp();
        }
    }
    bleus
}

fn lcs(a: &[&str], b: &[&str]) -> usize {
    let (string, sub) = if a.len() < b.len() { (b, a) } else { (a, b) };
    let mut prev = vec![0usize; sub.len() + 1];
    let mut cur = vec![0usize; sub.len() + 1];
    // Same recurrence as my_lcs (the traversal order does not change the LCS length).
    for i in 1..=string.len() {
        for j in 1..=sub.len() {
            cur[j] =
                if string[i - 1] == sub[j - 1] { prev[j - 1] + 1 } else { prev[j].max(cur[j - 1]) };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[sub.len()]
}

/// pycocoevalcap `Rouge().compute_score`: mean over images of ROUGE-L (β = 1.2), tokens split
/// on `" "`.
pub fn rouge_l(gts: &[Vec<String>], res: &[String]) -> f64 {
    let beta: f64 = 1.2;
    let scores: Vec<f64> = gts
        .iter()
        .zip(res)
        .map(|(refs, hyp)| {
            let tc: Vec<&str> = hyp.split(' ').collect();
            let mut prec_max = f64::NEG_INFINITY;
            let mut rec_max = f64::NEG_INFINITY;
            for r in refs {
                let tr: Vec<&str> = r.split(' ').collect();
                let l = lcs(&tr, &tc) as f64;
                prec_max = prec_max.max(l / tc.len() as f64);
                rec_max = rec_max.max(l / tr.len() as f64);
            }
            if prec_max != 0.0 && rec_max != 0.0 {
                ((1.0 + beta.powi(2)) * prec_max * rec_max) / (rec_max + beta.powi(2) * prec_max)
            } else {
                0.0
            }
        })
        .collect();
    py::np_mean(&scores)
}

/// pycocoevalcap `Cider().compute_score` (CIDEr-D: clipping and the length penalty, σ = 6).
pub fn cider(gts: &[Vec<String>], res: &[String]) -> f64 {
    cider_inner(gts, res)
}

// Indexing by the n-gram order k keeps the loops line for line with pycocoevalcap's.
#[allow(clippy::needless_range_loop)]
fn cider_inner<'a>(gts: &'a [Vec<String>], res: &'a [String]) -> f64 {
    let n = 4;
    let sigma: f64 = 6.0;
    let refs_words: Vec<Vec<Vec<&'a str>>> =
        gts.iter().map(|refs| refs.iter().map(|r| py::split(r)).collect()).collect();
    let hyp_words: Vec<Vec<&'a str>> = res.iter().map(|h| py::split(h)).collect();
    let crefs: Vec<Vec<Counts>> =
        refs_words.iter().map(|rs| rs.iter().map(|w| precook(w, n)).collect()).collect();
    let ctest: Vec<Counts> = hyp_words.iter().map(|w| precook(w, n)).collect();
    let mut df: HashMap<&Ngram, f64> = HashMap::new();
    for refs in &crefs {
        let mut seen: std::collections::HashSet<&Ngram> = std::collections::HashSet::new();
        for r in refs {
            for g in &r.order {
                seen.insert(g);
            }
        }
        for g in seen {
            *df.entry(g).or_insert(0.0) += 1.0;
        }
    }
    let ref_len = (crefs.len() as f64).ln();
    let counts2vec = |c: &Counts<'a>| counts2vec(c, &df, ref_len, n);
    let simi = |h: &Vecd, r: &Vecd| -> Vec<f64> {
        let delta = h.length as f64 - r.length as f64;
        let mut val = vec![0.0f64; n];
        for k in 0..n {
            for (g, hv) in &h.vec[k] {
                let rv = r.idx[k].get(g).map(|&i| r.vec[k][i].1).unwrap_or(0.0);
                val[k] += hv.min(rv) * rv;
            }
            if h.norm[k] != 0.0 && r.norm[k] != 0.0 {
                val[k] /= h.norm[k] * r.norm[k];
            }
            val[k] *= std::f64::consts::E.powf(-(delta.powi(2)) / (2.0 * sigma.powi(2)));
        }
        val
    };
    let mut scores = Vec::with_capacity(ctest.len());
    for (test, refs) in ctest.iter().zip(&crefs) {
        let vh = counts2vec(test);
        let mut score = vec![0.0f64; n];
        for r in refs {
            let vr = counts2vec(r);
            let s = simi(&vh, &vr);
            for k in 0..n {
                score[k] += s[k];
            }
        }
        let mut avg = py::np_mean(&score);
        avg /= refs.len() as f64;
        avg *= 10.0;
        scores.push(avg);
    }
    py::np_mean(&scores)
}

struct Vecd<'a> {
    vec: Vec<Vec<(Ngram<'a>, f64)>>,
    idx: Vec<HashMap<Ngram<'a>, usize>>,
    norm: Vec<f64>,
    length: usize,
}

fn counts2vec<'a>(
    c: &Counts<'a>,
    df: &HashMap<&Ngram<'a>, f64>,
    ref_len: f64,
    n: usize,
) -> Vecd<'a> {
    let mut v =
        Vecd { vec: vec![vec![]; n], idx: vec![HashMap::new(); n], norm: vec![0.0; n], length: 0 };
    for g in &c.order {
        let tf = c.map[g];
        let d = df.get(g).copied().unwrap_or(0.0).max(1.0).ln();
        let k = g.len() - 1;
        let val = tf as f64 * (ref_len - d);
        v.idx[k].insert(g.clone(), v.vec[k].len());
        v.vec[k].push((g.clone(), val));
        v.norm[k] += val.powi(2);
        if k == 1 {
            v.length += tf;
        }
    }
    for x in v.norm.iter_mut() {
        *x = x.sqrt();
    }
    v
}

/// Score caption rows: Bleu_1..4, ROUGE_L, CIDEr, ×100 (VLMEvalKit's scale).
pub fn score(rows: &[Row], ptb: bool) -> Vec<Metric> {
    let rows: Vec<&Row> = rows.iter().filter(|r| r.item.answer.is_some()).collect();
    let mut gts: Vec<Vec<String>> = rows.iter().map(|r| r.item.answers()).collect();
    let mut res: Vec<String> = rows.iter().map(|r| r.prediction.to_string()).collect();
    if rows.is_empty() {
        return vec![];
    }
    if ptb {
        gts =
            gts.iter().map(|refs| refs.iter().map(|s| super::ptb::tokenize(s)).collect()).collect();
        res = res.iter().map(|s| super::ptb::tokenize(s)).collect();
    }
    let b = bleu(&gts, &res);
    let mut out = Vec::new();
    for (k, v) in b.iter().enumerate() {
        out.push(Metric::new(None, None, &format!("Bleu_{}", k + 1), v * 100.0));
    }
    out.push(Metric::new(None, None, "ROUGE_L", rouge_l(&gts, &res) * 100.0));
    out.push(Metric::new(None, None, "CIDEr", cider(&gts, &res) * 100.0));
    out
}
