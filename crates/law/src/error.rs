use thiserror::Error;

/// Every way a law computation can refuse its input. Messages are meant for end users.
#[derive(Debug, Error)]
pub enum LawError {
    #[error("series `{series}`: {n_points} usable point(s) but law `{law}` has {n_params} parameters; need at least {n_params}")]
    TooFewPoints { series: String, law: String, n_points: usize, n_params: usize },
    #[error("series `{series}`: token count n = {n} is not a positive finite number")]
    BadN { series: String, n: f64 },
    #[error("series `{series}`: score at n = {n} is not finite ({score})")]
    BadScore { series: String, n: f64, score: f64 },
    #[error("series `{series}`: all scores are equal ({score}); a scaling law cannot be fitted to a constant")]
    ConstantScores { series: String, score: f64 },
    #[error("series `{series}`: log-space fit needs positive scores, got {score} at n = {n}")]
    NonPositiveForLog { series: String, n: f64, score: f64 },
    #[error("series `{series}`, law `{law}`: the fit did not converge from any start ({detail})")]
    NoConvergence { series: String, law: String, detail: String },
    #[error("invalid input: {0}")]
    Invalid(String),
    #[error("csv: {0}")]
    Csv(#[from] csv::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// An error while reading a file, with the file's name in front.
    #[error("{}: {source}", path.display())]
    InFile { path: std::path::PathBuf, source: Box<LawError> },
}
