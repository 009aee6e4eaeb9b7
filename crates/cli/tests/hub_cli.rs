//! Models by Hugging Face name and benchmarks by VLMEvalKit name, against a fake Hugging Face
//! cache and LMUData folder the test builds (no network).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../model/tests/fixtures")
}

/// The binary with a clean Hugging Face / LMUData environment plus `env`.
fn tokenscale(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tokenscale"));
    cmd.args(args).env_remove("HF_HUB_CACHE").env_remove("HF_HOME").env_remove("LMUData");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("binary runs")
}

fn one_line_error(o: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "succeeded: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(err.starts_with("error: "), "{err}");
    for n in needles {
        assert!(err.contains(n), "expected {n:?} in: {err}");
    }
}

/// `CACHE/models--ORG--NAME/snapshots/COMMIT/` holding the fixture LLaVA, `refs/main` → COMMIT.
fn fake_cache(cache: &Path, repo_id: &str, commit: &str) -> PathBuf {
    let repo = cache.join(format!("models--{}", repo_id.replace('/', "--")));
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).unwrap();
    for entry in std::fs::read_dir(fixtures().join("llava")).unwrap() {
        let entry = entry.unwrap();
        if entry.path().is_file() {
            std::fs::copy(entry.path(), snapshot.join(entry.file_name())).unwrap();
        }
    }
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    snapshot
}

#[test]
fn models_resolve_from_the_hugging_face_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    fake_cache(&cache, "llava-hf/tiny-llava", "0123abcd");
    let o = tokenscale(&["inspect", "llava-hf/tiny-llava", "--json"], &[("HF_HUB_CACHE", &cache)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("Llava"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    // HF_HOME/hub when HF_HUB_CACHE is not set; an explicit revision by commit.
    let o = tokenscale(&["inspect", "llava-hf/tiny-llava@0123abcd"], &[("HF_HOME", tmp.path())]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Absent: one line that says how to download it.
    let o = tokenscale(&["inspect", "llava-hf/absent"], &[("HF_HUB_CACHE", &cache)]);
    one_line_error(
        &o,
        &["llava-hf/absent: not in the Hugging Face cache", "tokenscale download llava-hf/absent"],
    );
    let o = tokenscale(
        &["run", "--model", "llava-hf/tiny-llava@v9", "--prompt", "hi"],
        &[("HF_HUB_CACHE", &cache)],
    );
    one_line_error(&o, &["revision `v9`", "tokenscale download llava-hf/tiny-llava --revision v9"]);
}

#[test]
fn benchmarks_resolve_from_lmudata() {
    let tmp = tempfile::tempdir().unwrap();
    let lmu = tmp.path().join("LMUData");
    let o = tokenscale(
        &["synth", "--out", lmu.to_str().unwrap(), "--items", "2", "--mix", "yorn=0,vqa=0"],
        &[],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/tiny-imgque");
    let run = tmp.path().join("run");
    let args = [
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data",
        "SYNTH_MCQ_TEST",
        "--vision-tokens",
        "1",
        "--out",
        run.to_str().unwrap(),
    ];
    let o = tokenscale(&args, &[("LMUData", &lmu)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(run.join("scores.json").exists());
    let args = [
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data",
        "MME",
        "--vision-tokens",
        "1",
        "--out",
        run.to_str().unwrap(),
    ];
    let o = tokenscale(&args, &[("LMUData", &lmu)]);
    one_line_error(
        &o,
        &["MME: no file", "https://opencompass.openxlab.space/utils/VLMEval/MME.tsv"],
    );
}
