//! Leftovers of killed runs, and the model fingerprint that decides which stored predictions are reused.

use std::path::Path;

use anyhow::{Context, Result};
use tokenscale_base::fnv1a;

/// Removes what a killed earlier run left half-written in the output folder: the dot-named
/// temporaries (`.data.tmp-PID`, `.figures.tmp-PID`, `.NAME.tmp-PID`) of this crate's writers.
pub fn remove_temporaries(dir: &Path) -> Result<()> {
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))?
    {
        let path = entry.with_context(|| format!("{}: cannot list", dir.display()))?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if !(name.starts_with('.') && name.contains(".tmp")) {
            continue;
        }
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.with_context(|| format!("{}: cannot remove a stale temporary", path.display()))?;
    }
    Ok(())
}

/// FNV-1a 64 over the relative path and bytes of every file of a checkpoint folder (files over
/// 256 MiB by length and modification time, so a large model is not read in full): stored
/// predictions are reused only for the same weights.
pub fn model_fingerprint(dir: &Path) -> Result<String> {
    let mut files = Vec::new();
    collect(dir, dir, &mut files)?;
    files.sort();
    let mut parts = Vec::with_capacity(files.len());
    for (rel, path) in &files {
        let meta =
            std::fs::metadata(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let content = if meta.len() > 256 << 20 {
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            format!("{}:{modified}", meta.len())
        } else {
            format!(
                "{:016x}",
                fnv1a(
                    &std::fs::read(path)
                        .with_context(|| format!("{}: cannot read", path.display()))?
                )
            )
        };
        parts.push(format!("{rel}\t{content}"));
    }
    let h = fnv1a(parts.join("\n").as_bytes());
    Ok(format!("{h:016x}"))
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, std::path::PathBuf)>) -> Result<()> {
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))?
    {
        let path = entry.with_context(|| format!("{}: cannot list", dir.display()))?.path();
        if path.is_dir() {
            collect(root, &path, out)?;
        } else {
            let rel = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().replace('\\', "/");
            out.push((rel, path));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_temporaries_go_and_outputs_stay() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".figures.tmp-12/x")).unwrap();
        std::fs::write(dir.path().join(".report.md.tmp-12"), "half").unwrap();
        tokenscale_fsio::write_atomic(&dir.path().join("report.md"), b"whole").unwrap();
        std::fs::create_dir_all(dir.path().join("run")).unwrap();
        remove_temporaries(dir.path()).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["report.md", "run"]);
    }

    #[test]
    fn fingerprint_follows_content() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("clip")).unwrap();
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        std::fs::write(dir.path().join("clip/tokenizer.json"), "a").unwrap();
        let first = model_fingerprint(dir.path()).unwrap();
        assert_eq!(model_fingerprint(dir.path()).unwrap(), first);
        std::fs::write(dir.path().join("clip/tokenizer.json"), "b").unwrap();
        assert_ne!(model_fingerprint(dir.path()).unwrap(), first);
    }
}
