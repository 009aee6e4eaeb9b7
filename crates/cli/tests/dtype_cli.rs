//! The dtype policy through the binary: a bf16 checkpoint runs in bf16 under `--dtype auto`
//! (the default), on the fast kernels and on the portable path (`TOKENSCALE_KERNELS=portable`,
//! what a CPU without AVX-512/AMX takes), within 2× PyTorch's own bf16 error of the f32
//! reference (crates/model/tests/fixtures/bf16, tools/fixtures/make_bf16_references.py);
//! `--dtype f32` on the same checkpoint is the reference itself; `--dtype f16` also runs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tokenscale_model::candle_core::{safetensors, DType, Device, Tensor};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../model/tests/fixtures")
}

/// The llava fixture with its weights stored in bf16.
fn bf16_llava(dir: &Path) {
    let source = fixtures().join("llava");
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name != "model.safetensors" && name != "expected.safetensors" {
            std::fs::copy(&path, dir.join(&name)).unwrap();
        }
    }
    let tensors = safetensors::load(source.join("model.safetensors"), &Device::Cpu).unwrap();
    let rounded: HashMap<String, Tensor> =
        tensors.into_iter().map(|(k, t)| (k, t.to_dtype(DType::BF16).unwrap())).collect();
    safetensors::save(&rounded, dir.join("model.safetensors")).unwrap();
}

fn forward(model: &Path, out: &Path, dtype: &str, portable: bool) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tokenscale"));
    command
        .args(["forward", "--model"])
        .arg(model)
        .args(["--image"])
        .arg(fixtures().join("preprocess/coffee.png"));
    command
        .args([
            "--raw-prompt",
            "--prompt",
            "USER: <image>\nWhat is shown in this image? ASSISTANT:",
            "--dtype",
            dtype,
            "--out",
        ])
        .arg(out);
    if portable {
        command.env("TOKENSCALE_KERNELS", "portable");
    }
    command.output().expect("binary runs")
}

/// (max, mean) |logits tail − reference|.
fn errors(out: &Path, reference: &HashMap<String, Tensor>) -> (f32, f32) {
    let got = safetensors::load(out, &Device::Cpu).unwrap();
    let logits = &got["logits"];
    let want = &reference["logits_reference"];
    let (t, tail) = (logits.dim(0).unwrap(), want.dim(0).unwrap());
    let d = (logits.narrow(0, t - tail, tail).unwrap() - want)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap();
    (d.max(0).unwrap().to_scalar::<f32>().unwrap(), d.mean(0).unwrap().to_scalar::<f32>().unwrap())
}

fn scalar(t: &Tensor) -> f32 {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0]
}

#[test]
fn bf16_checkpoint_runs_in_bf16_on_fast_and_portable_kernels() {
    let reference =
        safetensors::load(fixtures().join("bf16/llava.safetensors"), &Device::Cpu).unwrap();
    let (torch_max, torch_mean) =
        (scalar(&reference["torch_bf16_max_error"]), scalar(&reference["torch_bf16_mean_error"]));
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("llava-bf16");
    std::fs::create_dir_all(&model).unwrap();
    bf16_llava(&model);
    for portable in [false, true] {
        let out = dir.path().join(format!("fwd-{portable}.safetensors"));
        let o = forward(&model, &out, "auto", portable);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "portable={portable}: {err}");
        if portable {
            assert!(err.contains("portable path"), "the portable path is announced: {err}");
        }
        let written = safetensors::load(&out, &Device::Cpu).unwrap();
        assert_eq!(
            written["logits"].dtype(),
            DType::F32,
            "forward writes f32 whatever the compute dtype"
        );
        let (max, mean) = errors(&out, &reference);
        assert!(
            max <= 2.0 * torch_max && mean <= 2.0 * torch_mean,
            "portable={portable}: max {max} mean {mean} vs PyTorch {torch_max} {torch_mean}"
        );
    }
    // f32 on the same bf16 weights is the reference computation.
    let out = dir.path().join("fwd-f32.safetensors");
    assert!(forward(&model, &out, "f32", false).status.success());
    let (max, _) = errors(&out, &reference);
    assert!(max <= 1e-4, "f32 on bf16 weights vs PyTorch's f32: {max}");
    // f16 runs too (the split-AMX or portable kernels), closer than bf16 to the reference.
    let out = dir.path().join("fwd-f16.safetensors");
    let o = forward(&model, &out, "f16", false);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (max, _) = errors(&out, &reference);
    assert!(max <= torch_max, "f16: {max}");
}

#[test]
fn inspect_reports_the_auto_dtype_and_memory() {
    let dir = tempfile::tempdir().unwrap();
    bf16_llava(dir.path());
    let o = Command::new(env!("CARGO_BIN_EXE_tokenscale"))
        .arg("inspect")
        .arg(dir.path())
        .args(["--json", "--load"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["compute_dtype"], "bf16");
    let params = report["parameters"].as_u64().unwrap();
    assert_eq!(
        report["parameter_bytes"].as_u64().unwrap(),
        2 * params,
        "bf16: two bytes a parameter"
    );
    assert!(report["load_s"].as_f64().unwrap() > 0.0);
    assert!(
        report["peak_rss_bytes"].as_u64().unwrap() > report["parameter_bytes"].as_u64().unwrap()
    );
}

/// Every LLaVA reducer and the query-fused model run in bf16. The continuous ones (pooling,
/// uniform selection, the query decoder) stay close to their f32 run; VisionZip and FastV pick
/// tokens by ranking attention, and bf16 rounding can change a near-tie in the ranking (so can
/// PyTorch's bf16), so for them only finite logits of the right shape are required.
#[test]
fn every_reducer_and_the_query_fused_model_run_in_bf16() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("llava-bf16");
    std::fs::create_dir_all(&model).unwrap();
    bf16_llava(&model);
    let image = fixtures().join("preprocess/coffee.png");
    let run = |model: &Path, extra: &[&str], dtype: &str, out: &Path| {
        let o = Command::new(env!("CARGO_BIN_EXE_tokenscale"))
            .args(["forward", "--model"])
            .arg(model)
            .arg("--image")
            .arg(&image)
            .args(["--prompt", "What is shown?", "--dtype", dtype, "--out"])
            .arg(out)
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{extra:?} {dtype}: {}", String::from_utf8_lossy(&o.stderr));
        safetensors::load(out, &Device::Cpu).unwrap()["logits"].clone()
    };
    let cases: Vec<(PathBuf, Vec<&str>)> = vec![
        (model.clone(), vec!["--vision-tokens", "16", "--reducer", "pool"]),
        (model.clone(), vec!["--vision-tokens", "10", "--reducer", "pool"]),
        (model.clone(), vec!["--vision-tokens", "16", "--reducer", "uniform"]),
        (model.clone(), vec!["--vision-tokens", "64", "--reducer", "visionzip"]),
        (model.clone(), vec!["--vision-tokens", "16", "--reducer", "fastv"]),
        (fixtures().join("imgque"), vec!["--vision-tokens", "8"]),
    ];
    for (i, (model, extra)) in cases.iter().enumerate() {
        let half = run(model, extra, "bf16", &dir.path().join(format!("b{i}.safetensors")));
        let full = run(model, extra, "f32", &dir.path().join(format!("f{i}.safetensors")));
        assert_eq!(half.dims(), full.dims(), "{extra:?}");
        let d = (half - &full).unwrap().abs().unwrap().flatten_all().unwrap();
        let (max, mean) = (
            d.max(0).unwrap().to_scalar::<f32>().unwrap(),
            d.mean(0).unwrap().to_scalar::<f32>().unwrap(),
        );
        let scale =
            full.abs().unwrap().flatten_all().unwrap().mean(0).unwrap().to_scalar::<f32>().unwrap();
        assert!(max.is_finite(), "{extra:?}: non-finite logits");
        let ranks_tokens =
            extra.iter().any(|a| a.starts_with("visionzip") || a.starts_with("fastv"));
        if !ranks_tokens {
            assert!(
                mean <= 0.05 * scale.max(1e-3),
                "{extra:?}: bf16 vs f32 max {max} mean {mean} (mean |logit| {scale})"
            );
        }
    }
}
