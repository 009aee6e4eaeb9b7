//! The fuzz targets: one per reader of a file someone else made.

mod eval;
mod model;

use std::path::Path;

use anyhow::{Context, Result};
use tokenscale_fuzz::runner::Target;

pub fn all() -> Vec<Target> {
    let mut targets = model::targets();
    targets.extend(eval::targets());
    targets
}

/// No other file is needed.
pub fn nothing(_: &Path) -> Result<()> {
    Ok(())
}

/// Copies the files of a fixture folder (relative to the workspace root) into `dest`, except
/// `skip` (the file being fuzzed).
pub fn copy_fixture(fixture: &str, dest: &Path, skip: &str) -> Result<()> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(fixture);
    std::fs::create_dir_all(dest)?;
    for entry in
        std::fs::read_dir(&src).with_context(|| format!("{}: cannot list", src.display()))?
    {
        let path = entry?.path();
        let name = path.file_name().context("entry without a name")?;
        if name == skip || name == "expected.safetensors" || name == "cases.json" {
            continue;
        }
        if path.is_dir() {
            copy_fixture(&format!("{fixture}/{}", name.to_string_lossy()), &dest.join(name), skip)?;
        } else {
            std::fs::copy(&path, dest.join(name))
                .with_context(|| format!("{}: cannot copy", path.display()))?;
        }
    }
    Ok(())
}

/// The folder holding the input.
pub fn folder(input: &Path) -> &Path {
    input.parent().unwrap_or(Path::new("."))
}
