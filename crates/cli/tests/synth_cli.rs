//! `tokenscale synth`: the benchmark files, the same bytes as the library writes, and one-line
//! errors without output on bad arguments.

use std::process::{Command, Output};
use tokenscale_synth::{write_benchmark, Mix, Split};

fn tokenscale(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tokenscale")).args(args).output().expect("binary runs")
}

#[test]
fn writes_the_benchmark() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("synth");
    let o = tokenscale(&[
        "synth",
        "--out",
        out.to_str().unwrap(),
        "--split",
        "val",
        "--items",
        "7",
        "--mix",
        "fine=3",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    let expected =
        write_benchmark(&tmp.path().join("lib"), Split::Val, 7, &Mix::parse("fine=3").unwrap())
            .unwrap();
    for path in expected {
        let name = path.file_name().unwrap();
        assert!(stdout.contains(&*name.to_string_lossy()), "{stdout}");
        assert_eq!(std::fs::read(out.join(name)).unwrap(), std::fs::read(&path).unwrap());
        let ds = tokenscale_eval::Dataset::load(&out.join(name), None).unwrap();
        assert_eq!(ds.items.len(), 7);
    }
}

#[test]
fn bad_arguments_fail_with_one_line_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("synth");
    for (args, message) in [
        (vec!["--split", "dev"], "unknown split \"dev\""),
        (vec!["--mix", "colour=2"], "unknown subtask \"colour\""),
        (vec!["--items", "0"], "count is 0"),
    ] {
        let mut all = vec!["synth", "--out", out.to_str().unwrap()];
        all.extend(args);
        let o = tokenscale(&all);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{all:?} succeeded");
        assert!(
            stderr.contains(message) && stderr.trim().lines().count() == 1,
            "{all:?}: {stderr}"
        );
        assert!(!out.exists(), "{all:?} wrote {}", out.display());
    }
}
