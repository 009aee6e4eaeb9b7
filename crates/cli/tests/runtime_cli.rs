//! The runtime subcommands end to end through the binary: demo, run, forward, inspect, and the
//! one-line errors for bad input (no panic, non-zero exit, no partial output file).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tokenscale_model::candle_core::{safetensors, DType, Device, Tensor};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../model/tests/fixtures")
}

fn tokenscale(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tokenscale")).args(args).output().expect("binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Asserts a clean failure: exit code 1, one `error:` line naming `needle`, no panic.
fn assert_one_line_error(o: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(err.starts_with("error: ") && err.contains(needle), "expected {needle:?} in: {err}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn edit_config(dir: &Path, key: &str, value: serde_json::Value) {
    let path = dir.join("config.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    json[key] = value;
    std::fs::write(&path, serde_json::to_string(&json).unwrap()).unwrap();
}

/// Largest |a − b| after checking the shapes agree.
fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shape");
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Every `step`-th index along `dim` (numpy's `::step`).
fn every(t: &Tensor, dim: usize, step: u32) -> Tensor {
    let idx = Tensor::arange_step(0u32, t.dim(dim).unwrap() as u32, step, t.device()).unwrap();
    t.index_select(&idx, dim).unwrap()
}

#[test]
fn demo_runs_on_the_embedded_model() {
    let tmp = tempfile::tempdir().unwrap();
    let png = tmp.path().join("picture.png");
    let o = tokenscale(&["demo", "--seed", "7", "--save-image", png.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = stdout(&o);
    for needle in [
        "picture: seed 7, 64x64 px",
        "| question | category | truth | n = 1 | n = 64 |",
        "right answers: n = 1: ",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in {out}");
    }
    assert_eq!(tokenscale_model::image::open(&png).unwrap().width(), 64);
    let again = tokenscale(&["demo", "--seed", "7"]);
    let table =
        |s: &str| s.lines().filter(|l| l.starts_with('|')).map(str::to_string).collect::<Vec<_>>();
    assert_eq!(
        table(&out),
        table(&stdout(&again)),
        "the same seed gives the same picture and answers"
    );
}

#[test]
fn forward_writes_what_transformers_computes() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("fwd.safetensors");
    let llava = fixtures().join("llava");
    let image = fixtures().join("preprocess/coffee.png");
    let o = tokenscale(&[
        "forward",
        "--model",
        llava.to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
        "--raw-prompt",
        "--prompt",
        "USER: <image>\nWhat is shown in this image? ASSISTANT:",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = safetensors::load(&out, &Device::Cpu).unwrap();
    let want = safetensors::load(llava.join("expected.safetensors"), &Device::Cpu).unwrap();
    let ids =
        |t: &tokenscale_model::Tensor| t.to_dtype(DType::I64).unwrap().to_vec1::<i64>().unwrap();
    assert_eq!(ids(&got["input_ids"]), ids(&want["input_ids"]));
    for key in ["pixel_values", "logits", "hidden_states.0", "hidden_states.2"] {
        assert_eq!(got[key].dtype(), DType::F32, "{key}");
        let diff = (&got[key] - &want[key])
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff <= 1e-4, "{key}: {diff}");
    }
    assert!(!got.contains_key("hidden_states.3"));
}

#[test]
fn run_streams_an_answer_for_a_text_model() {
    let dir = fixtures().join("qwen2");
    let o = tokenscale(&[
        "run",
        "--model",
        dir.to_str().unwrap(),
        "--prompt",
        "The quick brown fox",
        "--max-new-tokens",
        "5",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!stdout(&o).trim().is_empty());
}

#[test]
fn sampling_is_reproducible_with_a_seed() {
    let dir = fixtures().join("llama_gqa");
    let args = [
        "run",
        "--model",
        dir.to_str().unwrap(),
        "--prompt",
        "The cat",
        "--max-new-tokens",
        "12",
        "--temperature",
        "1.5",
        "--top-p",
        "0.95",
    ];
    let run = |seed: &str| {
        let mut a = args.to_vec();
        a.extend(["--seed", seed]);
        stdout(&tokenscale(&a))
    };
    assert_eq!(run("7"), run("7"));
    assert_ne!(run("7"), run("8"), "different seeds should (almost surely) differ");
}

#[test]
fn inspect_counts_every_parameter() {
    let dir = fixtures().join("llava");
    let o = tokenscale(&["inspect", dir.to_str().unwrap(), "--json"]);
    assert!(o.status.success());
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let tensors = safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let total: usize = tensors.values().map(|t| t.elem_count()).sum();
    assert_eq!(report["parameters"].as_u64().unwrap() as usize, total);
    assert_eq!(report["tensors"].as_u64().unwrap() as usize, tensors.len());
    assert_eq!(report["architecture"], "LlavaForConditionalGeneration");
    assert!(report["components"]["vision_tower"].as_u64().unwrap() > 0);

    let dir = fixtures().join("imgque");
    let o = tokenscale(&["inspect", dir.to_str().unwrap(), "--json"]);
    assert!(o.status.success());
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["architecture"], "ImageMultiQueryCLIPLLMModel (HD)");
    let tensors = safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let count = |prefix: &str| {
        tensors
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, t)| t.elem_count())
            .sum::<usize>() as u64
    };
    for component in [
        "imgque_backbone.clip_model",
        "imgque_backbone.imgque_model",
        "llm_backbone",
        "fusion_backbone",
    ] {
        assert_eq!(
            report["components"][component].as_u64().unwrap(),
            count(component),
            "{component}"
        );
    }
}

#[test]
fn bad_inputs_give_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let llama = fixtures().join("llama_gqa");
    let run = |dir: &Path| {
        tokenscale(&[
            "run",
            "--model",
            dir.to_str().unwrap(),
            "--prompt",
            "hi",
            "--max-new-tokens",
            "2",
        ])
    };

    assert_one_line_error(&run(&tmp.path().join("nowhere")), "model folder not found");

    let unsupported = tmp.path().join("unsupported");
    copy_dir(&llama, &unsupported);
    edit_config(&unsupported, "model_type", "gpt2".into());
    assert_one_line_error(
        &run(&unsupported),
        "unsupported model_type `gpt2` (supported: clip_vision_model, clip, llama",
    );

    let missing = tmp.path().join("missing");
    copy_dir(&llama, &missing);
    edit_config(&missing, "num_hidden_layers", 3.into());
    assert_one_line_error(
        &run(&missing),
        "missing tensor `model.layers.2.self_attn.q_proj.weight`",
    );

    let shape = tmp.path().join("shape");
    copy_dir(&llama, &shape);
    edit_config(&shape, "intermediate_size", 256.into());
    assert_one_line_error(
        &run(&shape),
        "tensor `model.layers.0.mlp.gate_proj.weight` has shape [128, 64], expected [256, 64]",
    );

    let truncated = tmp.path().join("truncated");
    copy_dir(&llama, &truncated);
    let st = truncated.join("model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() / 2]).unwrap();
    assert_one_line_error(&run(&truncated), "truncated safetensors file");

    let no_field = tmp.path().join("nofield");
    copy_dir(&llama, &no_field);
    let path = no_field.join("config.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    json.as_object_mut().unwrap().insert("hidden_size".into(), "wide".into());
    std::fs::write(&path, json.to_string()).unwrap();
    assert_one_line_error(&run(&no_field), "config.json");

    let long = "the river ".repeat(600);
    let o = tokenscale(&[
        "run",
        "--model",
        llama.to_str().unwrap(),
        "--prompt",
        &long,
        "--max-new-tokens",
        "2",
    ]);
    assert_one_line_error(&o, "exceeds the context");
}

#[test]
fn corrupt_image_fails_without_writing_output() {
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("broken.png");
    let good = std::fs::read(fixtures().join("preprocess/coffee.png")).unwrap();
    std::fs::write(&image, &good[..good.len() / 3]).unwrap();
    let out = tmp.path().join("fwd.safetensors");
    let llava = fixtures().join("llava");
    let o = tokenscale(&[
        "forward",
        "--model",
        llava.to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
        "--prompt",
        "What?",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_one_line_error(&o, "broken.png");
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        1,
        "only the broken image should be there"
    );
}

#[test]
fn query_fused_model_runs_at_any_budget() {
    let dir = fixtures().join("imgque");
    let image = dir.join("small.png");
    let tmp = tempfile::tempdir().unwrap();
    for (n_l, n_s) in [("1", "1"), ("16", "4")] {
        let out = tmp.path().join(format!("fwd{n_l}.safetensors"));
        let o = tokenscale(&[
            "forward",
            "--model",
            dir.to_str().unwrap(),
            "--image",
            image.to_str().unwrap(),
            "--prompt",
            "What is this?",
            "--vision-tokens",
            n_l,
            "--short-tokens",
            n_s,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let got = safetensors::load(&out, &Device::Cpu).unwrap();
        let types_len = got["input_ids"].dim(0).unwrap();
        assert_eq!(got["logits"].dim(0).unwrap(), types_len);
        let trained = n_l == "16" && n_s == "4";
        assert_eq!(
            String::from_utf8_lossy(&o.stderr).contains("warning: this checkpoint was trained"),
            !trained
        );
    }
    let o = tokenscale(&[
        "run",
        "--model",
        dir.to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
        "--prompt",
        "What?",
        "--drop-query",
        "--template",
        "vicuna_v1.1",
        "--max-new-tokens",
        "4",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = tokenscale(&[
        "run",
        "--model",
        dir.to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
        "--prompt",
        "What?",
        "--template",
        "chatgpt",
    ]);
    assert_one_line_error(&o, "chatgpt");
    let o = tokenscale(&[
        "run",
        "--model",
        dir.to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
        "--prompt",
        "What?",
        "--vision-tokens",
        "17",
    ]);
    assert_one_line_error(&o, "n_l ≤ 16");
}

#[test]
fn multi_turn_gives_n_l_then_n_s_tokens() {
    let dir = fixtures().join("imgque");
    let image = dir.join("small.png");
    let o = tokenscale(&[
        "run",
        "--model",
        dir.to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
        "--prompt",
        "What is this?",
        "--prompt",
        "And the colour?",
        "--prompt",
        "Anything else?",
        "--max-new-tokens",
        "3",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = stdout(&o);
    for (turn, n, total) in [(1, 16, 16), (2, 4, 20), (3, 4, 24)] {
        assert!(
            out.contains(&format!("[turn {turn}: {n} vision tokens, {total} in the conversation]")),
            "{out}"
        );
    }
    let llava = fixtures().join("llava");
    let o = tokenscale(&[
        "run",
        "--model",
        llava.to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
        "--prompt",
        "a",
        "--prompt",
        "b",
    ]);
    assert_one_line_error(&o, "multi-turn");
}

/// `forward --chat`: a multi-turn record with a given answer, scored as the original code scores it
/// (tools/fixtures/original: the paper's model class in float64 on the same checkpoint and record).
#[test]
fn forward_chat_scores_a_record_as_the_original_code() {
    let model = fixtures().join("imgque");
    let original = fixtures().join("original");
    let record = original.join("30x20_n4_t3.json");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("fwd.safetensors");
    let o = tokenscale(&[
        "forward",
        "--model",
        model.to_str().unwrap(),
        "--chat",
        record.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = safetensors::load(&out, &Device::Cpu).unwrap();
    let want = safetensors::load(original.join("model.safetensors"), &Device::Cpu).unwrap();
    let ids =
        |t: &tokenscale_model::Tensor| t.to_dtype(DType::I64).unwrap().to_vec1::<i64>().unwrap();
    assert_eq!(ids(&got["input_ids"]), ids(&want["30x20_n4_t3.input_ids"]));
    let tail = &want["30x20_n4_t3.logits_tail"];
    let (t, n) = (got["logits"].dim(0).unwrap(), tail.dim(0).unwrap());
    let diff = max_diff(&got["logits"].narrow(0, t - n, n).unwrap(), tail);
    assert!(diff <= 1e-4, "logits max |Δ| {diff}");

    // `run --chat` answers the record's last question; a record ending with an answer has none.
    let o = tokenscale(&[
        "run",
        "--model",
        model.to_str().unwrap(),
        "--chat",
        record.to_str().unwrap(),
        "--max-new-tokens",
        "3",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let answered = tmp.path().join("answered.json");
    std::fs::write(&answered, r#"{"image": null, "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}"#).unwrap();
    let o = tokenscale(&[
        "run",
        "--model",
        model.to_str().unwrap(),
        "--chat",
        answered.to_str().unwrap(),
    ]);
    assert_one_line_error(&o, "ends with an assistant answer");
    let o = tokenscale(&[
        "forward",
        "--model",
        model.to_str().unwrap(),
        "--chat",
        record.to_str().unwrap(),
        "--prompt",
        "x",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "--chat and --prompt conflict");
}

/// `forward` on the query-fused model also writes its intermediates: the views (`pixel_values`), the
/// vision tokens per view (`crop_tokens`), the query decoder's output rows (`query_states`) and the
/// fused input embeddings (`fused_embeds`). Compared with tools/fixtures/imgque (PyTorch, case
/// "one") where the references hold the same quantity, and with the original code's HD views
/// (tools/fixtures/original geometry) for the record's image.
#[test]
fn forward_writes_the_query_fused_intermediates() {
    let model = fixtures().join("imgque");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("fwd.safetensors");
    let image = fixtures().join("preprocess/coffee.png");
    let o = tokenscale(&[
        "forward",
        "--model",
        model.to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
        "--prompt",
        "What is on the table?",
        "--vision-tokens",
        "8",
        "--short-tokens",
        "4",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = safetensors::load(&out, &Device::Cpu).unwrap();
    let want = safetensors::load(model.join("expected.safetensors"), &Device::Cpu).unwrap();
    let ints = |t: &Tensor| t.to_dtype(DType::I64).unwrap().to_vec1::<i64>().unwrap();
    assert_eq!(ints(&got["input_ids"]), ints(&want["one.input_ids"]));
    assert_eq!(got["pixel_values"].dims(), &[5, 3, 336, 336], "global view + 2x2 crops");
    let tol = 1e-4;
    let d = max_diff(&got["crop_tokens"], &want["one.crop_tokens"]);
    assert!(d <= tol, "crop_tokens max |Δ| {d}");
    // The reference holds the decoder's states at every query position; the LLM gets its QED|EOS rows.
    let picks: Vec<u32> = ints(&want["one.que_input_tps"])
        .iter()
        .enumerate()
        .filter(|(_, &t)| t & (256 | 128) != 0)
        .map(|(i, _)| i as u32)
        .collect();
    assert_eq!(picks.len(), 8, "n_l rows for one question");
    let rows = want["one.imgque_hidden"]
        .index_select(&Tensor::new(picks, &Device::Cpu).unwrap(), 0)
        .unwrap();
    let d = max_diff(&got["query_states"], &rows);
    assert!(d <= tol, "query_states max |Δ| {d}");
    let d = max_diff(&got["fused_embeds"], &want["one.fused_embeds"]);
    assert!(d <= tol, "fused_embeds max |Δ| {d}");
    assert_eq!(
        max_diff(&got["fused_embeds"], &got["hidden_states.0"]),
        0.0,
        "the LLM's input is the fused embeddings"
    );

    // A three-turn record (n_l + n_s QED rows) on a 30x20 image: its views against the original's.
    let original = fixtures().join("original");
    let o = tokenscale(&[
        "forward",
        "--model",
        model.to_str().unwrap(),
        "--chat",
        original.join("30x20_n4_t3.json").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = safetensors::load(&out, &Device::Cpu).unwrap();
    let geometry = safetensors::load(original.join("geometry.safetensors"), &Device::Cpu).unwrap();
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(original.join("geometry.json")).unwrap())
            .unwrap();
    let case = cases["cases"].as_array().unwrap().iter().find(|c| c["name"] == "30x20_n4").unwrap();
    let k = case["views"].as_u64().unwrap() as usize;
    let views = &got["pixel_values"];
    assert_eq!(views.dims(), &[k, 3, 336, 336], "the original's view count");
    let global = every(&every(&views.get(0).unwrap(), 1, 16), 2, 16);
    let d = max_diff(&global, &geometry["30x20.global_s16"]);
    assert!(d <= 5e-6, "global view max |Δ| {d}");
    let crop = every(&every(&views.get(1).unwrap(), 1, 24), 2, 24);
    assert_eq!(max_diff(&crop, &geometry["30x20_n4.crop1_s24"]), 0.0, "local crop");
    assert_eq!(got["crop_tokens"].dims(), &[k, 145, 64]);
    assert_eq!(
        got["query_states"].dims(),
        &[16 + 4, 64],
        "n_l = 16 for the first question, n_s = 4 for the second"
    );
    let t = got["input_ids"].dim(0).unwrap();
    assert_eq!(got["fused_embeds"].dims(), &[t, 64]);
}
