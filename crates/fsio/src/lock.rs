//! Advisory exclusive locks (`flock`) that say who holds them.
//!
//! The lock file holds `pid`, `host` and `started` (Unix seconds) of the holder while it is
//! held, and is emptied when released. The kernel drops a killed process's `flock`, so a lock
//! file with content but no `flock` on it is a stale lock: it is taken over with a note.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::atomic::named;

/// An exclusive lock held until dropped.
#[derive(Debug)]
pub struct FileLock {
    file: File,
    path: PathBuf,
}

/// Who holds (or held) a lock, as recorded in its file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Holder {
    /// Process id of the holder; `None` when the file did not say (an old or torn record).
    pub pid: Option<u32>,
    /// Host name the holder ran on (a pid is only meaningful there).
    pub host: Option<String>,
    /// When the lock was taken, in seconds since the Unix epoch.
    pub started: Option<u64>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pid = self.pid.map_or_else(|| "an unknown process".to_string(), |p| format!("pid {p}"));
        write!(f, "{pid} on host {}", self.host.as_deref().unwrap_or("unknown"))?;
        if let Some(started) = self.started {
            let ago = unix_now().saturating_sub(started);
            write!(f, ", started {ago} s ago (Unix time {started})")?;
        }
        Ok(())
    }
}

impl FileLock {
    /// Takes the lock at `path` (creating the file) without waiting. `what` says what the lock
    /// protects (e.g. "shard 0/4 of runs/mme"); a refusal names it, the file and the holder.
    pub fn acquire(path: &Path, what: &str) -> io::Result<FileLock> {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| named(path, "cannot open the lock file", e))?;
        // SAFETY: flock on a file descriptor this function owns; no memory is passed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::WouldBlock {
                return Err(named(path, "cannot lock", e));
            }
            let holder = read_holder(&mut file).unwrap_or_default();
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "{}: {what} is being written by {holder}; wait for it to finish or stop it",
                    path.display()
                ),
            ));
        }
        let stale =
            read_holder(&mut file).map_err(|e| named(path, "cannot read the lock file", e))?;
        if stale != Holder::default() {
            eprintln!("note: {}: taking over a stale lock of {what} left by {stale} (no longer holding it)", path.display());
        }
        let me =
            format!("pid={}\nhost={}\nstarted={}\n", std::process::id(), host_name(), unix_now());
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(me.as_bytes()))
            .and_then(|()| file.sync_data())
            .map_err(|e| named(path, "cannot write the lock file", e))?;
        Ok(FileLock { file, path: path.to_path_buf() })
    }

    /// The lock file this lock holds.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The holder recorded in the lock file at `path` (empty when free or never used).
    pub fn holder(path: &Path) -> io::Result<Holder> {
        read_holder(&mut File::open(path)?)
    }
}

impl Drop for FileLock {
    /// Empties the file (a clean release is not a stale lock); closing the file drops the `flock`.
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
    }
}

fn read_holder(file: &mut File) -> io::Result<Holder> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0))?;
    // A lock file is three short lines; anything longer is not ours and only its start is read.
    file.take(4096).read_to_string(&mut text)?;
    let field = |key: &str| {
        text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('=')).map(str::trim)
    };
    Ok(Holder {
        pid: field("pid").and_then(|v| v.parse().ok()),
        host: field("host").map(str::to_string),
        started: field("started").and_then(|v| v.parse().ok()),
    })
}

/// Whether a process with this id runs on this machine (a temporary named after a dead one is
/// stale).
pub fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is writable for its full length, which is what is passed.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_holder_and_freed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shard.lock");
        let first = FileLock::acquire(&path, "shard 0/1").unwrap();
        // flock locks belong to the open file description: a second open in the same process
        // conflicts like another process would.
        let err = FileLock::acquire(&path, "shard 0/1").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("shard.lock: shard 0/1 is being written by pid "), "{msg}");
        assert!(
            msg.contains(&format!("pid {} on host {}", std::process::id(), host_name())),
            "{msg}"
        );
        assert_eq!(FileLock::holder(&path).unwrap().pid, Some(std::process::id()));
        drop(first);
        assert_eq!(FileLock::holder(&path).unwrap(), Holder::default());
        FileLock::acquire(&path, "shard 0/1").unwrap();
    }

    #[test]
    fn this_process_is_alive_and_an_unused_id_is_not() {
        assert!(process_alive(std::process::id()));
        assert!(!process_alive(999_999_999));
    }

    #[test]
    fn a_stale_lock_file_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shard.lock");
        std::fs::write(&path, "pid=999999999\nhost=gone\nstarted=1\n").unwrap();
        let lock = FileLock::acquire(&path, "shard 0/1").unwrap();
        let holder = FileLock::holder(lock.path()).unwrap();
        assert_eq!((holder.pid, holder.host), (Some(std::process::id()), Some(host_name())));
    }
}
