//! `LawError`: why a fit, a bound or a table read refused its input, worded for the end user and
//! naming the series (and, through `InFile`, the file).

use thiserror::Error;

/// Every way a law computation can refuse its input. Messages are meant for end users.
#[derive(Debug, Error)]
pub enum LawError {
    #[error("series `{series}`: {n_points} usable point(s) but law `{law}` has {n_params} parameters; need at least {n_params}")]
    /// Fewer usable points than the law has parameters.
    TooFewPoints {
        /// The series.
        series: String,
        /// The law's name.
        law: String,
        /// Points left after exclusions.
        n_points: usize,
        /// Parameters of the law.
        n_params: usize,
    },
    #[error("series `{series}`: token count n = {n} is not a positive finite number")]
    /// A token count that is zero, negative, NaN or infinite.
    BadN {
        /// The series.
        series: String,
        /// The offending n.
        n: f64,
    },
    #[error("series `{series}`: score at n = {n} is not finite ({score})")]
    /// A NaN or infinite score.
    BadScore {
        /// The series.
        series: String,
        /// Where.
        n: f64,
        /// The offending score.
        score: f64,
    },
    #[error("series `{series}`: all scores are equal ({score}); a scaling law cannot be fitted to a constant")]
    /// Every score equal: nothing to fit.
    ConstantScores {
        /// The series.
        series: String,
        /// The one score.
        score: f64,
    },
    #[error("series `{series}`: log-space fit needs positive scores, got {score} at n = {n}")]
    /// A score ≤ 0 in a log-space fit.
    NonPositiveForLog {
        /// The series.
        series: String,
        /// Where.
        n: f64,
        /// The offending score.
        score: f64,
    },
    #[error("series `{series}`, law `{law}`: the fit did not converge from any start ({detail})")]
    /// No Levenberg–Marquardt start reached a finite optimum.
    NoConvergence {
        /// The series.
        series: String,
        /// The law's name.
        law: String,
        /// Why, in words (e.g. the log-linear limit).
        detail: String,
    },
    /// Any other refused input, described in the message.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// A CSV file could not be parsed.
    #[error("csv: {0}")]
    Csv(#[from] csv::Error),
    /// A file could not be read or written.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// An error while reading a file, with the file's name in front.
    #[error("{}: {source}", path.display())]
    InFile {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong in it.
        source: Box<LawError>,
    },
}
