//! tokenscale-model
