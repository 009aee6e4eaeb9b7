//! Per-thread buffers kept between calls: a fresh multi-MiB buffer per call costs page faults and
//! zeroing comparable to a whole product.

use std::cell::RefCell;
use std::thread::LocalKey;

/// Runs `f` with this thread's buffer from `key`, or with a fresh one when that buffer is in use
/// (a product started inside a rayon task can be re-entered on this thread while it waits for its
/// own workers).
pub(crate) fn with_buffer<T, R>(
    key: &'static LocalKey<RefCell<Vec<T>>>,
    f: impl FnOnce(&mut Vec<T>) -> R,
) -> R {
    key.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buffer) => f(&mut buffer),
        Err(_) => f(&mut Vec::new()),
    })
}
