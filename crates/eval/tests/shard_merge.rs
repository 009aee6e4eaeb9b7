//! Sharded runs merged with `merge_runs` equal a one-machine run; a different configuration is
//! refused unless forced; the n-sweep prepares each image once.

use std::path::{Path, PathBuf};
use tokenscale_eval::merge::{finish_run, merge_runs};
use tokenscale_eval::prompt::PromptStyle;
use tokenscale_eval::store::Shard;
use tokenscale_eval::sweep::run_sweep;
use tokenscale_eval::{Dataset, EchoAnswerer, ScoreOptions, SweepConfig};

fn load(tsvs: &[PathBuf]) -> Vec<Dataset> {
    tsvs.iter().map(|p| Dataset::load(p, None).unwrap()).collect()
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn shards_merge_to_the_one_machine_result() {
    let tmp = tempfile::tempdir().unwrap();
    let tsvs = tokenscale_synth::generate(&tmp.path().join("data"), 3, 10, 24).unwrap();
    let ds = load(&tsvs);
    let ns = vec![1, 8, 16, 32, 64, 128, 256];

    let one = tmp.path().join("one");
    let mut a = EchoAnswerer::new("echo", &ds, PromptStyle::Default).unwrap();
    let s = run_sweep(&mut a, &ds, &SweepConfig::new(&one, ns.clone())).unwrap();
    assert_eq!(s.answered, 30 * 7);
    // Shared image work: one preparation per distinct image, not per (image, n).
    assert_eq!(s.images_prepared, 10 + 5 + 10);
    finish_run(&one, &ds, ScoreOptions::default()).unwrap();

    let mut dirs = Vec::new();
    for k in 0..3 {
        let d = tmp.path().join(format!("shard{k}"));
        let mut cfg = SweepConfig::new(&d, ns.clone());
        cfg.shard = Shard { k, count: 3 };
        let mut a = EchoAnswerer::new("echo", &ds, PromptStyle::Default).unwrap();
        run_sweep(&mut a, &ds, &cfg).unwrap();
        dirs.push(d);
    }
    let merged = tmp.path().join("merged");
    merge_runs(&dirs, &merged, &[], ScoreOptions::default(), false).unwrap();
    for f in [
        "scores.json",
        "scores.csv",
        "scores.md",
        "predictions/SYNTH_MCQ.csv",
        "predictions/SYNTH_YORN.jsonl",
        "predictions/SYNTH_VQA.csv",
    ] {
        assert_eq!(read(&one.join(f)), read(&merged.join(f)), "{f} differs");
    }
    // Scores improve with n for the reference answerer (sanity of the table).
    let scores: Vec<serde_json::Value> =
        serde_json::from_slice(&read(&one.join("scores.json"))).unwrap();
    let overall = |n: u64| {
        scores
            .iter()
            .find(|r| {
                r["dataset"] == "SYNTH_YORN"
                    && r["n"] == n
                    && r["metric"] == "Overall"
                    && r["category"].is_null()
            })
            .unwrap()["value"]
            .as_f64()
            .unwrap()
    };
    assert!(overall(256) >= overall(1));

    // Shards may also share one directory (shared filesystem) and be merged in place.
    let shared = tmp.path().join("shared");
    for k in 0..2 {
        let mut cfg = SweepConfig::new(&shared, ns.clone());
        cfg.shard = Shard { k, count: 2 };
        let mut a = EchoAnswerer::new("echo", &ds, PromptStyle::Default).unwrap();
        run_sweep(&mut a, &ds, &cfg).unwrap();
    }
    merge_runs(std::slice::from_ref(&shared), &shared, &[], ScoreOptions::default(), false)
        .unwrap();
    assert_eq!(read(&one.join("scores.json")), read(&shared.join("scores.json")));
}

#[test]
fn different_configuration_is_refused_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let tsvs = tokenscale_synth::generate(&tmp.path().join("data"), 5, 4, 24).unwrap();
    let ds = load(&tsvs);
    let run = tmp.path().join("run");
    let mut a = EchoAnswerer::new("echo", &ds, PromptStyle::Default).unwrap();
    run_sweep(&mut a, &ds, &SweepConfig::new(&run, vec![1])).unwrap();
    // More n values and another model are fine (they are part of the key).
    run_sweep(&mut a, &ds, &SweepConfig::new(&run, vec![1, 2])).unwrap();
    let mut cfg = SweepConfig::new(&run, vec![1]);
    cfg.max_new_tokens = Some(7);
    let err = format!("{:#}", run_sweep(&mut a, &ds, &cfg).unwrap_err());
    assert!(
        err.contains("different configuration")
            && err.contains("`force`")
            && err.contains("max_new_tokens"),
        "{err}"
    );
    cfg.force = true;
    run_sweep(&mut a, &ds, &cfg).unwrap();
    // A different dataset content is refused too.
    let other = tokenscale_synth::generate(&tmp.path().join("data2"), 6, 4, 24).unwrap();
    let ds2 = load(&other);
    let mut a2 = EchoAnswerer::new("echo", &ds2, PromptStyle::Default).unwrap();
    let mut cfg = SweepConfig::new(&run, vec![1]);
    cfg.max_new_tokens = Some(7);
    let err = format!("{:#}", run_sweep(&mut a2, &ds2, &cfg).unwrap_err());
    assert!(err.contains("different content"), "{err}");
    // A subset of the datasets, or a new one, is fine.
    run_sweep(&mut a, &ds[..1], &cfg).unwrap();
    let renamed = tmp.path().join("data2/POPE.tsv");
    std::fs::copy(&other[1], &renamed).unwrap();
    let pope = vec![Dataset::load(&renamed, None).unwrap()];
    let mut a3 = EchoAnswerer::new("echo", &pope, PromptStyle::Default).unwrap();
    run_sweep(&mut a3, &pope, &cfg).unwrap();
    let (_, c) = tokenscale_eval::sweep::read_config(&run).unwrap();
    assert_eq!(c.datasets.len(), 4);
}

#[test]
fn boxed_answerers_and_conflicting_merges() {
    use tokenscale_eval::sweep::DynAnswerer;
    let tmp = tempfile::tempdir().unwrap();
    let tsvs = tokenscale_synth::generate(&tmp.path().join("data"), 9, 4, 24).unwrap();
    let ds = load(&tsvs);
    let mut models: Vec<Box<dyn DynAnswerer>> = vec![
        Box::new(EchoAnswerer::new("a", &ds, PromptStyle::Default).unwrap()),
        Box::new(EchoAnswerer::new("b", &ds, PromptStyle::Llava).unwrap().with_reducer("pool")),
    ];
    let run = tmp.path().join("run");
    for m in models.iter_mut() {
        run_sweep(m, &ds, &SweepConfig::new(&run, vec![4, 16])).unwrap();
    }
    let rows = finish_run(&run, &ds, ScoreOptions::default()).unwrap();
    assert!(rows.iter().any(|r| r.model == "b" && r.reducer == "pool" && r.n == 16));
    // Two runs that stored different predictions for the same key do not merge silently.
    let other = tmp.path().join("other");
    let mut c = EchoAnswerer::new("a", &ds, PromptStyle::Default).unwrap();
    c.answer_sleep = std::time::Duration::ZERO;
    let mut cfg = SweepConfig::new(&other, vec![4]);
    cfg.max_answers = Some(3);
    run_sweep(&mut c, &ds, &cfg).unwrap();
    let f = other.join("store/shard-0000-of-0001.jsonl");
    let text = std::fs::read_to_string(&f).unwrap();
    let first = text.lines().next().unwrap();
    let mut rec: tokenscale_eval::store::Record = serde_json::from_str(first).unwrap();
    rec.prediction.push_str(" (changed)");
    std::fs::write(&f, text.replacen(first, &serde_json::to_string(&rec).unwrap(), 1)).unwrap();
    let err = format!(
        "{:#}",
        merge_runs(
            &[run.clone(), other.clone()],
            &tmp.path().join("m"),
            &[],
            ScoreOptions::default(),
            false
        )
        .unwrap_err()
    );
    assert!(err.contains("different prediction") && err.contains("`force`"), "{err}");
    merge_runs(&[run, other], &tmp.path().join("m2"), &[], ScoreOptions::default(), true).unwrap();
}
