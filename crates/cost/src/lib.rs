//! tokenscale-cost
