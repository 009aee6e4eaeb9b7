//! Streaming statistics of branch hidden states (the theory side of `tokenscale probe`).
//!
//! For each pair (branch A, branch B) with hidden states a_1..a_L, b_1..b_L (rows of dimension d,
//! L = min(len_A, len_B, max_len)), and every n ≤ L:
//! - D(n) = ‖Σ_{i≤n}(a_i − b_i)‖
//! - ψ_eq(n) = mean_{i≤n} cos(a_i, b_i)
//! - ψ_AA(n) = mean_{i≠j≤n} cos(a_i, a_j), ψ_BB likewise, ψ_AB(n) = mean_{i≠j≤n} cos(a_i, b_j)
//!   (ordered pairs; undefined for n = 1).
//!
//! With unit vectors â_i and running sums S_A = Σâ_i, S_B = Σb̂_i, E = Σ â_i·b̂_i, Q_A = Σ‖â_i‖²:
//! Σ_{i≠j} â_i·â_j = ‖S_A‖² − Q_A and Σ_{i≠j} â_i·b̂_j = S_A·S_B − E, so a new position costs O(d)
//! and a pair O(L·d). Across pairs, each n keeps a count, a Welford mean/variance of D and running
//! sums of the ψ — memory O(max_len + d), independent of the number of pairs. The per-n value is the
//! mean over the pairs long enough to reach n.

use crate::bound::{self, DistanceRow, PsiRow, PsiSource};
use crate::error::LawError;
use crate::Result;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default)]
struct Cell {
    count: u64,
    d_mean: f64,
    d_m2: f64,
    eq: f64,
    cross_count: u64,
    aa: f64,
    bb: f64,
    ab: f64,
}

/// Accumulates D(n) and ψ(n) over pairs.
#[derive(Clone, Debug)]
pub struct ProbeAccumulator {
    dim: usize,
    max_len: usize,
    cells: Vec<Cell>,
    pairs: u64,
    // scratch, reused across pairs
    sa: Vec<f64>,
    sb: Vec<f64>,
    diff: Vec<f64>,
    ua: Vec<f64>,
    ub: Vec<f64>,
}

fn unit(x: &[f32], out: &mut [f64]) -> f64 {
    let norm: f64 = x.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>().sqrt();
    if norm > 0.0 && norm.is_finite() {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = v as f64 / norm;
        }
        1.0
    } else {
        out.iter_mut().for_each(|o| *o = 0.0);
        0.0
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl ProbeAccumulator {
    /// An empty accumulator for hidden states of width `dim`, over n = 1 ..= `max_len`.
    pub fn new(dim: usize, max_len: usize) -> Self {
        Self {
            dim,
            max_len,
            cells: vec![Cell::default(); max_len],
            pairs: 0,
            sa: vec![0.0; dim],
            sb: vec![0.0; dim],
            diff: vec![0.0; dim],
            ua: vec![0.0; dim],
            ub: vec![0.0; dim],
        }
    }

    /// Width of the hidden states it takes.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The largest n it accumulates.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Pairs added so far.
    pub fn pairs(&self) -> u64 {
        self.pairs
    }

    /// Add one pair. `a` and `b` are row-major hidden states of the branch positions
    /// (`len × dim`, lengths may differ; the common prefix up to max_len is used).
    /// Returns the number of positions used.
    pub fn add_pair(&mut self, a: &[f32], b: &[f32]) -> Result<usize> {
        let d = self.dim;
        if d == 0 || !a.len().is_multiple_of(d) || !b.len().is_multiple_of(d) {
            return Err(LawError::Invalid(format!(
                "hidden-state slices of length {} and {} are not multiples of dim {d}",
                a.len(),
                b.len()
            )));
        }
        if a.iter().chain(b).any(|v| !v.is_finite()) {
            return Err(LawError::Invalid("hidden states contain NaN or infinity".into()));
        }
        let len = (a.len() / d).min(b.len() / d).min(self.max_len);
        self.sa.iter_mut().for_each(|v| *v = 0.0);
        self.sb.iter_mut().for_each(|v| *v = 0.0);
        self.diff.iter_mut().for_each(|v| *v = 0.0);
        let (mut e, mut qa, mut qb, mut eq_sum) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
        for i in 0..len {
            let ra = &a[i * d..(i + 1) * d];
            let rb = &b[i * d..(i + 1) * d];
            qa += unit(ra, &mut self.ua);
            qb += unit(rb, &mut self.ub);
            let c = dot(&self.ua, &self.ub);
            eq_sum += c;
            e += c;
            for k in 0..d {
                self.sa[k] += self.ua[k];
                self.sb[k] += self.ub[k];
                self.diff[k] += ra[k] as f64 - rb[k] as f64;
            }
            let n = (i + 1) as f64;
            let dist = dot(&self.diff, &self.diff).sqrt();
            let cell = &mut self.cells[i];
            cell.count += 1;
            let delta = dist - cell.d_mean;
            cell.d_mean += delta / cell.count as f64;
            cell.d_m2 += delta * (dist - cell.d_mean);
            cell.eq += eq_sum / n;
            if i >= 1 {
                let pairs = n * (n - 1.0);
                cell.cross_count += 1;
                cell.aa += (dot(&self.sa, &self.sa) - qa) / pairs;
                cell.bb += (dot(&self.sb, &self.sb) - qb) / pairs;
                cell.ab += (dot(&self.sa, &self.sb) - e) / pairs;
            }
        }
        self.pairs += 1;
        Ok(len)
    }

    /// Merge another accumulator (same dim and max_len), e.g. from a parallel worker.
    pub fn merge(&mut self, other: &ProbeAccumulator) -> Result<()> {
        if other.dim != self.dim || other.max_len != self.max_len {
            return Err(LawError::Invalid(
                "cannot merge probe accumulators of different shapes".into(),
            ));
        }
        for (c, o) in self.cells.iter_mut().zip(&other.cells) {
            if o.count == 0 {
                continue;
            }
            let n = c.count + o.count;
            let delta = o.d_mean - c.d_mean;
            let mean = c.d_mean + delta * o.count as f64 / n as f64;
            c.d_m2 += o.d_m2 + delta * delta * c.count as f64 * o.count as f64 / n as f64;
            c.d_mean = mean;
            c.count = n;
            c.eq += o.eq;
            c.cross_count += o.cross_count;
            c.aa += o.aa;
            c.bb += o.bb;
            c.ab += o.ab;
        }
        self.pairs += other.pairs;
        Ok(())
    }

    /// The per-n means (rows only for n reached by at least one pair).
    pub fn finish(&self) -> ProbeStats {
        let rows = self
            .cells
            .iter()
            .enumerate()
            .take_while(|(_, c)| c.count > 0)
            .map(|(i, c)| {
                let cross = |s: f64| (c.cross_count > 0).then(|| s / c.cross_count as f64);
                let (aa, bb) = (cross(c.aa), cross(c.bb));
                ProbeRow {
                    n: i + 1,
                    pairs: c.count,
                    d_mean: c.d_mean,
                    // population std over pairs (ddof = 0)
                    d_std: (c.d_m2 / c.count as f64).max(0.0).sqrt(),
                    psi_eq: c.eq / c.count as f64,
                    psi_aa: aa,
                    psi_bb: bb,
                    psi_aabb: aa.zip(bb).map(|(x, y)| 0.5 * (x + y)),
                    psi_ab: cross(c.ab),
                }
            })
            .collect();
        ProbeStats { pairs: self.pairs, dim: self.dim, max_len: self.max_len, rows }
    }
}

/// One n of the probe output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeRow {
    /// Vision-token count.
    pub n: usize,
    /// Pairs that reach n.
    pub pairs: u64,
    /// Mean over those pairs of D(n) = ‖Σ_{i≤n}(a_i − b_i)‖.
    pub d_mean: f64,
    /// Population standard deviation (ddof = 0) of D(n) over those pairs.
    pub d_std: f64,
    /// ψ_eq(n): mean cos(a_i, b_i) over i ≤ n.
    pub psi_eq: f64,
    /// ψ_AA(n): mean cos(a_i, a_j) over ordered i ≠ j ≤ n (`None` for n = 1).
    pub psi_aa: Option<f64>,
    /// ψ_BB(n): the same within branch B.
    pub psi_bb: Option<f64>,
    /// ψ_AABB(n) = ½(ψ_AA + ψ_BB).
    pub psi_aabb: Option<f64>,
    /// ψ_AB(n): mean cos(a_i, b_j) over ordered i ≠ j ≤ n.
    pub psi_ab: Option<f64>,
}

/// What a probe run measured: one row per n reached by at least one pair.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProbeStats {
    /// Pairs accumulated.
    pub pairs: u64,
    /// Width of the hidden states.
    pub dim: usize,
    /// The largest n accumulated.
    pub max_len: usize,
    /// One row per n, ascending.
    pub rows: Vec<ProbeRow>,
}

impl ProbeStats {
    /// ψ curves for the bound (ψ_AA := ψ_AABB), n ≥ 2.
    pub fn psi_rows(&self) -> Vec<PsiRow> {
        self.rows
            .iter()
            .filter_map(|r| {
                Some(PsiRow { n: r.n, psi_eq: r.psi_eq, psi_aa: r.psi_aabb?, psi_ab: r.psi_ab? })
            })
            .collect()
    }

    /// The measured D(n) curve for the bound.
    pub fn distance_rows(&self) -> Vec<DistanceRow> {
        self.rows
            .iter()
            .map(|r| DistanceRow { n: r.n, d_mean: r.d_mean, d_std: Some(r.d_std) })
            .collect()
    }

    /// The bound with λ fitted to the measured D(n) and the n_balance curve.
    pub fn bound(&self) -> Result<bound::BoundReport> {
        let psi = self.psi_rows();
        if psi.is_empty() {
            return Err(LawError::Invalid(
                "the probe reached no n ≥ 2; ψ cross terms and the bound are undefined".into(),
            ));
        }
        bound::evaluate(&PsiSource::Curve(psi), self.max_len, Some(&self.distance_rows()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenscale_base::SplitMix64;

    fn cos(a: &[f32], b: &[f32]) -> f64 {
        let d: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
        let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        d / (na * nb)
    }

    fn random_pair(rng: &mut SplitMix64, la: usize, lb: usize, d: usize) -> (Vec<f32>, Vec<f32>) {
        let mut f = || (rng.next_u64() >> 11) as f32 / (1u64 << 53) as f32 - 0.3;
        let a: Vec<f32> = (0..la * d).map(|_| f()).collect();
        let b: Vec<f32> = (0..lb * d).map(|_| f()).collect();
        (a, b)
    }

    /// Brute force O(n²·d) per n for one pair.
    fn brute(a: &[f32], b: &[f32], d: usize, n: usize) -> (f64, f64, f64, f64, f64) {
        let row = |x: &[f32], i: usize| x[i * d..(i + 1) * d].to_vec();
        let mut diff = vec![0.0f64; d];
        let mut eq = 0.0;
        for i in 0..n {
            for k in 0..d {
                diff[k] += a[i * d + k] as f64 - b[i * d + k] as f64;
            }
            eq += cos(&row(a, i), &row(b, i));
        }
        let (mut aa, mut bb, mut ab) = (0.0, 0.0, 0.0);
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    aa += cos(&row(a, i), &row(a, j));
                    bb += cos(&row(b, i), &row(b, j));
                    ab += cos(&row(a, i), &row(b, j));
                }
            }
        }
        let m = (n * (n - 1)).max(1) as f64;
        (diff.iter().map(|v| v * v).sum::<f64>().sqrt(), eq / n as f64, aa / m, bb / m, ab / m)
    }

    #[test]
    fn matches_brute_force_over_pairs() {
        let d = 7;
        let max_len = 12;
        let mut rng = SplitMix64::new(3);
        let pairs: Vec<(Vec<f32>, Vec<f32>)> = vec![
            random_pair(&mut rng, 12, 15, d),
            random_pair(&mut rng, 9, 10, d),
            random_pair(&mut rng, 20, 4, d),
        ];
        let mut acc = ProbeAccumulator::new(d, max_len);
        for (a, b) in &pairs {
            acc.add_pair(a, b).unwrap();
        }
        let stats = acc.finish();
        assert_eq!(stats.rows.len(), 12);
        for row in &stats.rows {
            let n = row.n;
            let reach: Vec<_> =
                pairs.iter().filter(|(a, b)| a.len() / d >= n && b.len() / d >= n).collect();
            assert_eq!(row.pairs as usize, reach.len());
            let vals: Vec<_> = reach.iter().map(|(a, b)| brute(a, b, d, n)).collect();
            let k = vals.len() as f64;
            type Moments = (f64, f64, f64, f64, f64);
            let mean = |f: &dyn Fn(&Moments) -> f64| vals.iter().map(f).sum::<f64>() / k;
            let dm = mean(&|v| v.0);
            let ds = (vals.iter().map(|v| (v.0 - dm).powi(2)).sum::<f64>() / k).sqrt();
            assert!((row.d_mean - dm).abs() < 1e-9, "n={n}");
            assert!((row.d_std - ds).abs() < 1e-9, "n={n}");
            assert!((row.psi_eq - mean(&|v| v.1)).abs() < 1e-9);
            if n >= 2 {
                assert!((row.psi_aa.unwrap() - mean(&|v| v.2)).abs() < 1e-9);
                assert!((row.psi_bb.unwrap() - mean(&|v| v.3)).abs() < 1e-9);
                assert!((row.psi_ab.unwrap() - mean(&|v| v.4)).abs() < 1e-9);
                assert!(
                    (row.psi_aabb.unwrap() - 0.5 * (mean(&|v| v.2) + mean(&|v| v.3))).abs() < 1e-9
                );
            } else {
                assert!(row.psi_aa.is_none() && row.psi_ab.is_none());
            }
        }
        // Merge equals sequential accumulation.
        let mut a1 = ProbeAccumulator::new(d, max_len);
        let mut a2 = ProbeAccumulator::new(d, max_len);
        a1.add_pair(&pairs[0].0, &pairs[0].1).unwrap();
        a2.add_pair(&pairs[1].0, &pairs[1].1).unwrap();
        a2.add_pair(&pairs[2].0, &pairs[2].1).unwrap();
        a1.merge(&a2).unwrap();
        let m = a1.finish();
        for (x, y) in m.rows.iter().zip(&stats.rows) {
            assert!(
                (x.d_mean - y.d_mean).abs() < 1e-9
                    && (x.d_std - y.d_std).abs() < 1e-9
                    && (x.psi_eq - y.psi_eq).abs() < 1e-12
            );
        }
        let b = stats.bound().unwrap();
        assert!(b.lambda.is_some());
    }

    #[test]
    fn long_pair_is_cheap_and_bad_input_rejected() {
        let d = 256;
        let mut rng = SplitMix64::new(9);
        let (a, b) = random_pair(&mut rng, 800, 800, d);
        let mut acc = ProbeAccumulator::new(d, 800);
        let t = std::time::Instant::now();
        assert_eq!(acc.add_pair(&a, &b).unwrap(), 800);
        assert!(t.elapsed().as_secs_f64() < 2.0);
        let s = acc.finish();
        assert_eq!(s.rows.len(), 800);
        assert!(s.rows.iter().all(|r| r.d_mean.is_finite() && r.psi_eq.is_finite()));
        assert!(acc.add_pair(&a[..d + 1], &b).is_err());
        let mut nan = a.clone();
        nan[5] = f32::NAN;
        assert!(acc.add_pair(&nan, &b).is_err());
    }
}
