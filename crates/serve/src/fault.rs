//! Faults injected on purpose, to test the failure paths: a panic inside the engine must fail
//! only the requests it hit (a 500 with OpenAI's error JSON) and the server must go on serving;
//! a delay makes a request slow enough for a test to act while it runs. A [`FaultPlan`] is
//! given to the server when it is built (`Server::start_with_faults`); it can hold a fault only
//! with the `fault-injection` feature, which only this crate's tests turn on. Without it the
//! plan is empty and its checks compile to nothing, so no request can trigger a fault in a
//! release build.

/// Where in the engine a fault fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultPoint {
    /// While prefilling a prompt chunk.
    Prefill,
    /// During a batched decode step (a panic fails every sequence in that step).
    DecodeStep,
}

/// What happens at a fault.
#[cfg(feature = "fault-injection")]
#[derive(Debug, Clone, Copy)]
enum Fault {
    Panic,
    Delay(std::time::Duration),
}

/// The faults a server injects (none by default).
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    /// A fault at a point for every sequence whose templated prompt contains the marker.
    #[cfg(feature = "fault-injection")]
    faults: Vec<(FaultPoint, String, Fault)>,
}

#[cfg(feature = "fault-injection")]
impl FaultPlan {
    /// Panics at `point` for every sequence whose templated prompt contains `marker`.
    pub fn panic_at(mut self, point: FaultPoint, marker: &str) -> Self {
        self.faults.push((point, marker.to_string(), Fault::Panic));
        self
    }

    /// Sleeps `delay` at `point` for every sequence whose templated prompt contains `marker`.
    pub fn delay_at(mut self, point: FaultPoint, marker: &str, delay: std::time::Duration) -> Self {
        self.faults.push((point, marker.to_string(), Fault::Delay(delay)));
        self
    }
}

impl FaultPlan {
    /// Injects the plan's faults at `point` for `prompt` (nothing without the feature).
    #[inline]
    pub(crate) fn check(&self, point: FaultPoint, prompt: &str) {
        #[cfg(feature = "fault-injection")]
        for (at, marker, fault) in &self.faults {
            if *at == point && prompt.contains(marker.as_str()) {
                match fault {
                    Fault::Panic => panic!("injected fault at {point:?}"),
                    Fault::Delay(delay) => std::thread::sleep(*delay),
                }
            }
        }
        #[cfg(not(feature = "fault-injection"))]
        let _ = (point, prompt);
    }
}
