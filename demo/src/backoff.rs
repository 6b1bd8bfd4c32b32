//! Exponential backoff between reconnection attempts.
//!
//! Both programs must never exit on a lost connection: they wait and try again, quickly at
//! first (a broker restart takes seconds), then no more often than every few seconds so a long
//! outage does not flood the logs. Callers sleep with `tokio::select!` against their shutdown
//! signal, so this type only computes delays (a retry crate would own the loop, and these
//! loops must also watch faults and shutdown).

use std::time::Duration;

/// Doubling delays from `initial` up to `max`, reset after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// First delay, and the delay again after [`Backoff::reset`].
    initial: Duration,
    /// Upper bound: an outage of any length is retried at least this often.
    max: Duration,
    /// The delay the next call to [`Backoff::next_delay`] returns.
    next: Duration,
}

impl Backoff {
    /// Delays start at `initial` and double up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            next: initial,
        }
    }

    /// The delay to wait before the next attempt; each call doubles the following one.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// Called after a successful connection, so the next outage starts with short delays.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

impl Default for Backoff {
    /// 200 ms doubling to 5 s: a restarted broker is found within seconds.
    fn default() -> Self {
        Self::new(Duration::from_millis(200), Duration::from_secs(5))
    }
}

#[cfg(test)]
mod tests {
    use super::Backoff;
    use std::time::Duration;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let delays: Vec<u64> = (0..5)
            .map(|_| backoff.next_delay().as_millis() as u64)
            .collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(100));
    }
}
