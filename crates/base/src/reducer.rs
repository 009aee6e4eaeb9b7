//! The vision-token reducers by name: the one definition that the runtime (`tokenscale-model`,
//! which implements them as plug-ins) and the analytic cost model (`tokenscale-cost`, which
//! counts what they leave) both read. It lives here because this is the lowest crate both
//! depend on, and the cost crate must not depend on the model crate.

use thiserror::Error;

/// FastV's K when `fastv` is given without one.
pub const FASTV_DEFAULT_LAYER: usize = 2;

/// Reducer names, for messages.
pub const REDUCERS: &[&str] = &["pool", "uniform", "visionzip", "fastv"];

/// A reducer name that does not parse.
#[derive(Debug, Error)]
#[error("{0}")]
pub struct UnknownReducer(String);

/// Which reducer brings an image's vision tokens to the budget N (see `crates/model/src/reducers`).
/// pool/uniform/visionzip reduce before the projector; FastV prunes inside the LLM after layer K.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reducer {
    /// Average-pool the vision-token grid down to N before the projector.
    Pool,
    /// Keep N vision tokens sampled uniformly over the grid, before the projector.
    Uniform,
    /// VisionZip: keep the most-attended tokens (plus merged context) before the projector.
    VisionZip,
    /// Prune after LLM layer `layer` (K ≥ 1).
    FastV {
        /// The LLM layer K after which vision tokens are pruned (1-based, K ≥ 1).
        layer: usize,
    },
}

impl Reducer {
    /// `pool`, `uniform`, `visionzip`, `fastv` or `fastv:K` (any case, surrounding spaces ignored).
    pub fn parse(name: &str) -> Result<Self, UnknownReducer> {
        let lower = name.trim().to_ascii_lowercase();
        Ok(match lower.as_str() {
            "pool" => Self::Pool,
            "uniform" => Self::Uniform,
            "visionzip" => Self::VisionZip,
            "fastv" => Self::FastV { layer: FASTV_DEFAULT_LAYER },
            other => match other.strip_prefix("fastv:").map(str::parse::<usize>) {
                Some(Ok(layer)) if layer >= 1 => Self::FastV { layer },
                Some(_) => {
                    return Err(UnknownReducer(format!(
                        "reducer `{name}`: FastV's layer K must be an integer ≥ 1 (e.g. fastv:2)"
                    )))
                }
                None => {
                    return Err(UnknownReducer(format!(
                    "unknown reducer `{name}` (known: pool, uniform, visionzip, fastv, fastv:K)"
                )))
                }
            },
        })
    }

    /// The name [`Self::parse`] reads back (`fastv:K` with its layer).
    pub fn name(&self) -> String {
        match self {
            Self::Pool => "pool".into(),
            Self::Uniform => "uniform".into(),
            Self::VisionZip => "visionzip".into(),
            Self::FastV { layer } => format!("fastv:{layer}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for r in [Reducer::Pool, Reducer::Uniform, Reducer::VisionZip, Reducer::FastV { layer: 3 }]
        {
            assert_eq!(Reducer::parse(&r.name()).unwrap(), r);
        }
        assert_eq!(
            Reducer::parse(" FastV ").unwrap(),
            Reducer::FastV { layer: FASTV_DEFAULT_LAYER }
        );
        assert!(Reducer::parse("fastv:0").unwrap_err().to_string().contains("≥ 1"));
        assert!(Reducer::parse("zip").unwrap_err().to_string().contains("unknown reducer `zip`"));
    }
}
