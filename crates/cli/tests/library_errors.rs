//! The libraries cannot know the CLI's flags, so their messages name options, not `--flags`:
//! a scan of every library source line outside comments for a string containing `--` + letter.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn library_messages_name_no_cli_flags() {
    let crates = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for lib in [
        "fsio",
        "base",
        "vlmeval",
        "synth",
        "model",
        "kernels",
        "law",
        "cost",
        "eval",
        "answer",
        "plot",
        "train",
        "reproduce",
        "serve",
    ] {
        rust_files(&crates.join(lib).join("src"), &mut files);
    }
    assert!(files.len() > 50, "found only {} library files", files.len());
    let mut offenders = Vec::new();
    for file in &files {
        for (i, line) in std::fs::read_to_string(file).unwrap().lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            let in_string = code.split('"').skip(1).step_by(2);
            if in_string.clone().any(|s| {
                s.as_bytes()
                    .windows(3)
                    .any(|w| w[0] == b'-' && w[1] == b'-' && w[2].is_ascii_lowercase())
            }) {
                offenders.push(format!("{}:{}: {}", file.display(), i + 1, line.trim()));
            }
        }
    }
    assert!(offenders.is_empty(), "library strings naming CLI flags:\n{}", offenders.join("\n"));
}
