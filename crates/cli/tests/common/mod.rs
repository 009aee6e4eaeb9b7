//! Shared by the binary's fault tests: SIGKILL a command at a moment, and snapshot folders.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Starts `command`, waits until `ready()` holds (a point of progress), then `extra` more, and
/// SIGKILLs it if it still runs; true when it was killed.
pub fn kill_when(command: &mut Command, ready: impl Fn() -> bool, extra: Duration) -> bool {
    let mut child =
        command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start the binary");
    let start = Instant::now();
    while !ready() && start.elapsed() < Duration::from_secs(60) {
        if child.try_wait().expect("poll the child").is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let deadline = Instant::now() + extra;
    while Instant::now() < deadline {
        if child.try_wait().expect("poll the child").is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let killed = child.try_wait().expect("poll the child").is_none() && child.kill().is_ok();
    child.wait().expect("reap the child");
    killed
}

/// Every file under `dir` (relative path → bytes); empty when `dir` does not exist.
pub fn files_of(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    collect(dir, dir, &mut out);
    out
}

fn collect(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries {
        let path = entry.expect("list a folder").path();
        if path.is_dir() {
            collect(root, &path, out);
        } else {
            let rel =
                path.strip_prefix(root).expect("inside the root").to_string_lossy().into_owned();
            out.insert(rel, std::fs::read(&path).expect("read a file"));
        }
    }
}
