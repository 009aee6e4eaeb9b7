//! `tokenscale train` through the binary: a run stopped part-way (--max-steps) and started again
//! continues from its checkpoint and ends with a model folder `run` loads; bad configs fail cleanly.

use std::process::{Command, Output};

mod common;

fn tokenscale(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tokenscale")).args(args).output().expect("binary runs")
}

const TOY: &str = r#"{"model": {"crop": 16, "patch": 4, "num_crops": 1, "vision_hidden": 64, "vision_intermediate": 64,
  "vision_layers": 1, "vision_heads": 1, "decoder_layers": 1, "max_vision_tokens": 4, "llm_hidden": 32,
  "llm_intermediate": 64, "llm_layers": 1, "llm_heads": 2, "llm_max_positions": 128},
  "steps": 4, "batch": 2, "checkpoint_every": 2, "validation_items": 2, "kind_weights": [["mcq", 0], ["yn", 0]]}"#;

#[test]
fn an_interrupted_run_resumes_and_its_model_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("toy.json");
    std::fs::write(&config, TOY).unwrap();
    let out = tmp.path().join("run");
    let (c, o) = (config.to_str().unwrap(), out.to_str().unwrap());
    let first = tokenscale(&["train", "--config", c, "--out", o, "--max-steps", "2"]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    assert_eq!(std::fs::read_to_string(out.join("loss.csv")).unwrap().lines().count(), 3);
    let second = tokenscale(&["train", "--config", c, "--out", o]);
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("resuming"),
        "the second call continues the run"
    );
    assert_eq!(std::fs::read_to_string(out.join("loss.csv")).unwrap().lines().count(), 5);
    for figure in ["loss.svg", "loss.png"] {
        assert!(out.join(figure).is_file(), "{figure}");
    }
    let model = out.join("model");
    let answer = tokenscale(&[
        "run",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "What colour is the border?",
        "--max-new-tokens",
        "2",
        "--image",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../model/tests/fixtures/preprocess/coffee.png"),
    ]);
    assert!(answer.status.success(), "{}", String::from_utf8_lossy(&answer.stderr));
}

#[test]
fn a_bad_config_is_one_line_naming_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("bad.json");
    std::fs::write(&config, r#"{"steps": 0}"#).unwrap();
    let out = tmp.path().join("run");
    let o = tokenscale(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.json") && err.contains("steps"), "{err}");
    assert!(!out.join("model").exists(), "nothing written for a bad config");
}

/// loss.csv without its wall-clock column (the one thing a resumed run may differ in).
fn losses_without_seconds(run: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(run.join("loss.csv")).unwrap();
    text.lines().map(|l| l.rsplit_once(',').map_or(l, |(rest, _)| rest).to_string()).collect()
}

/// SIGKILLed at 20 seeded random moments and restarted each time, a run ends with the model,
/// validation and losses of an uninterrupted run, bit for bit.
#[test]
fn killed_at_random_moments_a_run_resumes_bit_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("toy.json");
    std::fs::write(
        &config,
        TOY.replace("\"steps\": 4", "\"steps\": 30")
            .replace("\"checkpoint_every\": 2", "\"checkpoint_every\": 1"),
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let clean = tmp.path().join("clean");
    let first = tokenscale(&["train", "--config", c, "--out", clean.to_str().unwrap()]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));

    let run = tmp.path().join("killed");
    let steps_done = || {
        std::fs::read_to_string(run.join("loss.csv"))
            .map_or(0, |t| t.lines().count().saturating_sub(1))
    };
    // 20 moments: a step count to wait for (the run checkpoints every step), then 0-19 ms more,
    // so kills land inside steps and inside checkpoint writes.
    let mut rng = tokenscale_base::rng::SplitMix64::new(18);
    let mut moments: Vec<(usize, u64)> =
        (0..20).map(|_| (rng.below(27), rng.below(20) as u64)).collect();
    moments.sort();
    let mut killed = 0;
    for (steps, extra_ms) in moments {
        let mut train = Command::new(env!("CARGO_BIN_EXE_tokenscale"));
        train.args(["train", "--config", c, "--out", run.to_str().unwrap()]);
        killed += common::kill_when(
            &mut train,
            || steps_done() >= steps,
            std::time::Duration::from_millis(extra_ms),
        ) as usize;
    }
    let last = tokenscale(&["train", "--config", c, "--out", run.to_str().unwrap()]);
    assert!(last.status.success(), "{}", String::from_utf8_lossy(&last.stderr));
    let model = |dir: &std::path::Path| common::files_of(&dir.join("model"));
    assert!(model(&run) == model(&clean), "the resumed model differs from an uninterrupted run's");
    assert_eq!(
        std::fs::read(run.join("validation.csv")).unwrap(),
        std::fs::read(clean.join("validation.csv")).unwrap()
    );
    assert_eq!(losses_without_seconds(&run), losses_without_seconds(&clean));
    eprintln!("train: {killed} of 20 runs killed part-way");
    assert!(killed >= 16, "only {killed} of 20 runs were still running when killed");
}
