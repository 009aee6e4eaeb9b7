//! Kill-and-resume: SIGKILL a real child process (the sweep harness driving the reference
//! EchoAnswerer) at 20 seeded random moments, resume, and check that the store lost and
//! duplicated nothing and the scores are byte-identical to an uninterrupted run's.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokenscale_base::rng::SplitMix64;
use tokenscale_eval::store::{load_run, read_jsonl};

const HARNESS: &str = env!("CARGO_BIN_EXE_tokenscale-sweep-harness");
const STORE_FILE: &str = "shard-0000-of-0001.jsonl";

/// Records written so far (newlines of the shard files; the lock file is not counted).
fn lines_in_store(run: &Path) -> usize {
    let dir = run.join("store");
    let Ok(rd) = std::fs::read_dir(&dir) else { return 0 };
    rd.filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
        .map(|e| {
            std::fs::read(e.path()).map(|b| b.iter().filter(|&&c| c == b'\n').count()).unwrap_or(0)
        })
        .sum()
}

fn harness(run: &Path, ns: &str, sleep_ms: u64, shard: &str, tsvs: &[PathBuf]) -> Command {
    let mut c = Command::new(HARNESS);
    c.arg(run).arg(ns).arg(sleep_ms.to_string()).arg(shard).args(tsvs);
    c.stdout(Stdio::null());
    c
}

/// Every record key once, no more.
fn assert_no_duplicates(run: &Path) -> usize {
    let (raw, _) = read_jsonl(&run.join("store").join(STORE_FILE)).unwrap();
    let keys: HashSet<_> = raw.iter().map(|r| r.key()).collect();
    assert_eq!(raw.len(), keys.len(), "duplicated records");
    keys.len()
}

/// The files a finished run reports, which must not depend on how often it was interrupted.
fn outputs(run: &Path) -> Vec<(String, Vec<u8>)> {
    let mut names = vec!["scores.json".to_string(), "scores.csv".into(), "scores.md".into()];
    let mut predictions: Vec<String> = std::fs::read_dir(run.join("predictions"))
        .unwrap()
        .map(|e| format!("predictions/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    predictions.sort();
    names.extend(predictions);
    names.into_iter().map(|n| (n.clone(), std::fs::read(run.join(&n)).unwrap())).collect()
}

#[test]
fn sigkill_at_20_random_moments_loses_and_duplicates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let tsvs = tokenscale_synth::generate(&data, 11, 8, 24).unwrap();
    let ns = "1,8,64";

    // Reference: an uninterrupted run.
    let clean = tmp.path().join("clean");
    assert!(harness(&clean, ns, 0, "0/1", &tsvs).status().unwrap().success());
    let expected = load_run(&clean).unwrap().len();
    assert_eq!(expected, 3 * 8 * 3);

    // 20 moments: a record count to wait for (0: before the first record, while the run
    // directory is being set up) plus 0-4 ms more, so kills land inside appends too.
    let mut rng = SplitMix64::new(18);
    let mut moments: Vec<(usize, u64)> =
        (0..20).map(|_| (rng.below(expected - 8), rng.below(5) as u64)).collect();
    moments.sort();
    let run = tmp.path().join("killed");
    let mut kills = 0;
    for (i, &(records, extra_ms)) in moments.iter().enumerate() {
        let mut child = harness(&run, ns, 8, "0/1", &tsvs).spawn().unwrap();
        let t0 = Instant::now();
        while lines_in_store(&run) < records && t0.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(extra_ms));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL on Unix
            kills += 1;
        }
        child.wait().unwrap();
        // After one kill, a torn write as a kill inside `write` leaves it: an incomplete line.
        if i == 7 {
            let f = run.join("store").join(STORE_FILE);
            let mut b = std::fs::read(&f).unwrap();
            b.extend_from_slice(b"{\"model\":\"echo\",\"reducer\":\"def");
            std::fs::write(&f, b).unwrap();
        }
        if run.join("store").join(STORE_FILE).exists() {
            assert!(assert_no_duplicates(&run) <= expected);
        }
    }
    eprintln!("sweep: {kills} of 20 runs killed part-way");
    assert!(kills >= 18, "the child finished before it could be killed ({kills} of 20 kills)");
    // Resume to completion.
    assert!(harness(&run, ns, 0, "0/1", &tsvs).status().unwrap().success());
    assert_eq!(assert_no_duplicates(&run), expected, "lost records");
    for ((name, clean_bytes), (_, killed_bytes)) in outputs(&clean).iter().zip(outputs(&run)) {
        assert!(*clean_bytes == killed_bytes, "{name} differs from the uninterrupted run's");
    }
    // Nothing left to do on a second resume.
    let out = harness(&run, ns, 0, "0/1", &tsvs).stdout(Stdio::piped()).output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("answered 0 skipped {expected} "))
    );
}

/// A second process on the same shard is refused, naming the first; once the first is killed,
/// its stale lock is taken over and the run completes.
#[test]
fn a_second_writer_of_a_shard_is_refused_and_a_killed_holder_is_recovered() {
    let tmp = tempfile::tempdir().unwrap();
    let tsvs = tokenscale_synth::generate(&tmp.path().join("data"), 5, 4, 24).unwrap();
    let run = tmp.path().join("run");
    let mut first = harness(&run, "1,8", 200, "0/2", &tsvs).spawn().unwrap();
    let t0 = Instant::now();
    while lines_in_store(&run) < 1 && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(2));
    }
    let second = harness(&run, "1,8", 0, "0/2", &tsvs).stderr(Stdio::piped()).output().unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success());
    assert!(
        err.contains("shard-0000-of-0002.lock: shard 0/2 of")
            && err.contains(&format!("is being written by pid {} on host ", first.id())),
        "{err}"
    );
    // Another shard of the same run directory is not blocked.
    assert!(harness(&run, "1,8", 0, "1/2", &tsvs).status().unwrap().success());
    first.kill().unwrap();
    first.wait().unwrap();
    let resumed = harness(&run, "1,8", 0, "0/2", &tsvs).stderr(Stdio::piped()).output().unwrap();
    let err = String::from_utf8_lossy(&resumed.stderr);
    assert!(resumed.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "taking over a stale lock of shard 0/2 of {} left by pid {}",
            run.display(),
            first.id()
        )),
        "{err}"
    );
}

/// A full disk while appending (RLIMIT_FSIZE makes writes past the limit fail with EFBIG): the
/// sweep stops with an error, the store holds only whole records, and a resume completes it.
#[cfg(unix)]
#[test]
fn full_disk_leaves_no_torn_record() {
    let tmp = tempfile::tempdir().unwrap();
    let tsvs = tokenscale_synth::generate(&tmp.path().join("data"), 12, 4, 24).unwrap();
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
    assert!(
        !bytes.is_empty() && bytes.len() <= 1000 && bytes.ends_with(b"\n"),
        "torn store ({} bytes)",
        bytes.len()
    );
    let (recs, valid) = read_jsonl(&f).unwrap();
    assert_eq!(valid as usize, bytes.len());
    assert!(!recs.is_empty() && recs.len() < expected);
    assert!(harness(&run, "1,8", 0, "0/1", &tsvs).status().unwrap().success());
    let (raw, _) = read_jsonl(&f).unwrap();
    let keys: HashSet<_> = raw.iter().map(|r| r.key()).collect();
    assert_eq!((raw.len(), keys.len()), (expected, expected));
}
