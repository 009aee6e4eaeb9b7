//! The scaling-law fits of accuracy against n (the laws and options of `tokenscale fit`, score
//! space) and what they say about the paper's two regimes.

use serde::Serialize;
use tokenscale_law::fit::{fit_all, validate, FitOptions, FitResult};
use tokenscale_law::Law;

/// Every law fitted to one accuracy series.
#[derive(Clone, Debug, Serialize)]
pub struct SeriesFits {
    /// The series' label (e.g. `overall` or a subset name), as in the report.
    pub series: String,
    /// The fitted points: (n, accuracy in percent).
    pub points: Vec<(f64, f64)>,
    /// Best AIC first.
    pub fits: Vec<FitResult>,
    /// (law, reason) for the laws that could not be fitted.
    pub errors: Vec<(String, String)>,
    /// Whether the paper law's fit shows both regimes, and its sentence for the report.
    pub regimes: RegimeVerdict,
}

/// The paper law's regime split, stated plainly.
#[derive(Clone, Debug, Serialize)]
pub struct RegimeVerdict {
    /// Established: the fitted n_balance puts measured n on both sides, its 95% interval lies
    /// within the measured n range, and accuracy rises with n.
    pub both_regimes: bool,
    /// The point estimate alone puts measured n on both sides of n_balance.
    pub split_by_estimate: bool,
    /// The paper law's fitted n_balance; `None` when the paper law could not be fitted.
    pub n_balance: Option<f64>,
    /// None without bootstrap resamples.
    pub n_balance_ci95: Option<[f64; 2]>,
    /// The verdict in one plain sentence, as written into `report.md`.
    pub sentence: String,
}

impl SeriesFits {
    /// The paper law's fit, if it could be fitted (`None` otherwise).
    pub fn paper(&self) -> Option<&FitResult> {
        self.fits.iter().find(|f| f.law == Law::Paper)
    }
}

/// Fits all five laws of `tokenscale fit` to (n, accuracy %) in score space, with its default
/// bootstrap seed.
pub fn fit_accuracy(series: &str, points: &[(f64, f64)], bootstrap: usize) -> SeriesFits {
    let opts = FitOptions { bootstrap, ..Default::default() };
    let (fits, errors): (Vec<FitResult>, Vec<(String, String)>) = match validate(series, points) {
        Ok(()) => {
            let (fits, errors) = fit_all(series, points, &[], &Law::ALL, &opts);
            (fits, errors.into_iter().map(|(l, e)| (l.name().to_string(), e.to_string())).collect())
        }
        // A series no law can take (e.g. constant accuracy): the same reason for every law.
        Err(e) => {
            (Vec::new(), Law::ALL.iter().map(|l| (l.name().to_string(), e.to_string())).collect())
        }
    };
    let paper_error = errors.iter().find(|(l, _)| l == Law::Paper.name()).map(|e| e.1.as_str());
    let regimes = verdict(
        series,
        points,
        fits.iter().find(|f| f.law == Law::Paper),
        paper_error,
        bootstrap > 0,
    );
    SeriesFits { series: series.to_string(), points: points.to_vec(), fits, errors, regimes }
}

fn list(ns: &[f64]) -> String {
    ns.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")
}

/// The number format of every fitted quantity in the report.
pub fn fmt_value(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        format!("{v:.3e}")
    } else {
        format!("{v:.3}")
    }
}

fn verdict(
    series: &str,
    points: &[(f64, f64)],
    paper: Option<&FitResult>,
    error: Option<&str>,
    intervals: bool,
) -> RegimeVerdict {
    let none = |sentence: String| RegimeVerdict {
        both_regimes: false,
        split_by_estimate: false,
        n_balance: None,
        n_balance_ci95: None,
        sentence,
    };
    let Some(fit) = paper else {
        return none(format!("The paper law could not be fitted to `{series}` ({}), so this run says nothing about the regimes.", error.unwrap_or("no result")));
    };
    let Some(regime) = &fit.regime else {
        return none(format!("The paper law's fit to `{series}` has no regime report."));
    };
    let trend =
        if fit.improves_with_n { "accuracy rises with n" } else { "accuracy does not rise with n" };
    let Some(nb) = regime.n_balance else {
        return none(format!(
            "Only one regime can be seen in `{series}` ({trend}): the best paper-law curve is a pure power law (the Δψ = 0 form, β = {}), so the points do not determine n_balance.",
            fmt_value(fit.params.get("beta").copied().unwrap_or(f64::NAN))
        ));
    };
    let ci = fit.ci95.get("n_balance").copied().filter(|_| intervals);
    let (lo, hi) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), p| (l.min(p.0), h.max(p.0)));
    let ci_text = ci.map_or(" (no interval: no bootstrap)".to_string(), |[a, b]| {
        format!(" (95% CI [{}, {}])", fmt_value(a), fmt_value(b))
    });
    let split = !regime.sublinear.is_empty() && !regime.linear.is_empty();
    let mut doubts = Vec::new();
    if !fit.improves_with_n {
        doubts.push("accuracy does not rise with n".to_string());
    }
    match ci {
        Some([a, b]) if a < lo || b > hi => {
            doubts.push(format!("the interval reaches past the measured n = {lo}..{hi}"))
        }
        None => doubts.push("there is no interval".to_string()),
        _ => {}
    }
    let sentence = if !split {
        let (which, side) =
            if regime.linear.is_empty() { ("sublinear", "above") } else { ("linear", "below") };
        format!("Only the {which} regime appears in `{series}` ({trend}): n_balance = {}{ci_text} lies {side} every measured n.", fmt_value(nb))
    } else if doubts.is_empty() {
        format!(
            "Both regimes appear in `{series}` ({trend}): n_balance = {}{ci_text}; n = {} fall in the sublinear regime and n = {} in the linear one.",
            fmt_value(nb),
            list(&regime.sublinear),
            list(&regime.linear)
        )
    } else {
        format!(
            "This run does not establish both regimes in `{series}`: the point estimate n_balance = {}{ci_text} puts n = {} in the sublinear and n = {} in the linear regime, but {}.",
            fmt_value(nb),
            list(&regime.sublinear),
            list(&regime.linear),
            doubts.join(" and ")
        )
    };
    RegimeVerdict {
        both_regimes: split && doubts.is_empty(),
        split_by_estimate: split,
        n_balance: Some(nb),
        n_balance_ci95: ci,
        sentence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenscale_law::laws::Law as L;

    const NS: [f64; 7] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

    #[test]
    fn a_paper_curve_with_interior_balance_shows_both_regimes() {
        // S = c·[n(n+n_b)/(1+n_b)]^{β/2} with n_b = 8, plus a small wiggle so the fit is not exact.
        let points: Vec<(f64, f64)> = NS
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                (n, L::Paper.eval(&[30.0, 0.3, 8.0], n) + if i % 2 == 0 { 0.05 } else { -0.05 })
            })
            .collect();
        let fits = fit_accuracy("overall", &points, 1000);
        let v = &fits.regimes;
        assert!(v.both_regimes, "{}", v.sentence);
        let [lo, hi] = v.n_balance_ci95.unwrap();
        assert!(lo <= 8.0 && 8.0 <= hi, "[{lo}, {hi}]");
        let nb = v.n_balance.unwrap();
        assert!((nb - 8.0).abs() < 2.0, "n_balance {nb}");
        assert!(v.sentence.starts_with("Both regimes appear"), "{}", v.sentence);
        assert_eq!(fits.fits.len() + fits.errors.len(), 5);
    }

    #[test]
    fn a_split_without_interval_or_rise_is_not_called_established() {
        let falling: Vec<(f64, f64)> = NS
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                (
                    n,
                    60.0 - L::Paper.eval(&[3.0, 0.3, 8.0], n)
                        + if i % 2 == 0 { 0.05 } else { -0.05 },
                )
            })
            .collect();
        for (points, bootstrap) in [(&falling, 1000), (&falling, 0)] {
            let v = fit_accuracy("overall", points, bootstrap).regimes;
            assert!(!v.both_regimes, "{}", v.sentence);
            if v.split_by_estimate {
                assert!(
                    v.sentence.starts_with("This run does not establish both regimes"),
                    "{}",
                    v.sentence
                );
            }
        }
    }

    #[test]
    fn a_pure_power_law_is_reported_as_one_regime() {
        let points: Vec<(f64, f64)> = NS.iter().map(|&n| (n, 20.0 * n.powf(0.2))).collect();
        let v = fit_accuracy("fine", &points, 0).regimes;
        assert!(!v.both_regimes);
        assert!(v.sentence.contains("Only"), "{}", v.sentence);
    }

    #[test]
    fn a_flat_series_is_no_fit_and_says_why() {
        let points: Vec<(f64, f64)> = NS.iter().map(|&n| (n, 25.0)).collect();
        let fits = fit_accuracy("overall", &points, 0);
        assert!(fits.fits.is_empty());
        assert_eq!(fits.errors.len(), 5);
        assert!(fits.regimes.sentence.contains("could not be fitted"), "{}", fits.regimes.sentence);
    }
}
