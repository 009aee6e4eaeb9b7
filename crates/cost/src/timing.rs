//! Measured time against the analytic count: the FLOPs that run before the first answer token,
//! and the least-squares line time ≈ a + b·FLOPs through measured medians (a: the work the count
//! leaves out and fixed overheads; 1/b: the effective FLOP rate).

use anyhow::Result;

use crate::{cost, Arch, Reducer, Workload};

/// FLOPs of everything before the first answer token at n: vision tower (+ merge, query decoder),
/// projector and the LLM prefill (the `total` row with no decode steps). `crops` and
/// `query_text_tokens` as in [`Workload`] (imgque's default: the full crop grid).
pub fn first_token_flops(
    arch: &Arch,
    n: u64,
    text_tokens: u64,
    reducer: Option<Reducer>,
    crops: Option<u64>,
) -> Result<u64> {
    let w = Workload {
        text_tokens,
        new_tokens: 0,
        crops,
        query_text_tokens: 0,
        reducer,
        ..Workload::default()
    };
    let rows = cost(arch, n, &w)?;
    Ok(rows.last().map_or(0, |r| r.flops))
}

/// y ≈ a + b·x by ordinary least squares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AffineFit {
    /// Intercept: y at x = 0 (for time vs FLOPs, seconds of fixed overhead).
    pub a: f64,
    /// Slope: y per unit of x (for time vs FLOPs, seconds per FLOP).
    pub b: f64,
    /// Coefficient of determination over the fitted points (1 when they lie on the line).
    pub r2: f64,
}

impl AffineFit {
    /// None with fewer than two distinct x.
    pub fn fit(x: &[f64], y: &[f64]) -> Option<Self> {
        let k = x.len().min(y.len());
        let (x, y) = (&x[..k], &y[..k]);
        let mx = x.iter().sum::<f64>() / k as f64;
        let my = y.iter().sum::<f64>() / k as f64;
        let sxx: f64 = x.iter().map(|v| (v - mx) * (v - mx)).sum();
        if k < 2 || sxx.is_nan() || sxx <= 0.0 {
            return None;
        }
        let sxy: f64 = x.iter().zip(y).map(|(u, v)| (u - mx) * (v - my)).sum();
        let b = sxy / sxx;
        let a = my - b * mx;
        let rss: f64 = x.iter().zip(y).map(|(u, v)| (v - a - b * u).powi(2)).sum();
        let tss: f64 = y.iter().map(|v| (v - my) * (v - my)).sum();
        Some(Self { a, b, r2: if tss > 0.0 { 1.0 - rss / tss } else { 1.0 } })
    }

    /// The line at `x`: a + b·x.
    pub fn eval(&self, x: f64) -> f64 {
        self.a + self.b * x
    }

    /// "0.412 s + FLOPs / 123.4 GFLOP/s (R² 0.998)" for a time-vs-FLOPs fit.
    pub fn describe_seconds(&self) -> String {
        let rate = if self.b > 0.0 {
            format!("FLOPs / {:.1} GFLOP/s", 1e-9 / self.b)
        } else {
            format!("{:.3e} s/FLOP · FLOPs", self.b)
        };
        format!("{:.3} s + {rate} (R² {:.3})", self.a, self.r2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affine_fit_recovers_a_line_and_refuses_one_x() {
        let x = [1e12, 2e12, 5e12];
        let y: Vec<f64> = x.iter().map(|v| 0.5 + v / 1e11).collect();
        let f = AffineFit::fit(&x, &y).unwrap();
        assert!(
            (f.a - 0.5).abs() < 1e-9 && (f.b - 1e-11).abs() < 1e-20 && (f.r2 - 1.0).abs() < 1e-12,
            "{f:?}"
        );
        assert_eq!(f.describe_seconds(), "0.500 s + FLOPs / 100.0 GFLOP/s (R² 1.000)");
        // least squares, not interpolation: (0,0), (1,1), (2,0) → y = 1/3
        let f = AffineFit::fit(&[0.0, 1.0, 2.0], &[0.0, 1.0, 0.0]).unwrap();
        assert!((f.a - 1.0 / 3.0).abs() < 1e-12 && f.b.abs() < 1e-12 && f.r2.abs() < 1e-12);
        assert!(AffineFit::fit(&[3.0, 3.0], &[1.0, 2.0]).is_none());
    }
}
