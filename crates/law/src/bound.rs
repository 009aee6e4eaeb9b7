//! The paper's bound E[D(n)] = O(√Υ(n)), the λ√Υ fit and the n_balance curve.
//!
//! Υ(n) = n(1 − ψ_eq(n)) + n(n − 1)(ψ_AA(n) − ψ_AB(n)), where ψ_AA is ψ_cross^(AABB) = ½(AA + BB)
//! when both branches are given (as in the authors' code). E[D(n)] ≈ λ√Υ(n) with λ fitted by least
//! squares, λ = Σ √Υ·D / Σ Υ (the minimiser of mean((λ√Υ − D)²), which the authors find
//! numerically from λ = 1). n_balance(n) = (1 − ψ_eq)/(ψ_AA − ψ_AB) − 1, undefined when ψ_AA ≤ ψ_AB.

use crate::error::LawError;
use crate::Result;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// ψ values at one n.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PsiRow {
    /// Vision-token count.
    pub n: usize,
    /// ψ_eq: mean cosine similarity of the branches at equal positions.
    pub psi_eq: f64,
    /// ψ_cross^(AABB) (or ψ_AA when only one branch's self term is known).
    pub psi_aa: f64,
    /// ψ_cross^(AB): mean cosine similarity across the branches at different positions.
    pub psi_ab: f64,
}

/// Where ψ comes from.
#[derive(Clone, Debug)]
pub enum PsiSource {
    /// The same ψ at every n.
    Constant {
        /// ψ_eq.
        psi_eq: f64,
        /// ψ_AA (ψ_cross^(AABB)).
        psi_aa: f64,
        /// ψ_AB.
        psi_ab: f64,
    },
    /// Measured ψ per n (e.g. `tokenscale probe`'s output).
    Curve(Vec<PsiRow>),
}

/// A measured distance curve point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DistanceRow {
    /// Vision-token count.
    pub n: usize,
    /// Mean of D(n) = ‖Σ_{i≤n}(a_i − b_i)‖ over the pairs.
    pub d_mean: f64,
    /// Its standard deviation over the pairs, when known.
    pub d_std: Option<f64>,
}

/// Υ(n).
pub fn upsilon(n: f64, psi_eq: f64, psi_aa: f64, psi_ab: f64) -> f64 {
    n * (1.0 - psi_eq) + n * (n - 1.0) * (psi_aa - psi_ab)
}

/// n_balance = (1 − ψ_eq)/(ψ_AA − ψ_AB) − 1, None when ψ_AA ≤ ψ_AB (Δψ ≤ 0).
pub fn n_balance(psi_eq: f64, psi_aa: f64, psi_ab: f64) -> Option<f64> {
    let d = psi_aa - psi_ab;
    if d.is_nan() || d <= 0.0 {
        return None;
    }
    let v = (1.0 - psi_eq) / d - 1.0;
    v.is_finite().then_some(v)
}

/// Least-squares λ for D ≈ λ·u (u = √Υ); None when Σu² = 0.
pub fn fit_lambda(u: &[f64], d: &[f64]) -> Option<f64> {
    let suu: f64 = u.iter().map(|v| v * v).sum();
    if suu.is_nan() || suu <= 0.0 {
        return None;
    }
    let sud: f64 = u.iter().zip(d).map(|(a, b)| a * b).sum();
    let l = sud / suu;
    l.is_finite().then_some(l)
}

/// One row of the bound report.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BoundRow {
    /// Vision-token count.
    pub n: usize,
    /// ψ_eq at n.
    pub psi_eq: f64,
    /// ψ_AA at n.
    pub psi_aa: f64,
    /// ψ_AB at n.
    pub psi_ab: f64,
    /// Δψ = ψ_AA − ψ_AB.
    pub delta_psi: f64,
    /// Υ(n) = n(1 − ψ_eq) + n(n − 1)Δψ.
    pub upsilon: f64,
    /// √Υ (None where Υ < 0, possible only with noisy ψ).
    pub sqrt_upsilon: Option<f64>,
    /// λ√Υ when λ was fitted.
    pub bound: Option<f64>,
    /// n_balance(n) (None where Δψ ≤ 0).
    pub n_balance: Option<f64>,
    /// `sublinear` (n < n_balance(n): linear term of Υ dominates) or `linear`.
    pub regime: String,
    /// The measured mean distance at n, when one was given.
    pub d_mean: Option<f64>,
    /// Its standard deviation, when known.
    pub d_std: Option<f64>,
}

/// The bound over every n: rows, the fitted λ and how well λ√Υ matches the measured D(n).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BoundReport {
    /// One row per n.
    pub rows: Vec<BoundRow>,
    /// λ of D ≈ λ√Υ by least squares (`None` without a measured D, or when Σ Υ = 0).
    pub lambda: Option<f64>,
    /// RMSE of λ√Υ against the measured mean distance.
    pub lambda_rmse: Option<f64>,
    /// R² of λ√Υ against the measured mean distance.
    pub lambda_r2: Option<f64>,
    /// First n with n ≥ n_balance(n) (where the n_balance curve crosses y = n), if any.
    pub balance_point: Option<usize>,
    /// Caveats in words (negative Υ, undefined n_balance...).
    pub notes: Vec<String>,
}

fn check_psi(n: usize, name: &str, v: f64) -> Result<()> {
    if !v.is_finite() || !(-1.0 - 1e-6..=1.0 + 1e-6).contains(&v) {
        return Err(LawError::Invalid(format!(
            "{name} at n = {n} is {v}; a mean cosine similarity must lie in [-1, 1]"
        )));
    }
    Ok(())
}

/// Evaluate the bound for n = 1..=max_n (constants) or for the curve's n ≤ max_n.
pub fn evaluate(
    psi: &PsiSource,
    max_n: usize,
    distance: Option<&[DistanceRow]>,
) -> Result<BoundReport> {
    if max_n == 0 {
        return Err(LawError::Invalid("max-n must be at least 1".into()));
    }
    let rows_in: Vec<PsiRow> = match psi {
        PsiSource::Constant { psi_eq, psi_aa, psi_ab } => (1..=max_n)
            .map(|n| PsiRow { n, psi_eq: *psi_eq, psi_aa: *psi_aa, psi_ab: *psi_ab })
            .collect(),
        PsiSource::Curve(rows) => {
            rows.iter().filter(|r| r.n >= 1 && r.n <= max_n).cloned().collect()
        }
    };
    if rows_in.is_empty() {
        return Err(LawError::Invalid(format!("no ψ rows with 1 ≤ n ≤ {max_n}")));
    }
    let mut notes = Vec::new();
    let mut rows = Vec::with_capacity(rows_in.len());
    let mut nonpos = 0usize;
    let mut negative_ups = 0usize;
    for r in &rows_in {
        check_psi(r.n, "psi_eq", r.psi_eq)?;
        check_psi(r.n, "psi_aa", r.psi_aa)?;
        check_psi(r.n, "psi_ab", r.psi_ab)?;
        let n = r.n as f64;
        let dpsi = r.psi_aa - r.psi_ab;
        let nb = n_balance(r.psi_eq, r.psi_aa, r.psi_ab);
        // Δψ ≤ 0: n_balance is undefined; use the Δψ = 0 form of Υ.
        let ups = if dpsi > 0.0 {
            upsilon(n, r.psi_eq, r.psi_aa, r.psi_ab)
        } else {
            if r.n > 1 {
                nonpos += 1;
            }
            upsilon(n, r.psi_eq, 0.0, 0.0)
        };
        let sq = if ups >= 0.0 {
            Some(ups.sqrt())
        } else {
            negative_ups += 1;
            None
        };
        let regime = match nb {
            Some(b) if n >= b => "linear",
            _ => "sublinear",
        };
        let d = distance.and_then(|d| d.iter().find(|x| x.n == r.n));
        rows.push(BoundRow {
            n: r.n,
            psi_eq: r.psi_eq,
            psi_aa: r.psi_aa,
            psi_ab: r.psi_ab,
            delta_psi: dpsi,
            upsilon: ups,
            sqrt_upsilon: sq,
            bound: None,
            n_balance: nb,
            regime: regime.into(),
            d_mean: d.map(|x| x.d_mean),
            d_std: d.and_then(|x| x.d_std),
        });
    }
    if nonpos > 0 {
        notes.push(format!("psi_AA <= psi_AB at {nonpos} n: n_balance undefined there; the Delta-psi = 0 form Upsilon = n(1 - psi_eq) is used"));
    }
    if negative_ups > 0 {
        notes.push(format!(
            "Upsilon < 0 at {negative_ups} n (psi_eq > 1 from noise?): sqrt left empty there"
        ));
    }
    let mut report = BoundReport {
        rows,
        lambda: None,
        lambda_rmse: None,
        lambda_r2: None,
        balance_point: None,
        notes,
    };
    report.balance_point =
        report.rows.iter().find(|r| r.n_balance.is_some_and(|b| r.n as f64 >= b)).map(|r| r.n);
    if let Some(dist) = distance {
        for d in dist {
            if !d.d_mean.is_finite() || d.d_std.is_some_and(|s| !s.is_finite()) {
                return Err(LawError::Invalid(format!("distance at n = {} is not finite", d.n)));
            }
        }
        let (u, dm): (Vec<f64>, Vec<f64>) =
            report.rows.iter().filter_map(|r| Some((r.sqrt_upsilon?, r.d_mean?))).unzip();
        if u.is_empty() {
            report.notes.push(
                "the distance curve shares no n with the psi curve: lambda not fitted".into(),
            );
        } else if let Some(l) = fit_lambda(&u, &dm) {
            let rss: f64 = u.iter().zip(&dm).map(|(a, b)| (l * a - b).powi(2)).sum();
            let mean = dm.iter().sum::<f64>() / dm.len() as f64;
            let tss: f64 = dm.iter().map(|v| (v - mean).powi(2)).sum();
            report.lambda = Some(l);
            report.lambda_rmse = Some((rss / u.len() as f64).sqrt());
            report.lambda_r2 = (tss > 0.0).then(|| 1.0 - rss / tss);
            for r in &mut report.rows {
                r.bound = r.sqrt_upsilon.map(|s| l * s);
            }
        } else {
            report.notes.push("Upsilon is zero at every n: lambda not identifiable".into());
        }
    }
    Ok(report)
}

fn open(path: &Path) -> Result<csv::Reader<std::fs::File>> {
    let f = std::fs::File::open(path)
        .map_err(|e| LawError::Invalid(format!("{}: {e}", path.display())))?;
    Ok(csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(f))
}

fn col(h: &csv::StringRecord, names: &[&str]) -> Option<usize> {
    h.iter().position(|x| names.iter().any(|n| x.eq_ignore_ascii_case(n)))
}

fn num(rec: &csv::StringRecord, i: usize, line: usize) -> Result<f64> {
    let s = rec.get(i).unwrap_or("");
    s.parse::<f64>().map_err(|_| LawError::Invalid(format!("line {line}: `{s}` is not a number")))
}

/// Read ψ curves: columns `n, psi_eq, psi_ab` and `psi_aabb`, or `psi_aa` (+ optional `psi_bb`,
/// then ψ_AA := ½(ψ_AA + ψ_BB)). The probe's `psi.csv` has this shape.
pub fn read_psi_csv(path: &Path) -> Result<Vec<PsiRow>> {
    let mut rdr = open(path)?;
    let h = rdr.headers()?.clone();
    let need = |names: &[&str]| {
        col(&h, names).ok_or_else(|| {
            LawError::Invalid(format!("{}: missing column {}", path.display(), names[0]))
        })
    };
    let (ni, eqi, abi) = (need(&["n"])?, need(&["psi_eq"])?, need(&["psi_ab"])?);
    let aabb = col(&h, &["psi_aabb"]);
    let aa = col(&h, &["psi_aa"]);
    let bb = col(&h, &["psi_bb"]);
    if aabb.is_none() && aa.is_none() {
        return Err(LawError::Invalid(format!(
            "{}: missing column psi_aabb or psi_aa",
            path.display()
        )));
    }
    let mut out = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec?;
        let line = i + 2;
        // Rows where the cross terms are empty (n = 1) are skipped.
        let empty = |c: usize| rec.get(c).is_none_or(|s| s.is_empty());
        if empty(abi) || aabb.is_some_and(empty) || (aabb.is_none() && aa.is_some_and(empty)) {
            continue;
        }
        let n = num(&rec, ni, line)?;
        if n.is_nan() || n < 1.0 || n.fract() != 0.0 {
            return Err(LawError::Invalid(format!(
                "line {line}: n = {n} must be a positive integer"
            )));
        }
        let psi_aa = match (aabb, aa, bb) {
            (Some(c), _, _) => num(&rec, c, line)?,
            (None, Some(a), Some(b)) if !empty(b) => {
                0.5 * (num(&rec, a, line)? + num(&rec, b, line)?)
            }
            (None, Some(a), _) => num(&rec, a, line)?,
            _ => unreachable!(),
        };
        out.push(PsiRow {
            n: n as usize,
            psi_eq: num(&rec, eqi, line)?,
            psi_aa,
            psi_ab: num(&rec, abi, line)?,
        });
    }
    Ok(out)
}

/// Read a distance curve: columns `n` and `d_mean` (or `mean`/`d`), optional `d_std` (or `std`).
pub fn read_distance_csv(path: &Path) -> Result<Vec<DistanceRow>> {
    let mut rdr = open(path)?;
    let h = rdr.headers()?.clone();
    let ni = col(&h, &["n"])
        .ok_or_else(|| LawError::Invalid(format!("{}: missing column n", path.display())))?;
    let mi = col(&h, &["d_mean", "mean", "d"])
        .ok_or_else(|| LawError::Invalid(format!("{}: missing column d_mean", path.display())))?;
    let si = col(&h, &["d_std", "std"]);
    let mut out = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec?;
        let line = i + 2;
        let n = num(&rec, ni, line)?;
        if n.is_nan() || n < 1.0 || n.fract() != 0.0 {
            return Err(LawError::Invalid(format!(
                "line {line}: n = {n} must be a positive integer"
            )));
        }
        let d_std = match si {
            Some(c) if !rec.get(c).unwrap_or("").is_empty() => Some(num(&rec, c, line)?),
            _ => None,
        };
        out.push(DistanceRow { n: n as usize, d_mean: num(&rec, mi, line)?, d_std });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsilon_and_balance() {
        // ψ_eq = 0.5, Δψ = 0.01 → n_balance = 0.5/0.01 − 1 = 49.
        assert!((n_balance(0.5, 0.3, 0.29).unwrap() - 49.0).abs() < 1e-9);
        assert_eq!(n_balance(0.5, 0.3, 0.3), None);
        assert_eq!(n_balance(0.5, 0.2, 0.3), None);
        assert!((upsilon(10.0, 0.5, 0.3, 0.29) - (5.0 + 90.0 * 0.01)).abs() < 1e-12);
    }

    #[test]
    fn lambda_recovered_exactly() {
        // Binary-exact ψ: n_balance = 0.5/0.0625 − 1 = 7.
        let psi = PsiSource::Constant { psi_eq: 0.5, psi_aa: 0.375, psi_ab: 0.3125 };
        let dist: Vec<DistanceRow> = (1..=200)
            .map(|n| DistanceRow {
                n,
                d_mean: 2.5 * upsilon(n as f64, 0.5, 0.375, 0.3125).sqrt(),
                d_std: Some(0.1),
            })
            .collect();
        let r = evaluate(&psi, 200, Some(&dist)).unwrap();
        assert!((r.lambda.unwrap() - 2.5).abs() < 1e-12);
        assert!(r.lambda_r2.unwrap() > 0.999999);
        assert_eq!(r.balance_point, Some(7));
        assert_eq!(r.rows[0].regime, "sublinear");
        assert_eq!(r.rows[199].regime, "linear");
    }

    #[test]
    fn delta_psi_nonpositive_uses_dpsi0_form() {
        let psi = PsiSource::Constant { psi_eq: 0.6, psi_aa: 0.3, psi_ab: 0.4 };
        let r = evaluate(&psi, 50, None).unwrap();
        assert!(r.rows.iter().all(|x| x.n_balance.is_none() && x.sqrt_upsilon.is_some()));
        assert!((r.rows[49].upsilon - 50.0 * 0.4).abs() < 1e-12);
        assert!(r.notes.iter().any(|n| n.contains("n_balance undefined")));
        assert_eq!(r.balance_point, None);
    }

    #[test]
    fn bad_psi_is_an_error() {
        assert!(evaluate(
            &PsiSource::Constant { psi_eq: f64::NAN, psi_aa: 0.3, psi_ab: 0.2 },
            5,
            None
        )
        .is_err());
        assert!(evaluate(&PsiSource::Constant { psi_eq: 1.5, psi_aa: 0.3, psi_ab: 0.2 }, 5, None)
            .is_err());
        assert!(evaluate(&PsiSource::Constant { psi_eq: 0.5, psi_aa: 0.3, psi_ab: 0.2 }, 0, None)
            .is_err());
    }
}
