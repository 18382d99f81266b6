//! When a poll loop stops spinning and sleeps.
//!
//! After a poll that found nothing the loop keeps polling for [`SPIN`] (a burst may be
//! landing), then sleeps in `poll(2)` until a queue is readable. The budget is time, not a
//! count of polls: a poll of a worker with many ports or stages costs more than one of a
//! bare forwarder, and a count would make the heavier loop burn more CPU before sleeping.
//! The clock is read once every [`CHECK_EVERY`] empty polls.

use std::time::{Duration, Instant};

/// How long a loop keeps polling after the last frame.
pub const SPIN: Duration = Duration::from_micros(5);
/// Empty polls between clock reads.
const CHECK_EVERY: u32 = 16;

#[derive(Default)]
pub struct Idle {
    empty: u32,
    since: Option<Instant>,
}

impl Idle {
    /// Whether to sleep now, after a poll that received `received` frames.
    #[inline]
    pub fn should_sleep(&mut self, received: usize) -> bool {
        if received > 0 {
            self.empty = 0;
            self.since = None;
            return false;
        }
        self.empty += 1;
        if self.empty % CHECK_EVERY != 1 {
            return false;
        }
        let now = Instant::now();
        match self.since {
            None => {
                self.since = Some(now);
                false
            }
            Some(t) if now.duration_since(t) >= SPIN => {
                self.empty = 0;
                self.since = None;
                true
            }
            Some(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeps_only_after_the_spin_time_and_traffic_restarts_it() {
        let mut idle = Idle::default();
        // Read before the first poll starts the idle clock, so `start` is never later than it.
        let start = Instant::now();
        assert!(
            !idle.should_sleep(0),
            "the first empty poll starts the clock"
        );
        let mut polls = 1;
        while !idle.should_sleep(0) {
            polls += 1;
            assert!(polls < 100_000_000, "never slept");
        }
        assert!(start.elapsed() >= SPIN);
        assert!(!idle.should_sleep(0));
        assert!(!idle.should_sleep(5), "a frame resets the spin");
        assert!(!idle.should_sleep(0));
    }
}
