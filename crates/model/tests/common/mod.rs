#![allow(dead_code)]
use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

pub fn expected(name: &str) -> HashMap<String, Tensor> {
    let path = fixture(name).join("expected.safetensors");
    candle_core::safetensors::load(&path, &Device::Cpu).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn ids(t: &Tensor) -> Vec<u32> {
    t.to_dtype(DType::I64).unwrap().flatten_all().unwrap().to_vec1::<i64>().unwrap().into_iter().map(|v| v as u32).collect()
}

/// Largest absolute difference, after checking the shapes agree.
pub fn max_abs_diff(got: &Tensor, want: &Tensor, what: &str) -> f32 {
    let got = got.to_dtype(DType::F32).unwrap();
    let want = want.to_dtype(DType::F32).unwrap();
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    (got - want).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

pub fn assert_close(got: &Tensor, want: &Tensor, tol: f32, what: &str) {
    let d = max_abs_diff(got, want, what);
    assert!(d <= tol, "{what}: max abs diff {d} > {tol}");
}
