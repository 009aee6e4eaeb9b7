//! Kill-and-resume: SIGKILL a real child process (the sweep harness driving the reference
//! EchoAnswerer) at several points, resume, and check that the store lost and duplicated nothing.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use tokenscale_eval::store::{load_run, read_jsonl};

const HARNESS: &str = env!("CARGO_BIN_EXE_tokenscale-sweep-harness");

fn lines_in_store(run: &Path) -> usize {
    let dir = run.join("store");
    let Ok(rd) = std::fs::read_dir(&dir) else { return 0 };
    rd.filter_map(|e| e.ok())
        .map(|e| std::fs::read(e.path()).map(|b| b.iter().filter(|&&c| c == b'\n').count()).unwrap_or(0))
        .sum()
}

fn harness(run: &Path, ns: &str, sleep_ms: u64, shard: &str, tsvs: &[std::path::PathBuf]) -> Command {
    let mut c = Command::new(HARNESS);
    c.arg(run).arg(ns).arg(sleep_ms.to_string()).arg(shard).args(tsvs);
    c.stdout(std::process::Stdio::null());
    c
}

#[test]
fn sigkill_at_several_points_loses_and_duplicates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let tsvs = tokenscale_eval::synth::generate(&data, 11, 6, 24).unwrap();
    let ns = "1,8,64";
    let expected = 3 * 6 * 3;

    // Reference: an uninterrupted run.
    let clean = tmp.path().join("clean");
    assert!(harness(&clean, ns, 0, "0/1", &tsvs).status().unwrap().success());
    let clean_recs = load_run(&clean).unwrap();
    assert_eq!(clean_recs.len(), expected);

    let run = tmp.path().join("killed");
    let mut kills = 0;
    for target in [1usize, 9, 20, 33, 47] {
        let mut child = harness(&run, ns, 15, "0/1", &tsvs).spawn().unwrap();
        let t0 = Instant::now();
        while lines_in_store(&run) < target && t0.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(2));
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL on Unix
            kills += 1;
        }
        child.wait().unwrap();
        // Simulate a torn write after one of the kills: an incomplete last line.
        if target == 20 {
            let f = run.join("store").join("shard-0000-of-0001.jsonl");
            let mut b = std::fs::read(&f).unwrap();
            b.extend_from_slice(b"{\"model\":\"echo\",\"reducer\":\"def");
            std::fs::write(&f, b).unwrap();
        }
        let recs = load_run(&run).unwrap();
        assert!(recs.len() <= expected);
    }
    assert!(kills >= 3, "the child finished before it could be killed ({kills} kills)");
    // Resume to completion.
    assert!(harness(&run, ns, 0, "0/1", &tsvs).status().unwrap().success());

    let (raw, _) = read_jsonl(&run.join("store").join("shard-0000-of-0001.jsonl")).unwrap();
    let keys: HashSet<_> = raw.iter().map(|r| r.key()).collect();
    assert_eq!(raw.len(), keys.len(), "duplicated records");
    assert_eq!(keys.len(), expected, "lost records");
    let recs = load_run(&run).unwrap();
    for (k, r) in &clean_recs {
        assert_eq!(recs[k].prediction, r.prediction);
    }
    // Nothing left to do on a second resume.
    let out = harness(&run, ns, 0, "0/1", &tsvs).stdout(std::process::Stdio::piped()).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("answered 0 skipped {expected} ")));
}

/// A full disk while appending (RLIMIT_FSIZE makes writes past the limit fail with EFBIG): the
/// sweep stops with an error, the store holds only whole records, and a resume completes it.
#[cfg(unix)]
#[test]
fn full_disk_leaves_no_torn_record() {
    let tmp = tempfile::tempdir().unwrap();
    let tsvs = tokenscale_eval::synth::generate(&tmp.path().join("data"), 12, 4, 24).unwrap();
    let run = tmp.path().join("run");
    let expected = 3 * 4 * 2;
    // The limit is reached a few records in, in the middle of a record.
    let out = harness(&run, "1,8", 0, "0/1", &tsvs)
        .env("TOKENSCALE_HARNESS_FSIZE", "1000")
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("store left valid"), "{err}");
    let f = run.join("store").join("shard-0000-of-0001.jsonl");
    let bytes = std::fs::read(&f).unwrap();
    assert!(!bytes.is_empty() && bytes.len() <= 1000 && bytes.ends_with(b"\n"), "torn store ({} bytes)", bytes.len());
    let (recs, valid) = read_jsonl(&f).unwrap();
    assert_eq!(valid as usize, bytes.len());
    assert!(!recs.is_empty() && recs.len() < expected);
    assert!(harness(&run, "1,8", 0, "0/1", &tsvs).status().unwrap().success());
    let (raw, _) = read_jsonl(&f).unwrap();
    let keys: HashSet<_> = raw.iter().map(|r| r.key()).collect();
    assert_eq!((raw.len(), keys.len()), (expected, expected));
}
