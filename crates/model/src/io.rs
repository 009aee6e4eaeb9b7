//! Writing output files whole or not at all: write a temp file beside the target, then rename.

use std::path::Path;

use anyhow::{Context, Result};

/// Calls `write` with a temporary path in the target's folder and renames it onto `path` only
/// when `write` succeeds; on failure the temporary file is removed and `path` is untouched.
pub fn write_atomic(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        anyhow::bail!("{}: output folder does not exist", dir.display());
    }
    let name = path.file_name().with_context(|| format!("{}: not a file path", path.display()))?;
    let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let result = write(&tmp).and_then(|_| {
        std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot move into place", path.display()))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// [`write_atomic`] of bytes already in memory.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |tmp| std::fs::write(tmp, bytes).with_context(|| format!("{}: cannot write", tmp.display())))
}
