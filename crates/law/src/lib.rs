//! tokenscale-law
