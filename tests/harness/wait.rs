//! Waiting on conditions with a deadline instead of sleeping blindly.
use std::time::{Duration, Instant};

/// Default deadline for a condition in these tests.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Poll `check` until it returns `Some`, or fail with `what` after `deadline`.
pub fn wait_until<T>(what: &str, deadline: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(value) = check() {
            return value;
        }
        if Instant::now() >= end {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
