//! The scaling laws, their derivatives and their local exponents.
//!
//! All logarithms are natural. `n` is the number of vision tokens (n_l in the paper).

use serde::{Deserialize, Serialize};

/// Whether a larger score is better (accuracy, CIDEr) or a smaller one (error rate, loss).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Larger scores are better (accuracy, CIDEr).
    #[default]
    HigherIsBetter,
    /// Smaller scores are better (error rate, loss).
    LowerIsBetter,
}

/// A scaling law S(n; θ).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Law {
    /// The paper's form S(n) = c·[n(n+n_b)/(1+n_b)]^{β/2}, i.e. S = c/n^{α(n)} with
    /// α(n) = (β/2)·log_n((1+n_b)/(n+n_b)) − β/2; parameters `c`, `beta`, `n_balance` (n_b ≥ 0).
    Paper,
    /// The paper's Δψ = 0 special case (n_b → ∞): α = −β/2, S = c·n^{β/2}; parameters `c`, `beta`.
    PaperDpsi0,
    /// Plain power law S = c·n^{−α}; parameters `c`, `alpha`.
    Power,
    /// Log-linear S = a + b·ln n; parameters `a`, `b`.
    Loglinear,
    /// Saturating power law S = S_∞ − c·n^{−α}; parameters `s_inf`, `c`, `alpha`.
    Saturating,
}

impl Law {
    /// Every law, in the order reports list them.
    pub const ALL: [Law; 5] =
        [Law::Paper, Law::PaperDpsi0, Law::Power, Law::Loglinear, Law::Saturating];

    /// The law's name in files and on the command line (`paper`, `paper_dpsi0`, `power`,
    /// `loglinear`, `saturating`).
    pub fn name(self) -> &'static str {
        match self {
            Law::Paper => "paper",
            Law::PaperDpsi0 => "paper_dpsi0",
            Law::Power => "power",
            Law::Loglinear => "loglinear",
            Law::Saturating => "saturating",
        }
    }

    /// The law `name` names (`None` for an unknown name).
    pub fn from_name(s: &str) -> Option<Law> {
        Law::ALL.iter().copied().find(|l| l.name() == s)
    }

    /// Its parameters' names, in the order parameter vectors use.
    pub fn param_names(self) -> &'static [&'static str] {
        match self {
            Law::Paper => &["c", "beta", "n_balance"],
            Law::PaperDpsi0 => &["c", "beta"],
            Law::Power => &["c", "alpha"],
            Law::Loglinear => &["a", "b"],
            Law::Saturating => &["s_inf", "c", "alpha"],
        }
    }

    /// How many parameters it has.
    pub fn n_params(self) -> usize {
        self.param_names().len()
    }

    /// Human-readable formula.
    pub fn formula(self) -> &'static str {
        match self {
            Law::Paper => "S(n) = c * [n (n + n_balance) / (1 + n_balance)]^(beta/2)",
            Law::PaperDpsi0 => "S(n) = c * n^(beta/2)",
            Law::Power => "S(n) = c * n^(-alpha)",
            Law::Loglinear => "S(n) = a + b * ln(n)",
            Law::Saturating => "S(n) = s_inf - c * n^(-alpha)",
        }
    }

    /// S(n; p).
    pub fn eval(self, p: &[f64], n: f64) -> f64 {
        let ln = n.ln();
        match self {
            Law::Paper => {
                let (c, beta, nb) = (p[0], p[1], p[2]);
                c * (0.5 * beta * paper_log_base(n, nb)).exp()
            }
            Law::PaperDpsi0 => p[0] * (0.5 * p[1] * ln).exp(),
            Law::Power => p[0] * (-p[1] * ln).exp(),
            Law::Loglinear => p[0] + p[1] * ln,
            Law::Saturating => p[0] - p[1] * (-p[2] * ln).exp(),
        }
    }

    /// ∂S/∂p at n, written into `g` (len = n_params).
    pub fn grad(self, p: &[f64], n: f64, g: &mut [f64]) {
        let ln = n.ln();
        match self {
            Law::Paper => {
                let (c, beta, nb) = (p[0], p[1], p[2]);
                let l = paper_log_base(n, nb);
                let e = (0.5 * beta * l).exp();
                g[0] = e;
                g[1] = c * e * 0.5 * l;
                g[2] = c * e * 0.5 * beta * (1.0 / (n + nb) - 1.0 / (1.0 + nb));
            }
            Law::PaperDpsi0 => {
                let e = (0.5 * p[1] * ln).exp();
                g[0] = e;
                g[1] = p[0] * e * 0.5 * ln;
            }
            Law::Power => {
                let e = (-p[1] * ln).exp();
                g[0] = e;
                g[1] = -p[0] * e * ln;
            }
            Law::Loglinear => {
                g[0] = 1.0;
                g[1] = ln;
            }
            Law::Saturating => {
                let e = (-p[2] * ln).exp();
                g[0] = 1.0;
                g[1] = -e;
                g[2] = p[1] * e * ln;
            }
        }
    }

    /// Local exponent d ln S / d ln n at n (defined where S(n) ≠ 0).
    pub fn local_exponent(self, p: &[f64], n: f64) -> Option<f64> {
        let v = match self {
            Law::Paper => {
                let (beta, nb) = (p[1], p[2]);
                0.5 * beta * (1.0 + n / (n + nb))
            }
            Law::PaperDpsi0 => 0.5 * p[1],
            Law::Power => -p[1],
            Law::Loglinear => {
                let s = self.eval(p, n);
                if s == 0.0 {
                    return None;
                }
                p[1] / s
            }
            Law::Saturating => {
                let s = self.eval(p, n);
                if s == 0.0 {
                    return None;
                }
                p[1] * p[2] * (-p[2] * n.ln()).exp() / s
            }
        };
        v.is_finite().then_some(v)
    }
}

/// ln[n (n + n_b) / (1 + n_b)], computed stably.
pub fn paper_log_base(n: f64, nb: f64) -> f64 {
    n.ln() + (n + nb).ln() - (1.0 + nb).ln()
}

/// α(n) of the paper for given β and n_b (None for n = 1, where log_n is undefined and S = c).
/// With `nb = None` (Δψ = 0) α = −β/2.
pub fn alpha_of_n(beta: f64, nb: Option<f64>, n: f64) -> Option<f64> {
    match nb {
        None => Some(-0.5 * beta),
        Some(nb) => {
            if (n - 1.0).abs() < 1e-12 {
                return None;
            }
            Some(0.5 * beta * ((1.0 + nb) / (n + nb)).ln() / n.ln() - 0.5 * beta)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradients_match_finite_differences() {
        let cases: Vec<(Law, Vec<f64>)> = vec![
            (Law::Paper, vec![30.0, 0.08, 40.0]),
            (Law::PaperDpsi0, vec![30.0, 0.08]),
            (Law::Power, vec![30.0, -0.04]),
            (Law::Loglinear, vec![30.0, 2.0]),
            (Law::Saturating, vec![80.0, 25.0, 0.4]),
        ];
        for (law, p) in cases {
            for &n in &[1.0, 8.0, 100.0, 768.0] {
                let mut g = vec![0.0; law.n_params()];
                law.grad(&p, n, &mut g);
                for k in 0..p.len() {
                    let h = 1e-6 * p[k].abs().max(1e-3);
                    let mut pp = p.clone();
                    pp[k] += h;
                    let mut pm = p.clone();
                    pm[k] -= h;
                    let fd = (law.eval(&pp, n) - law.eval(&pm, n)) / (2.0 * h);
                    assert!(
                        (fd - g[k]).abs() <= 1e-6 * (1.0 + fd.abs()),
                        "{law:?} n={n} k={k}: {fd} vs {}",
                        g[k]
                    );
                }
            }
        }
    }

    #[test]
    fn paper_law_limits_and_alpha() {
        // n_b → ∞ gives c n^{β/2}; n_b = 0 gives c n^β.
        let (c, beta) = (2.0, 0.3);
        let n = 50.0;
        let big = Law::Paper.eval(&[c, beta, 1e12], n);
        assert!((big - Law::PaperDpsi0.eval(&[c, beta], n)).abs() < 1e-6);
        let zero = Law::Paper.eval(&[c, beta, 0.0], n);
        assert!((zero - c * n.powf(beta)).abs() < 1e-9);
        // S = c / n^{α(n)} with the paper's α(n).
        let nb = 17.0;
        let a = alpha_of_n(beta, Some(nb), n).unwrap();
        let s = Law::Paper.eval(&[c, beta, nb], n);
        assert!((s - c / n.powf(a)).abs() < 1e-9);
        assert_eq!(alpha_of_n(beta, None, n), Some(-0.15));
        // Local exponent goes from β/2 (n ≪ n_b) to β (n ≫ n_b).
        let le = |n: f64| Law::Paper.local_exponent(&[c, beta, 1000.0], n).unwrap();
        assert!((le(1e-3) - 0.15).abs() < 1e-3 && (le(1e9) - 0.3).abs() < 1e-3);
    }
}
