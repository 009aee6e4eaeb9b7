//! The shipped default model (`models/tiny-imgque/`), compiled into the binary and written once
//! to a cache folder named by its content hash, so every command can load it as a plain
//! checkpoint folder.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tokenscale_base::fnv1a;

macro_rules! model_file {
    ($name:literal) => {
        (
            $name,
            include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/tiny-imgque/", $name))
                as &[u8],
        )
    };
}

/// The checkpoint's files, relative to its folder. Add a line here when the folder gains a file
/// (e.g. `clip/tokenizer_config.json`).
static FILES: &[(&str, &[u8])] = &[
    model_file!("config.json"),
    model_file!("model.safetensors"),
    model_file!("tokenizer.json"),
    model_file!("preprocessor_config.json"),
    model_file!("clip/tokenizer.json"),
    model_file!("clip/tokenizer_config.json"),
];

/// How the shipped model was trained: `tokenscale train` configurations, one per stage, in order
/// (each later stage starts from the previous stage's last checkpoint).
pub static TRAINING_STAGES: &[&str] = &[
    include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../models/tiny-imgque/training/stage1.json"
    )),
    include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../models/tiny-imgque/training/stage2.json"
    )),
    include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../models/tiny-imgque/training/stage3.json"
    )),
    include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../models/tiny-imgque/training/stage4.json"
    )),
    include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../models/tiny-imgque/training/stage5.json"
    )),
    include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../models/tiny-imgque/training/stage6.json"
    )),
    include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../models/tiny-imgque/training/stage7.json"
    )),
    include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../models/tiny-imgque/training/stage8.json"
    )),
    include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../models/tiny-imgque/training/stage9.json"
    )),
    include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../models/tiny-imgque/training/stage10.json"
    )),
];

/// The folder holding the embedded model: `$XDG_CACHE_HOME/tokenscale/tiny-imgque-<hash>` (or
/// `~/.cache/...`), written on first use; a temporary folder when the cache is not writable.
pub fn default_model_dir() -> Result<PathBuf> {
    let mut roots = Vec::new();
    if let Some(cache) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        roots.push(PathBuf::from(cache).join("tokenscale"));
    } else if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        roots.push(PathBuf::from(home).join(".cache").join("tokenscale"));
    }
    roots.push(std::env::temp_dir().join("tokenscale"));
    let mut failures = Vec::new();
    for root in &roots {
        match materialise(root, FILES) {
            Ok(dir) => return Ok(dir),
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    anyhow::bail!("cannot write the embedded model anywhere: {}", failures.join("; "))
}

/// FNV-1a 64 over every file's name and bytes: a new checkpoint gets a new folder.
fn content_hash(files: &[(&str, &[u8])]) -> u64 {
    let listing: Vec<String> =
        files.iter().map(|(name, bytes)| format!("{name}\t{:016x}", fnv1a(bytes))).collect();
    fnv1a(listing.join("\n").as_bytes())
}

/// Writes `files` to `root/tiny-imgque-<hash>` unless a complete copy is already there. The copy
/// is assembled in a temporary folder and renamed into place, so a reader never sees a partial
/// model; when another process wins the rename, its copy is used.
fn materialise(root: &Path, files: &[(&str, &[u8])]) -> Result<PathBuf> {
    let dir = root.join(format!("tiny-imgque-{:016x}", content_hash(files)));
    if is_complete(&dir, files) {
        return Ok(dir);
    }
    std::fs::create_dir_all(root).with_context(|| format!("{}: cannot create", root.display()))?;
    let tmp =
        root.join(format!(".tiny-imgque.tmp-{}-{:x}", std::process::id(), content_hash(files)));
    let _ = std::fs::remove_dir_all(&tmp);
    // A damaged copy (a file deleted or truncated since) is replaced.
    let written =
        write_files(&tmp, files).and_then(|_| Ok(tokenscale_fsio::replace_dir(&tmp, &dir)?));
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
        if is_complete(&dir, files) {
            return Ok(dir);
        }
    }
    written.map(|_| dir)
}

fn write_files(dir: &Path, files: &[(&str, &[u8])]) -> Result<()> {
    for (name, bytes) in files {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("{}: cannot create", parent.display()))?;
        }
        std::fs::write(&path, bytes)
            .with_context(|| format!("{}: cannot write", path.display()))?;
    }
    Ok(())
}

/// Every file present with its embedded size (the folder only ever appears whole, by rename; the
/// size check catches a copy damaged afterwards).
fn is_complete(dir: &Path, files: &[(&str, &[u8])]) -> bool {
    files.iter().all(|(name, bytes)| {
        std::fs::metadata(dir.join(name)).is_ok_and(|m| m.len() == bytes.len() as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_once_then_reused_and_repaired() {
        let root = tempfile::tempdir().unwrap();
        let files: &[(&str, &[u8])] = &[("a.json", b"{}"), ("sub/b.bin", b"0123")];
        let dir = materialise(root.path(), files).unwrap();
        assert_eq!(std::fs::read(dir.join("sub/b.bin")).unwrap(), b"0123");
        assert_eq!(materialise(root.path(), files).unwrap(), dir);
        // Exactly the model folder: no temporary folder left behind.
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 1);
        std::fs::write(dir.join("sub/b.bin"), b"01").unwrap();
        assert_eq!(materialise(root.path(), files).unwrap(), dir);
        assert_eq!(std::fs::read(dir.join("sub/b.bin")).unwrap(), b"0123");
        // Other content, other folder.
        let other = materialise(root.path(), &[("a.json", b"[]")]).unwrap();
        assert_ne!(other, dir);
    }

    #[test]
    fn unwritable_root_is_an_error_naming_it() {
        let root = tempfile::tempdir().unwrap();
        let blocker = root.path().join("file");
        std::fs::write(&blocker, b"x").unwrap();
        let err = format!("{:#}", materialise(&blocker, &[("a", b"1")]).unwrap_err());
        assert!(err.contains("file"), "{err}");
    }

    #[test]
    fn the_training_stages_are_valid_configs_that_end_at_checkpoints() {
        for (i, text) in TRAINING_STAGES.iter().enumerate() {
            let config: tokenscale_train::TrainConfig =
                serde_json::from_str(text).unwrap_or_else(|e| panic!("stage {}: {e}", i + 1));
            config.validate(&format!("stage {}", i + 1)).unwrap();
            // The next stage starts from this one's last checkpoint, which must be its last step.
            assert_eq!(config.last_step() % config.checkpoint_every, 0, "stage {}", i + 1);
        }
    }

    #[test]
    fn the_embedded_model_loads() {
        let root = tempfile::tempdir().unwrap();
        let dir = materialise(root.path(), FILES).unwrap();
        tokenscale_model::runtime::Runtime::load(
            &dir,
            tokenscale_model::DType::F32,
            &tokenscale_model::Device::Cpu,
        )
        .unwrap();
    }
}
