//! Whole-or-nothing output files: temp file in the target's folder, write, `fsync`, rename,
//! `fsync` the folder.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Temp names are unique per process and call, so two threads writing the same target do not
/// write into one temp file.
static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` whole or not at all (see [`write_atomic_with`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |tmp| {
        std::fs::write(tmp, bytes).map_err(|e| named(tmp, "cannot write", e))
    })
}

/// Calls `write` with a temporary path in `path`'s folder (`.NAME.tmp-PID-N`), then `fsync`s
/// the temporary file, renames it onto `path` and `fsync`s the folder. When any step fails the
/// temporary file is removed and `path` keeps its previous content (or stays absent).
pub fn write_atomic_with<E: From<io::Error>>(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), E> {
    let tmp = temp_path(path)?;
    remove_stale_temporaries(path)?;
    let result = write(&tmp).and_then(|()| commit(&tmp, path).map_err(E::from));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `fsync`s a folder, so a rename or a new entry in it survives a power cut.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| named(dir, "cannot sync the folder", e))
}

/// `fsync`s one written file (its data reaches the disk before a rename publishes it).
pub fn sync_file(path: &Path) -> io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| named(path, "cannot sync", e))
}

/// `fsync`s every file and folder under `dir` (and `dir` itself): a folder written under a
/// temporary name and then renamed into place as a whole (checkpoints, extracted models) is
/// durable before the rename publishes it.
pub fn sync_tree(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| named(dir, "cannot list", e))? {
        let path = entry.map_err(|e| named(dir, "cannot list", e))?.path();
        if path.is_dir() {
            sync_tree(&path)?;
        } else {
            sync_file(&path)?;
        }
    }
    sync_dir(dir)
}

/// Publishes the complete folder `tmp` (written under a temporary name beside `dest`) as `dest`:
/// its files reach the disk first, an earlier `dest` goes entirely (no file of an older version
/// survives beside the new ones), the rename puts `tmp` in its place and the parent folder is
/// `fsync`ed.
pub fn replace_dir(tmp: &Path, dest: &Path) -> io::Result<()> {
    sync_tree(tmp)?;
    if dest.exists() {
        std::fs::remove_dir_all(dest)
            .map_err(|e| named(dest, "cannot remove the previous copy", e))?;
    }
    std::fs::rename(tmp, dest)
        .map_err(|e| named(dest, &format!("cannot move {} into place", tmp.display()), e))?;
    sync_dir(parent(dest))
}

fn temp_path(path: &Path) -> io::Result<PathBuf> {
    let dir = parent(path);
    if !dir.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{}: output folder does not exist", dir.display()),
        ));
    }
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("{}: not a file path", path.display()))
    })?;
    let n = NEXT_TEMP.fetch_add(1, Ordering::Relaxed);
    Ok(dir.join(format!(".{}.tmp-{}-{n}", name.to_string_lossy(), std::process::id())))
}

/// Removes the temporaries of `path` that killed processes left (`.NAME.tmp-PID-N` of a PID that
/// no longer runs); those of live processes are theirs.
fn remove_stale_temporaries(path: &Path) -> io::Result<()> {
    let Some(name) = path.file_name() else { return Ok(()) };
    let prefix = format!(".{}.tmp-", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(parent(path)) else { return Ok(()) };
    for entry in entries.filter_map(|e| e.ok()) {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = file_name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.split('-').next()?.parse::<u32>().ok())
        else {
            continue;
        };
        if !crate::lock::process_alive(pid) {
            let stale = entry.path();
            std::fs::remove_file(&stale)
                .map_err(|e| named(&stale, "cannot remove a stale temporary file", e))?;
        }
    }
    Ok(())
}

fn commit(tmp: &Path, path: &Path) -> io::Result<()> {
    sync_file(tmp)?;
    std::fs::rename(tmp, path).map_err(|e| named(path, "cannot move into place", e))?;
    sync_dir(parent(path))
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// The error with the file's name in front, keeping its kind (a full disk stays `StorageFull`).
pub(crate) fn named(path: &Path, what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {what}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn sync_tree_reaches_every_file_and_names_a_missing_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("a.json"), b"{}").unwrap();
        std::fs::write(dir.path().join("sub/b.bin"), b"01").unwrap();
        sync_tree(dir.path()).unwrap();
        let missing = dir.path().join("absent");
        let err = sync_tree(&missing).unwrap_err().to_string();
        assert!(err.contains("absent"), "{err}");
    }

    #[test]
    fn replace_dir_leaves_only_the_new_folder() {
        let dir = tempfile::tempdir().unwrap();
        let (tmp, dest) = (dir.path().join(".out.tmp-1"), dir.path().join("out"));
        std::fs::create_dir_all(dest.join("old-sub")).unwrap();
        std::fs::write(dest.join("stale.txt"), b"old").unwrap();
        std::fs::create_dir(&tmp).unwrap();
        std::fs::write(tmp.join("new.txt"), b"new").unwrap();
        replace_dir(&tmp, &dest).unwrap();
        assert_eq!(names(dir.path()), ["out"]);
        assert_eq!(names(&dest), ["new.txt"]);
        let err = replace_dir(&tmp, &dest).unwrap_err().to_string();
        assert!(err.contains(".out.tmp-1"), "{err}");
    }

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("scores.json");
        write_atomic(&target, b"old").unwrap();
        write_atomic(&target, b"new").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        assert_eq!(names(dir.path()), ["scores.json"]);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_removes_the_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("scores.csv");
        write_atomic(&target, b"old").unwrap();
        let err = write_atomic_with(&target, |tmp| {
            std::fs::write(tmp, b"half")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("disk full"));
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
        assert_eq!(names(dir.path()), ["scores.csv"]);
    }

    #[test]
    fn temporaries_of_dead_processes_are_removed_and_those_of_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("model.safetensors");
        let dead = dir.path().join(".model.safetensors.tmp-999999999-3");
        let live = dir.path().join(format!(".model.safetensors.tmp-{}-99", std::process::id()));
        let other = dir.path().join(".loss.csv.tmp-999999999-0");
        for p in [&dead, &live, &other] {
            std::fs::write(p, b"half").unwrap();
        }
        write_atomic(&target, b"whole").unwrap();
        assert!(!dead.exists() && live.exists() && other.exists());
    }

    #[test]
    fn a_missing_folder_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_atomic(&dir.path().join("no/such/x.md"), b"x").unwrap_err();
        assert!(err.to_string().contains("no/such: output folder does not exist"), "{err}");
    }

    #[test]
    fn a_folder_in_the_targets_place_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("scores.md")).unwrap();
        let err = write_atomic(&dir.path().join("scores.md"), b"x").unwrap_err();
        assert!(err.to_string().contains("scores.md: cannot move into place"), "{err}");
        assert_eq!(names(dir.path()), ["scores.md"]);
    }
}
