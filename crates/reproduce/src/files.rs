//! Writing outputs whole or not at all.

use std::path::Path;

use anyhow::{Context, Result};
use tokenscale_eval::dataset::fnv1a;

/// Writes `bytes` to `path` through a temporary file beside it and a rename.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    tokenscale_model::io::write_atomic(path, |tmp| {
        std::fs::write(tmp, bytes).with_context(|| format!("{}: cannot write", tmp.display()))
    })
}

/// Puts the folder `tmp` (complete) in the place of `dest`, whose old content goes entirely, so
/// no file of an earlier run survives beside the new ones.
pub fn replace_dir(tmp: &Path, dest: &Path) -> Result<()> {
    if dest.exists() {
        std::fs::remove_dir_all(dest).with_context(|| format!("{}: cannot remove the previous copy", dest.display()))?;
    }
    std::fs::rename(tmp, dest).with_context(|| format!("{}: cannot move {} into place", dest.display(), tmp.display()))
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
        let meta = std::fs::metadata(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let content = if meta.len() > 256 << 20 {
            let modified = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
            format!("{}:{modified}", meta.len())
        } else {
            format!("{:016x}", fnv1a(&std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?))
        };
        parts.push(format!("{rel}\t{content}"));
    }
    let h = fnv1a(parts.join("\n").as_bytes());
    Ok(format!("{h:016x}"))
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, std::path::PathBuf)>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))? {
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
