//! `tokenscale ckpt update` / `ckpt swap-llm` on the tiny imgque fixture, run through the binary.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

use tokenscale_model::candle_core::safetensors::{load, save};
use tokenscale_model::{DType, Device, Tensor};

const BIN: &str = env!("CARGO_BIN_EXE_tokenscale");
const OLD: &str = "imgque_backbone.clip_model.vision_model.vision_model.";
const NEW: &str = "imgque_backbone.clip_model.vision_model.";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../model/tests/fixtures")
}

fn tokenscale(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run tokenscale")
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "failed:\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn err(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected a failure, got:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(stderr.lines().count(), 1, "one-line error expected: {stderr}");
    stderr
}

fn tensors(path: &Path) -> HashMap<String, Tensor> {
    load(path, &Device::Cpu).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn same(a: &Tensor, b: &Tensor) -> bool {
    a.dtype() == b.dtype()
        && a.dims() == b.dims()
        && a.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
            == b.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn copy_dir(src: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        if e.path().is_dir() {
            copy_dir(&e.path(), &dest.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), dest.join(e.file_name())).unwrap();
        }
    }
}

fn list(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    v.sort();
    v
}

/// A training checkpoint in the old layout: vision keys under `...vision_model.vision_model.`,
/// plus the CLIP `post_layernorm` the HD model replaced; `shards` splits the weights in two.
fn old_checkpoint(dir: &Path, dtype: DType, shards: bool, perturb: f32) {
    let fx = fixtures().join("imgque");
    std::fs::create_dir_all(dir).unwrap();
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"]
    {
        std::fs::copy(fx.join(f), dir.join(f)).unwrap();
    }
    copy_dir(&fx.join("clip"), &dir.join("clip"));
    std::fs::write(dir.join("optimizer.pt"), b"not a tensor file").unwrap();
    let mut out: HashMap<String, Tensor> = HashMap::new();
    for (k, t) in tensors(&fx.join("model.safetensors")) {
        let t = (t + perturb as f64).unwrap().to_dtype(dtype).unwrap();
        let k = match k.strip_prefix(NEW) {
            Some(rest) => format!("{OLD}{rest}"),
            None => k,
        };
        out.insert(k, t);
    }
    let h = 64;
    out.insert(
        format!("{OLD}post_layernorm.weight"),
        Tensor::ones(h, dtype, &Device::Cpu).unwrap(),
    );
    out.insert(format!("{OLD}post_layernorm.bias"), Tensor::zeros(h, dtype, &Device::Cpu).unwrap());
    if !shards {
        save(&out, dir.join("model.safetensors")).unwrap();
        return;
    }
    let mut a = HashMap::new();
    let mut b = HashMap::new();
    let mut map = serde_json::Map::new();
    for (k, t) in out {
        let (part, name) = if k.starts_with("llm_backbone.") {
            (&mut b, "model-00002-of-00002.safetensors")
        } else {
            (&mut a, "model-00001-of-00002.safetensors")
        };
        map.insert(k.clone(), serde_json::json!(name));
        part.insert(k, t);
    }
    save(&a, dir.join("model-00001-of-00002.safetensors")).unwrap();
    save(&b, dir.join("model-00002-of-00002.safetensors")).unwrap();
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
}

/// ROOT with checkpoint-5 (different weights) and checkpoint-12 (the fixture, sharded):
/// 12 must win although "5" > "12" as text.
fn training_root(root: &Path, dtype: DType) {
    old_checkpoint(&root.join("checkpoint-5"), dtype, false, 0.5);
    old_checkpoint(&root.join("checkpoint-12"), dtype, true, 0.0);
    std::fs::create_dir_all(root.join("runs")).unwrap();
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn update_writes_the_fixture_checkpoint_and_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("train");
    training_root(&root, DType::F32);
    let before = list(&root);
    let stdout = ok(&tokenscale(&["ckpt", "update", root.to_str().unwrap()]));
    assert!(stdout.contains("every tensor equals its source"), "{stdout}");
    assert!(stdout.contains("loads as a query-fused model"), "{stdout}");

    let fx = fixtures().join("imgque");
    let expected = tensors(&fx.join("model.safetensors"));
    let got = tensors(&root.join("model.safetensors"));
    assert_eq!(got.len(), expected.len());
    for (k, t) in &expected {
        let g = got.get(k).unwrap_or_else(|| panic!("missing {k}"));
        assert!(same(g, t), "{k} differs");
    }
    assert!(!got
        .keys()
        .any(|k| k.contains("post_layernorm") || k.contains("vision_model.vision_model.")));

    let config = read_json(&root.join("config.json"));
    assert_eq!(config["imgque_config"]["text_config"]["max_position_embeddings"], 1024);
    let mut fx_config = read_json(&fx.join("config.json"));
    fx_config["imgque_config"]["text_config"]["max_position_embeddings"] = serde_json::json!(1024);
    assert_eq!(config, fx_config);
    for f in [
        "tokenizer.json",
        "tokenizer_config.json",
        "preprocessor_config.json",
        "clip/tokenizer.json",
    ] {
        assert_eq!(std::fs::read(root.join(f)).unwrap(), std::fs::read(fx.join(f)).unwrap(), "{f}");
    }
    assert!(!root.join("optimizer.pt").exists());
    // Only the checkpoint files were added; no temporary folder is left beside ROOT.
    let mut after = list(&root);
    after.retain(|f| !before.contains(f));
    assert_eq!(
        after,
        [
            "clip",
            "config.json",
            "model.safetensors",
            "preprocessor_config.json",
            "tokenizer.json",
            "tokenizer_config.json"
        ]
    );
    assert_eq!(list(tmp.path()), ["train"]);

    // The updated folder runs.
    let logits = tmp.path().join("fwd.safetensors");
    ok(&tokenscale(&[
        "forward",
        "--model",
        root.to_str().unwrap(),
        "--image",
        fx.join("small.png").to_str().unwrap(),
        "--prompt",
        "What is this?",
        "--out",
        logits.to_str().unwrap(),
    ]));
    assert!(logits.is_file());

    // A second run refuses without --overwrite, and works with it.
    let e = err(&tokenscale(&["ckpt", "update", root.to_str().unwrap()]));
    assert!(e.contains("config.json") && e.contains("`overwrite`"), "{e}");
    ok(&tokenscale(&["ckpt", "update", root.to_str().unwrap(), "--overwrite"]));
    assert_eq!(tensors(&root.join("model.safetensors")).len(), expected.len());
}

#[test]
fn update_keeps_bf16_and_writes_to_out() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("train");
    training_root(&root, DType::BF16);
    let out = tmp.path().join("fresh");
    ok(&tokenscale(&["ckpt", "update", root.to_str().unwrap(), "--out", out.to_str().unwrap()]));
    assert!(!root.join("config.json").exists());
    let got = tensors(&out.join("model.safetensors"));
    for (k, t) in tensors(&fixtures().join("imgque/model.safetensors")) {
        let g = &got[&k];
        assert_eq!(g.dtype(), DType::BF16, "{k}");
        assert!(same(g, &t.to_dtype(DType::BF16).unwrap()), "{k} differs");
    }
}

#[test]
fn update_dry_run_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("train");
    training_root(&root, DType::F32);
    let before = list(&root);
    let stdout = ok(&tokenscale(&["ckpt", "update", root.to_str().unwrap(), "--dry-run"]));
    assert!(stdout.contains("checkpoint-12"), "{stdout}");
    assert!(stdout.contains(&format!("{OLD}post_layernorm.weight")), "{stdout}");
    assert!(stdout.contains(&format!("{OLD}token_LF -> {NEW}token_LF")), "{stdout}");
    assert!(stdout.contains("max_position_embeddings"), "{stdout}");
    assert!(stdout.contains("nothing written"), "{stdout}");
    assert_eq!(list(&root), before);
    assert_eq!(list(tmp.path()), ["train"]);
}

#[test]
fn update_errors_name_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let e = err(&tokenscale(&["ckpt", "update", missing.to_str().unwrap()]));
    assert!(e.contains("nope") && e.contains("not found"), "{e}");

    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(empty.join("checkpoint-x")).unwrap();
    let e = err(&tokenscale(&["ckpt", "update", empty.to_str().unwrap()]));
    assert!(e.contains("no checkpoint-N"), "{e}");
    assert_eq!(list(&empty), ["checkpoint-x"]);
}

fn swap(out: &Path, llm: &Path) -> Output {
    let ckpt = fixtures().join("imgque");
    tokenscale(&[
        "ckpt",
        "swap-llm",
        "--ckpt",
        ckpt.to_str().unwrap(),
        "--llm",
        llm.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ])
}

#[test]
fn swap_llm_replaces_the_backbone_and_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("swapped");
    let fx = fixtures();
    let llm = fx.join("llama_gqa");
    let stdout = ok(&swap(&out, &llm));
    assert!(stdout.contains("every tensor equals its source"), "{stdout}");

    let got = tensors(&out.join("model.safetensors"));
    let new_llm = tensors(&llm.join("model.safetensors"));
    for (k, t) in &new_llm {
        let g = got
            .get(&format!("llm_backbone.{k}"))
            .unwrap_or_else(|| panic!("missing llm_backbone.{k}"));
        assert!(same(g, t), "{k} differs");
    }
    let old = tensors(&fx.join("imgque/model.safetensors"));
    let kept: Vec<&String> = old.keys().filter(|k| !k.starts_with("llm_backbone.")).collect();
    for k in &kept {
        assert!(same(&got[*k], &old[*k]), "{k} differs");
    }
    assert_eq!(got.len(), kept.len() + new_llm.len());

    let config = read_json(&out.join("config.json"));
    assert_eq!(config["llm_config"], read_json(&llm.join("config.json")));
    assert_eq!(config["llm_model_name_or_path"], serde_json::json!(llm.to_str().unwrap()));
    assert_eq!(config["imgque_config"], read_json(&fx.join("imgque/config.json"))["imgque_config"]);
    assert_eq!(
        std::fs::read(out.join("tokenizer.json")).unwrap(),
        std::fs::read(llm.join("tokenizer.json")).unwrap()
    );
    for f in ["preprocessor_config.json", "clip/tokenizer.json"] {
        assert_eq!(
            std::fs::read(out.join(f)).unwrap(),
            std::fs::read(fx.join("imgque").join(f)).unwrap(),
            "{f}"
        );
    }
    assert_eq!(list(tmp.path()), ["swapped"]);

    let logits = tmp.path().join("fwd.safetensors");
    ok(&tokenscale(&[
        "forward",
        "--model",
        out.to_str().unwrap(),
        "--image",
        fx.join("imgque/small.png").to_str().unwrap(),
        "--prompt",
        "What is this?",
        "--out",
        logits.to_str().unwrap(),
    ]));
    assert!(tensors(&logits).contains_key("logits"));

    // The output exists now: a second run refuses without --overwrite.
    let e = err(&swap(&out, &llm));
    assert!(e.contains("config.json") && e.contains("`overwrite`"), "{e}");
}

#[test]
fn swap_llm_with_tied_embeddings_writes_no_lm_head() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("swapped");
    let llm = fixtures().join("qwen2");
    ok(&swap(&out, &llm));
    let got = tensors(&out.join("model.safetensors"));
    assert!(!got.contains_key("llm_backbone.lm_head.weight"));
    assert!(got.contains_key("llm_backbone.model.embed_tokens.weight"));
    assert_eq!(read_json(&out.join("config.json"))["llm_config"]["tie_word_embeddings"], true);
}

#[test]
fn swap_llm_refuses_a_different_hidden_size() {
    let tmp = tempfile::tempdir().unwrap();
    let llm = tmp.path().join("wide");
    copy_dir(&fixtures().join("llama_gqa"), &llm);
    let mut config = read_json(&llm.join("config.json"));
    config["hidden_size"] = serde_json::json!(128);
    std::fs::write(llm.join("config.json"), config.to_string()).unwrap();
    let out = tmp.path().join("out");
    let e = err(&swap(&out, &llm));
    assert!(e.contains("hidden size") && e.contains("64") && e.contains("128"), "{e}");
    assert!(!out.exists());
    assert_eq!(list(tmp.path()), ["wide"]);

    // Dry run: the plan, nothing written.
    let stdout = ok(&tokenscale(&[
        "ckpt",
        "swap-llm",
        "--ckpt",
        fixtures().join("imgque").to_str().unwrap(),
        "--llm",
        fixtures().join("llama_gqa").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--dry-run",
    ]));
    assert!(
        stdout.contains("model.embed_tokens.weight -> llm_backbone.model.embed_tokens.weight"),
        "{stdout}"
    );
    assert!(stdout.contains("nothing written"), "{stdout}");
    assert!(!out.exists());
}

/// A folder with `config.json` holds the complete weights (config.json is moved in last); one
/// without it is not a model yet, and the rerun completes it.
fn assert_loadable_or_not_a_model(dir: &Path, clean: &Path) {
    if dir.join("config.json").is_file() {
        assert!(
            std::fs::read(dir.join("model.safetensors")).ok()
                == std::fs::read(clean.join("model.safetensors")).ok(),
            "{}: config.json beside other weights",
            dir.display()
        );
    }
}

/// `ckpt update` in place and `ckpt swap-llm --out`, each SIGKILLed at 10 seeded random moments
/// of a run: the source folders stay byte-identical, the target is never a half-written model
/// (`config.json` only beside complete weights), and a rerun ends identical to an uninterrupted run.
#[test]
fn ckpt_killed_at_random_moments_leaves_the_sources_intact() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = tokenscale_base::rng::SplitMix64::new(18);

    let clean_root = tmp.path().join("clean");
    training_root(&clean_root, DType::F32);
    let start = std::time::Instant::now();
    ok(&tokenscale(&["ckpt", "update", clean_root.to_str().unwrap()]));
    let update_ms = start.elapsed().as_millis() as usize;
    let root = tmp.path().join("train");
    training_root(&root, DType::F32);
    let sources = ["checkpoint-5", "checkpoint-12"].map(|c| (c, common::files_of(&root.join(c))));
    let mut killed = 0;
    for _ in 0..10 {
        let after = std::time::Duration::from_millis(rng.below(update_ms) as u64);
        killed += common::kill_when(
            Command::new(BIN).args(["ckpt", "update", root.to_str().unwrap(), "--overwrite"]),
            || true,
            after,
        ) as usize;
        for (name, files) in &sources {
            assert!(common::files_of(&root.join(name)) == *files, "{name} changed");
        }
        assert_loadable_or_not_a_model(&root, &clean_root);
    }
    ok(&tokenscale(&["ckpt", "update", root.to_str().unwrap(), "--overwrite"]));
    assert!(
        common::files_of(&root) == common::files_of(&clean_root),
        "the resumed update differs from an uninterrupted one"
    );
    assert_eq!(list(tmp.path()), ["clean", "train"], "a temporary folder was left");

    let clean_out = tmp.path().join("swapped-clean");
    let start = std::time::Instant::now();
    ok(&swap(&clean_out, &fixtures().join("llama_gqa")));
    let swap_ms = start.elapsed().as_millis() as usize;
    let (ckpt, llm) = (tmp.path().join("imgque"), tmp.path().join("llm"));
    copy_dir(&fixtures().join("imgque"), &ckpt);
    copy_dir(&fixtures().join("llama_gqa"), &llm);
    let before = (common::files_of(&ckpt), common::files_of(&llm));
    let out = tmp.path().join("swapped");
    let swap_args = [
        "ckpt",
        "swap-llm",
        "--ckpt",
        ckpt.to_str().unwrap(),
        "--llm",
        llm.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--overwrite",
    ];
    for _ in 0..10 {
        let after = std::time::Duration::from_millis(rng.below(swap_ms) as u64);
        killed += common::kill_when(Command::new(BIN).args(swap_args), || true, after) as usize;
        assert!(
            (common::files_of(&ckpt), common::files_of(&llm)) == before,
            "a source folder changed"
        );
        assert_loadable_or_not_a_model(&out, &clean_out);
    }
    ok(&tokenscale(&swap_args));
    let mut expected = common::files_of(&clean_out);
    let mut got = common::files_of(&out);
    // The config records where the LLM came from, which differs by design.
    let config = |files: &mut std::collections::BTreeMap<String, Vec<u8>>| {
        let mut c: serde_json::Value =
            serde_json::from_slice(&files.remove("config.json").unwrap()).unwrap();
        c.as_object_mut().unwrap().remove("llm_model_name_or_path");
        c
    };
    assert_eq!(config(&mut expected), config(&mut got));
    assert!(expected == got, "the resumed swap differs from an uninterrupted one");
    eprintln!("ckpt: {killed} of 20 runs killed part-way");
    assert!(killed >= 12, "only {killed} of 20 runs were still running when killed");
}
