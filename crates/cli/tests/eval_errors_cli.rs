//! `tokenscale eval` with an item whose image does not decode: the item is recorded as failed,
//! the others are answered and scored, the count is reported and the exit is non-zero;
//! `--fail-fast` stops at it. Off a terminal, progress comes as plain lines.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn tokenscale(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tokenscale"))
        .args(args)
        .env("TOKENSCALE_PROGRESS_SECS", "0")
        .output()
        .expect("binary runs")
}

/// The synthetic MCQ file with the image of its first row replaced by bytes that are no image.
fn benchmark_with_a_bad_image(dir: &Path) -> PathBuf {
    let o = tokenscale(&[
        "synth",
        "--out",
        dir.to_str().unwrap(),
        "--items",
        "4",
        "--mix",
        "yorn=0,vqa=0",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let path = dir.join("SYNTH_MCQ_TEST.tsv");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let image_col = lines[0].split('\t').position(|h| h == "image").unwrap();
    let mut cells: Vec<String> = lines[1].split('\t').map(str::to_string).collect();
    // base64 of "this is not an image. " eight times
    cells[image_col] = "dGhpcyBpcyBub3QgYW4gaW1hZ2UuIHRoaXMgaXMgbm90IGFuIGltYWdlLiB0aGlzIGlzIG5vdCBhbiBpbWFnZS4gdGhpcyBpcyBub3QgYW4gaW1hZ2UuIHRoaXMgaXMgbm90IGFuIGltYWdlLiB0aGlzIGlzIG5vdCBhbiBpbWFnZS4gdGhpcyBpcyBub3QgYW4gaW1hZ2UuIHRoaXMgaXMgbm90IGFuIGltYWdlLiA=".into();
    lines[1] = cells.join("\t");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

#[test]
fn a_failing_item_is_recorded_and_the_sweep_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let data = benchmark_with_a_bad_image(&tmp.path().join("synth"));
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/tiny-imgque");
    let run = tmp.path().join("run");
    let args = |out: &Path| -> Vec<String> {
        [
            "eval",
            "--model",
            model.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--vision-tokens",
            "1,4",
            "--out",
            out.to_str().unwrap(),
        ]
        .map(str::to_string)
        .to_vec()
    };
    let a = args(&run);
    let o = tokenscale(&strs(&a));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("6 answered, 2 failed"), "{err}");
    assert!(
        err.contains("preparing the image") && err.contains("(recorded; a rerun retries it)"),
        "{err}"
    );
    assert!(err.trim_end().lines().last().unwrap().starts_with("error: 2 answers failed"), "{err}");
    assert!(
        err.contains("eval tiny-imgque/queries: 1/8 answers (") && err.contains("8/8 answers"),
        "plain progress lines: {err}"
    );
    assert!(run.join("scores.json").exists(), "the answered items are scored");
    // A rerun retries the failed item (and fails again: the image is still bad).
    let o = tokenscale(&strs(&a));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("0 answered, 2 failed, 6 already stored"), "{err}");

    let mut fast = args(&tmp.path().join("fast"));
    fast.push("--fail-fast".into());
    let o = tokenscale(&strs(&fast));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("error: ") && err.contains("preparing the image") && !err.contains("recorded"),
        "{err}"
    );
    assert!(!tmp.path().join("fast/scores.json").exists());
}

/// Makes a folder tree read-only (or writable again).
#[cfg(unix)]
fn set_read_only(dir: &Path, read_only: bool) {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            set_read_only(&path, read_only);
        } else {
            std::fs::set_permissions(
                &path,
                std::fs::Permissions::from_mode(if read_only { 0o444 } else { 0o644 }),
            )
            .unwrap();
        }
    }
    std::fs::set_permissions(
        dir,
        std::fs::Permissions::from_mode(if read_only { 0o555 } else { 0o755 }),
    )
    .unwrap();
}

/// A run directory that cannot be written: one `error:` line naming it, nothing changed. Root
/// ignores file modes, so as root the binary runs as `nobody` for the second call.
#[cfg(unix)]
#[test]
fn a_read_only_run_directory_is_one_error_line_and_changes_nothing() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let synth = tmp.path().join("synth");
    let o = tokenscale(&[
        "synth",
        "--out",
        synth.to_str().unwrap(),
        "--items",
        "2",
        "--mix",
        "yorn=0,vqa=0",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let data = synth.join("SYNTH_MCQ_TEST.tsv");
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/tiny-imgque");
    let run = tmp.path().join("run");
    let eval = |ns: &str| -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_tokenscale"));
        c.args([
            "eval",
            "--model",
            model.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--vision-tokens",
            ns,
            "--out",
            run.to_str().unwrap(),
        ]);
        c
    };
    let o = eval("1").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let snapshot = |dir: &Path| -> Vec<(PathBuf, Vec<u8>)> {
        let mut files = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p)
                } else {
                    files.push((p.clone(), std::fs::read(&p).unwrap()))
                }
            }
        }
        files.sort();
        files
    };
    let before = snapshot(&run);
    set_read_only(&run, true);
    let mut second = eval("1,4");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        second.uid(65534).gid(65534);
    }
    let o = second.output().unwrap();
    set_read_only(&run, false);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let last = err.trim_end().lines().last().unwrap();
    assert!(last.starts_with("error: ") && last.contains(run.to_str().unwrap()), "{err}");
    assert!(snapshot(&run) == before, "the read-only run directory changed");
}
