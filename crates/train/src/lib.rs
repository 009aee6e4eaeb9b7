//! Training of the tiny query-fused VLM (work in progress, see issue 7).
