//! tokenscale-law: the mathematics of "Scaling Capability in Token Space" (Li et al., JMLR 2025).
//!
//! Pure `f64`/`f32` math with no tensor dependency:
//! - [`fit`]: scaling laws (`paper`, `paper_dpsi0`, `power`, `loglinear`, `saturating`) fitted by
//!   Levenberg–Marquardt with several starts, in score space or in log space, with seeded residual
//!   bootstrap 95% intervals, R², RMSE, AIC/BIC, studentised residuals and a regime report.
//! - [`bound`]: Υ(n), the λ√Υ fit to a measured D(n) and the n_balance(n) curve.
//! - [`probe`]: a streaming accumulator of D(n) and the ψ correlation curves from hidden states.
//! - [`data`]: reading score tables (`tokenscale eval`'s scores, `series,n,score` or the
//!   paper-scores shape) into series, with row selections.

pub mod bound;
pub mod data;
pub mod error;
pub mod fit;
pub mod laws;
pub mod probe;
pub mod reducer;
pub mod rng;
mod select;
mod solver;

pub use error::LawError;
pub use fit::{fit_series, FitOptions, FitResult, Space};
pub use laws::{Direction, Law};
pub use reducer::Reducer;

/// Convenience result type.
pub type Result<T> = std::result::Result<T, LawError>;
