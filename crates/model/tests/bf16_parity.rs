//! bf16 end to end: the fixtures' weights stored in bf16, loaded with the `auto` dtype policy
//! (which must pick bf16) and run in bf16, against PyTorch's f32 computation on the same bf16
//! weights. The bound is PyTorch's own bf16 error on the same model and input, measured by
//! tools/fixtures/make_bf16_references.py: ours may be at most 2× as far from the reference,
//! both in the largest and in the mean absolute logit error.

mod common;

use std::collections::HashMap;
use std::path::Path;
use tokenscale_model::{Forward, ForwardOptions};

use candle_core::{DType, Device, Tensor};
use common::{fixture, ids};
use tokenscale_model::dtype::DtypePolicy;
use tokenscale_model::preprocess::load_image;
use tokenscale_model::runtime::{Runtime, VisionBudget};

/// Copies the folder `from` into `to` (which exists), subfolders included, except the fixture's
/// weights and references.
fn copy_config_files(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            std::fs::create_dir(to.join(&file)).unwrap();
            copy_config_files(&path, &to.join(&file));
        } else if file != "model.safetensors" && file != "expected.safetensors" {
            std::fs::copy(&path, to.join(&file)).unwrap();
        }
    }
}

/// A copy of the fixture folder `name` with every floating-point tensor stored in bf16.
fn bf16_copy(name: &str, dir: &Path) {
    let source = fixture(name);
    copy_config_files(&source, dir);
    let tensors =
        candle_core::safetensors::load(source.join("model.safetensors"), &Device::Cpu).unwrap();
    let rounded: HashMap<String, Tensor> = tensors
        .into_iter()
        .map(|(k, t)| {
            let t = if t.dtype() == DType::F32 { t.to_dtype(DType::BF16).unwrap() } else { t };
            (k, t)
        })
        .collect();
    candle_core::safetensors::save(&rounded, dir.join("model.safetensors")).unwrap();
}

fn scalar(t: &Tensor) -> f32 {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0]
}

/// (max, mean) absolute difference.
fn errors(got: &Tensor, want: &Tensor) -> (f32, f32) {
    let d =
        (got.to_dtype(DType::F32).unwrap() - want).unwrap().abs().unwrap().flatten_all().unwrap();
    (d.max(0).unwrap().to_scalar::<f32>().unwrap(), d.mean(0).unwrap().to_scalar::<f32>().unwrap())
}

fn check(name: &str, logits: &Tensor, reference: &HashMap<String, Tensor>) {
    let (max, mean) = errors(logits, &reference["logits_reference"]);
    let (torch_max, torch_mean) =
        (scalar(&reference["torch_bf16_max_error"]), scalar(&reference["torch_bf16_mean_error"]));
    eprintln!("{name}: ours max {max:.4e} mean {mean:.4e}; PyTorch bf16 max {torch_max:.4e} mean {torch_mean:.4e}");
    assert!(max <= 2.0 * torch_max, "{name}: max |err| {max} > 2 × PyTorch's {torch_max}");
    assert!(mean <= 2.0 * torch_mean, "{name}: mean |err| {mean} > 2 × PyTorch's {torch_mean}");
}

fn reference(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(
        fixture("bf16").join(format!("{name}.safetensors")),
        &Device::Cpu,
    )
    .unwrap()
}

fn open_bf16(name: &str, dir: &Path) -> Runtime {
    bf16_copy(name, dir);
    let loaded = Runtime::open(dir, DtypePolicy::Auto, &Device::Cpu).unwrap();
    assert_eq!(
        loaded.dtype.dtype,
        DType::BF16,
        "auto picks the storage dtype: {}",
        loaded.dtype.reason
    );
    assert_eq!(loaded.runtime.llm().dtype(), DType::BF16);
    loaded.runtime
}

#[test]
fn llama_in_bf16_is_within_twice_pytorchs_bf16_error() {
    let want = reference("llama_gqa");
    let dir = tempfile::tempdir().unwrap();
    let runtime = open_bf16("llama_gqa", dir.path());
    let input_ids = Tensor::new(ids(&want["input_ids"]).as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let llm = runtime.llm();
    let out = llm
        .forward_ids(&Forward::INFERENCE, &input_ids, &mut llm.new_cache(), ForwardOptions::ALL)
        .unwrap();
    check("llama_gqa", &out.logits.squeeze(0).unwrap(), &want);
}

#[test]
fn llava_in_bf16_is_within_twice_pytorchs_bf16_error() {
    let want = reference("llava");
    let dir = tempfile::tempdir().unwrap();
    let runtime = open_bf16("llava", dir.path());
    let image = load_image(&fixture("preprocess").join("coffee.png")).unwrap();
    let prompt = "USER: <image>\nWhat is shown in this image? ASSISTANT:";
    let prepared = runtime
        .prepare(&Forward::INFERENCE, Some(&image), prompt, true, &VisionBudget::default())
        .unwrap();
    assert_eq!(prepared.input_ids, ids(&want["input_ids"]), "input ids");
    let logits = runtime
        .forward(&Forward::INFERENCE, &prepared, ForwardOptions::ALL)
        .unwrap()
        .logits
        .squeeze(0)
        .unwrap();
    let tail = want["logits_reference"].dim(0).unwrap();
    let t = logits.dim(0).unwrap();
    check("llava", &logits.narrow(0, t - tail, tail).unwrap(), &want);
}

#[test]
fn imgque_in_bf16_is_within_twice_pytorchs_bf16_error() {
    use tokenscale_model::chat::Conversation;
    use tokenscale_model::imgque_pipeline::ImgQuePipeline;
    let want = reference("imgque");
    let dir = tempfile::tempdir().unwrap();
    bf16_copy("imgque", dir.path());
    let loaded = Runtime::open(dir.path(), DtypePolicy::Auto, &Device::Cpu).unwrap();
    assert_eq!(
        loaded.dtype.dtype,
        DType::BF16,
        "auto picks the storage dtype: {}",
        loaded.dtype.reason
    );
    let pipe = ImgQuePipeline::load(dir.path(), DType::BF16, &Device::Cpu).unwrap();
    let cases =
        tokenscale_model::config::read_json_value(&fixture("imgque").join("cases.json")).unwrap();
    let case = &cases["cases"]["one"];
    let image = load_image(&fixture("preprocess").join("coffee.png")).unwrap();
    let conversation = Conversation::new()
        .with_system(case["system_message"].as_str().unwrap())
        .user(case["messages"][0]["content"].as_str().unwrap());
    let crop_tokens = pipe.encode_image(&Forward::INFERENCE, &image).unwrap();
    let inputs = pipe.embeddings(&Forward::INFERENCE, &crop_tokens, &conversation, 8, 4).unwrap();
    assert_eq!(inputs.record.llm.input_ids, ids(&want["input_ids"]), "input ids");
    let llm = &pipe.model.llm;
    let logits = llm
        .forward_embeds(
            &Forward::INFERENCE,
            &inputs.embeds,
            &mut llm.new_cache(),
            ForwardOptions::ALL,
        )
        .unwrap()
        .logits
        .squeeze(0)
        .unwrap();
    let tail = want["logits_reference"].dim(0).unwrap();
    let t = logits.dim(0).unwrap();
    check("imgque", &logits.narrow(0, t - tail, tail).unwrap(), &want);
}
