//! Models named as on the Hugging Face Hub (`llava-hf/llava-1.5-7b-hf`), found in the local
//! Hugging Face cache the way `huggingface_hub` lays it out:
//! `CACHE/models--ORG--NAME/snapshots/COMMIT/`, with `refs/BRANCH` holding a branch's commit.
//! The cache is `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The Hugging Face cache folder this process uses (it need not exist).
pub fn cache_dir() -> Result<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(cache) = var("HF_HUB_CACHE") {
        return Ok(cache);
    }
    if let Some(home) = var("HF_HOME") {
        return Ok(home.join("hub"));
    }
    let home = var("HOME").context(
        "cannot find the Hugging Face cache: none of HF_HUB_CACHE, HF_HOME, HOME is set",
    )?;
    Ok(home.join(".cache").join("huggingface").join("hub"))
}

/// Whether `spec` reads as a Hub repository id `ORG/NAME` (one slash, no path syntax).
pub fn is_repo_id(spec: &str) -> bool {
    let part_ok = |p: &str| {
        !p.is_empty()
            && !p.starts_with('.')
            && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    match spec.split_once('/') {
        Some((org, name)) => part_ok(org) && part_ok(name),
        None => false,
    }
}

/// The folder of repository `repo_id` in `cache`: `models--ORG--NAME`.
pub fn repo_folder(cache: &Path, repo_id: &str) -> PathBuf {
    cache.join(format!("models--{}", repo_id.replace('/', "--")))
}

/// The snapshot folder of `repo_id` at `revision` (a branch or tag named in `refs/`, or a commit;
/// `main` when None) in `cache`.
pub fn snapshot_in(cache: &Path, repo_id: &str, revision: Option<&str>) -> Result<PathBuf> {
    let repo = repo_folder(cache, repo_id);
    let revision = revision.unwrap_or("main");
    let reference = repo.join("refs").join(revision);
    let commit = match std::fs::read_to_string(&reference) {
        Ok(text) => text.trim().to_string(),
        Err(_) => revision.to_string(),
    };
    let snapshot = repo.join("snapshots").join(&commit);
    if !snapshot.is_dir() {
        if !repo.is_dir() {
            bail!(
                "{repo_id}: not in the Hugging Face cache {} (no folder {})",
                cache.display(),
                repo.display()
            );
        }
        bail!(
            "{repo_id}: revision `{revision}` is not in the Hugging Face cache (no folder {})",
            snapshot.display()
        );
    }
    Ok(snapshot)
}

/// A model folder from a command-line value: an existing path as it is; else a Hub repository id,
/// optionally `ORG/NAME@REVISION`, found in [`cache_dir`]. Anything else is returned unchanged,
/// so loading it reports the missing folder.
pub fn resolve_model(spec: &str) -> Result<PathBuf> {
    let path = PathBuf::from(spec);
    if path.exists() {
        return Ok(path);
    }
    let (repo_id, revision) = match spec.split_once('@') {
        Some((repo, rev)) => (repo, Some(rev)),
        None => (spec, None),
    };
    if !is_repo_id(repo_id) {
        return Ok(path);
    }
    snapshot_in(&cache_dir()?, repo_id, revision)
}

/// A short name for a model folder: `NAME` for a cache snapshot `…/models--ORG--NAME/snapshots/C`
/// (whose own folder name is a commit hash), else the folder's name.
pub fn model_name(dir: &Path) -> String {
    let parts: Vec<String> =
        dir.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    if let [.., repo, snapshots, _] = parts.as_slice() {
        if snapshots == "snapshots" {
            if let Some((_, name)) = repo.strip_prefix("models--").and_then(|r| r.split_once("--"))
            {
                return name.to_string();
            }
        }
    }
    dir.file_name().map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cache laid out as huggingface_hub writes it, with one repository at two commits.
    fn fake_cache(root: &Path) -> PathBuf {
        let repo = repo_folder(root, "llava-hf/llava-1.5-7b-hf");
        for commit in ["aaa111", "bbb222"] {
            std::fs::create_dir_all(repo.join("snapshots").join(commit)).unwrap();
            std::fs::write(repo.join("snapshots").join(commit).join("config.json"), "{}").unwrap();
        }
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), "bbb222\n").unwrap();
        std::fs::write(repo.join("refs/v1"), "aaa111").unwrap();
        repo
    }

    #[test]
    fn repository_ids_resolve_to_snapshots() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = fake_cache(tmp.path());
        let id = "llava-hf/llava-1.5-7b-hf";
        assert_eq!(snapshot_in(tmp.path(), id, None).unwrap(), repo.join("snapshots/bbb222"));
        assert_eq!(snapshot_in(tmp.path(), id, Some("v1")).unwrap(), repo.join("snapshots/aaa111"));
        assert_eq!(
            snapshot_in(tmp.path(), id, Some("aaa111")).unwrap(),
            repo.join("snapshots/aaa111")
        );
        let e = snapshot_in(tmp.path(), id, Some("v2")).unwrap_err().to_string();
        assert!(e.contains("revision `v2`"), "{e}");
        assert_eq!(model_name(&repo.join("snapshots/aaa111")), "llava-1.5-7b-hf");
        assert_eq!(model_name(Path::new("models/tiny-imgque")), "tiny-imgque");
        let e = snapshot_in(tmp.path(), "llava-hf/other", None).unwrap_err().to_string();
        assert!(e.contains("llava-hf/other: not in the Hugging Face cache"), "{e}");
    }

    #[test]
    fn what_reads_as_a_repository_id() {
        assert!(is_repo_id("llava-hf/llava-1.5-7b-hf"));
        for not in ["llava", "./a/b", "a/b/c", "/abs", "a/", "../x", "a b/c"] {
            assert!(!is_repo_id(not), "{not}");
        }
    }
}
