//! Levenberg–Marquardt (MINPACK port from the `levenberg-marquardt` crate) with several starts.

use crate::laws::Law;
use levenberg_marquardt::{LeastSquaresProblem, LevenbergMarquardt};
use nalgebra::{storage::Owned, DMatrix, DVector, Dyn};

/// A parametrisation handed to the solver. `PaperLogNb` is the paper law with n_b = exp(t) so that
/// n_b > 0 holds without bounds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Form {
    Law(Law),
    PaperLogNb,
}

impl Form {
    pub fn n_params(self) -> usize {
        match self {
            Form::Law(l) => l.n_params(),
            Form::PaperLogNb => 3,
        }
    }

    pub fn eval(self, p: &[f64], n: f64) -> f64 {
        match self {
            Form::Law(l) => l.eval(p, n),
            Form::PaperLogNb => Law::Paper.eval(&[p[0], p[1], p[2].exp()], n),
        }
    }

    pub fn grad(self, p: &[f64], n: f64, g: &mut [f64]) {
        match self {
            Form::Law(l) => l.grad(p, n, g),
            Form::PaperLogNb => {
                let nb = p[2].exp();
                let mut g3 = [0.0; 3];
                Law::Paper.grad(&[p[0], p[1], nb], n, &mut g3);
                g[0] = g3[0];
                g[1] = g3[1];
                g[2] = g3[2] * nb;
            }
        }
    }
}

struct Problem<'a> {
    form: Form,
    ns: &'a [f64],
    /// Targets in the fitting space (scores, or ln scores when `log`).
    yt: &'a [f64],
    log: bool,
    p: DVector<f64>,
}

impl LeastSquaresProblem<f64, Dyn, Dyn> for Problem<'_> {
    type ResidualStorage = Owned<f64, Dyn>;
    type JacobianStorage = Owned<f64, Dyn, Dyn>;
    type ParameterStorage = Owned<f64, Dyn>;

    fn set_params(&mut self, x: &DVector<f64>) {
        self.p.copy_from(x);
    }
    fn params(&self) -> DVector<f64> {
        self.p.clone()
    }
    fn residuals(&self) -> Option<DVector<f64>> {
        residuals(self.form, self.p.as_slice(), self.ns, self.yt, self.log).map(DVector::from_vec)
    }
    fn jacobian(&self) -> Option<DMatrix<f64>> {
        jacobian(self.form, self.p.as_slice(), self.ns, self.log)
    }
}

/// Residuals model − target in the fitting space; None where the model leaves its domain.
pub(crate) fn residuals(
    form: Form,
    p: &[f64],
    ns: &[f64],
    yt: &[f64],
    log: bool,
) -> Option<Vec<f64>> {
    let mut r = Vec::with_capacity(ns.len());
    for (&n, &y) in ns.iter().zip(yt) {
        let m = form.eval(p, n);
        let v = if log {
            if m.is_nan() || m <= 0.0 {
                return None;
            }
            m.ln() - y
        } else {
            m - y
        };
        if !v.is_finite() {
            return None;
        }
        r.push(v);
    }
    Some(r)
}

/// Jacobian of the residuals (rows = points) in the fitting space.
pub(crate) fn jacobian(form: Form, p: &[f64], ns: &[f64], log: bool) -> Option<DMatrix<f64>> {
    let k = form.n_params();
    let mut j = DMatrix::zeros(ns.len(), k);
    let mut g = vec![0.0; k];
    for (i, &n) in ns.iter().enumerate() {
        form.grad(p, n, &mut g);
        let scale = if log {
            let m = form.eval(p, n);
            if m.is_nan() || m <= 0.0 {
                return None;
            }
            1.0 / m
        } else {
            1.0
        };
        for c in 0..k {
            let v = g[c] * scale;
            if !v.is_finite() {
                return None;
            }
            j[(i, c)] = v;
        }
    }
    Some(j)
}

/// A converged solution.
#[derive(Clone, Debug)]
pub(crate) struct Solution {
    pub p: Vec<f64>,
    pub rss: f64,
}

/// One LM run from `start`.
pub(crate) fn solve(
    form: Form,
    ns: &[f64],
    yt: &[f64],
    log: bool,
    start: &[f64],
) -> Option<Solution> {
    let problem = Problem { form, ns, yt, log, p: DVector::from_column_slice(start) };
    residuals(form, start, ns, yt, log)?;
    let (res, report) = LevenbergMarquardt::new().with_patience(400).minimize(problem);
    if !report.termination.was_successful() {
        return None;
    }
    let p: Vec<f64> = res.p.iter().copied().collect();
    if p.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let r = residuals(form, &p, ns, yt, log)?;
    let rss: f64 = r.iter().map(|v| v * v).sum();
    rss.is_finite().then_some(Solution { p, rss })
}

/// Best of several starts (lowest residual sum of squares).
pub(crate) fn multi_start(
    form: Form,
    ns: &[f64],
    yt: &[f64],
    log: bool,
    starts: &[Vec<f64>],
) -> Option<Solution> {
    let mut best: Option<Solution> = None;
    for s in starts {
        if let Some(sol) = solve(form, ns, yt, log, s) {
            if best.as_ref().is_none_or(|b| sol.rss < b.rss) {
                best = Some(sol);
            }
        }
    }
    best
}

/// Ordinary least squares y = a + b x; returns (a, b).
pub(crate) fn ols(x: &[f64], y: &[f64]) -> Option<(f64, f64)> {
    let n = x.len() as f64;
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let sxx: f64 = x.iter().map(|v| (v - mx) * (v - mx)).sum();
    if sxx.is_nan() || sxx <= 0.0 {
        return None;
    }
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let b = sxy / sxx;
    Some((my - b * mx, b))
}
