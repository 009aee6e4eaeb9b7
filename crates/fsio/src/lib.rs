//! tokenscale-fsio: how every tokenscale output reaches the disk.
//!
//! - [`atomic`]: a file is written beside its target, `fsync`ed, renamed into place and its folder
//!   `fsync`ed, so a reader (or a rerun after a kill, a full disk or a power cut) sees the old
//!   file or the new one, never half of one; a folder written under a temporary name is
//!   published the same way ([`replace_dir`]).
//! - [`lock`]: an advisory lock (`flock`) whose file records who holds it, so a second writer is
//!   refused with the holder's pid, host and start time, and the lock of a killed process is
//!   taken over (the kernel releases a dead holder's `flock`).

#![warn(missing_docs)]

pub mod atomic;
pub mod lock;

pub use atomic::{replace_dir, sync_dir, sync_file, sync_tree, write_atomic, write_atomic_with};
pub use lock::{process_alive, FileLock};
