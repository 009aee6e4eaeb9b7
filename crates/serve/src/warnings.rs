//! Warnings a server logs once. A request at a budget the model was not trained with gets the
//! same warning every time; logged per request it would bury the log, so each distinct message
//! is written the first time only (the metric `tokenscale_untrained_budget_requests_total`
//! counts every such request). Distinct messages are bounded: past [`MAX_DISTINCT`] no new one
//! is remembered or logged, so clients cannot grow the set without bound.

use std::collections::HashSet;
use std::sync::Mutex;

/// Most distinct messages remembered.
pub const MAX_DISTINCT: usize = 256;

/// Messages already logged, so that each is logged once (at most [`MAX_DISTINCT`]).
#[derive(Default)]
pub struct WarnOnce {
    seen: Mutex<HashSet<String>>,
}

impl WarnOnce {
    /// Whether `message` is new (then it is remembered and the caller logs it). The message
    /// that fills the set is still new; after it every new message is refused.
    pub fn first_time(&self, message: &str) -> bool {
        // A poisoned lock only means another thread panicked while inserting: the set is intact.
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= MAX_DISTINCT || seen.contains(message) {
            return false;
        }
        seen.insert(message.to_string());
        true
    }

    /// Logs `message` on standard error the first time it is seen.
    pub fn warn(&self, message: &str) {
        if self.first_time(message) {
            eprintln!("warning: {message} (said once; later requests like it are counted in tokenscale_untrained_budget_requests_total)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_message_is_new_once_and_the_set_is_bounded() {
        let once = WarnOnce::default();
        assert!(once.first_time("n_l = 16"));
        assert!(!once.first_time("n_l = 16"));
        assert!(once.first_time("n_l = 32"));
        for i in 2..MAX_DISTINCT {
            assert!(once.first_time(&format!("message {i}")));
        }
        assert!(!once.first_time("one too many"));
        assert!(!once.first_time("n_l = 32"));
    }
}
