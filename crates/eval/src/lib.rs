//! tokenscale-eval
