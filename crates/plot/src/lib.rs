//! tokenscale-plot
