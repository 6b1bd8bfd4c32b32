//! One pacing for every loop that retries after a failure: the engine connection, the outbox,
//! anything that calls a server again. The delay starts small, doubles after each failure up to a
//! ceiling, and goes back to the start after a success. Waiting always races shutdown, so no
//! retry loop holds up a stop.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Exponential backoff state for one retry loop.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// The first delay, and the delay after [`Backoff::reset`].
    first: Duration,
    /// The ceiling no delay goes above.
    max: Duration,
    /// The delay the next failure waits.
    next: Duration,
}

impl Backoff {
    /// A backoff that waits `first`, then twice as long after each failure, at most `max`.
    pub fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max,
            next: first.min(max),
        }
    }

    /// The delay to wait after this failure; the one after it doubles.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// After a success: the next failure waits the first delay again.
    pub fn reset(&mut self) {
        self.next = self.first.min(self.max);
    }

    /// The delay before attempt `attempts + 1` for a retry loop whose count of attempts is
    /// stored rather than held (the outbox keeps it in SQLite): `first` after the first attempt,
    /// doubling, at most `max`.
    pub fn nth(first: Duration, max: Duration, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(30);
        first.saturating_mul(1u32 << doublings).min(max)
    }

    /// Waits the next delay, or less if `shutdown` fires first. Returns `false` on shutdown, so
    /// the loop stops: `if !backoff.wait(&shutdown).await { return; }`.
    pub async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_ceiling_and_reset() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let waits: Vec<u128> = (0..8).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(
            waits,
            vec![500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]
        );
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(500));
    }

    #[test]
    fn nth_counts_from_the_stored_attempts() {
        let max = Duration::from_secs(300);
        let waits: Vec<u64> = (1..=9)
            .map(|n| Backoff::nth(Duration::from_secs(2), max, n).as_secs())
            .collect();
        assert_eq!(waits, vec![2, 4, 8, 16, 32, 64, 128, 256, 300]);
        assert_eq!(Backoff::nth(Duration::from_secs(2), max, u32::MAX), max);
    }

    #[tokio::test(start_paused = true)]
    async fn wait_stops_at_shutdown() {
        let shutdown = CancellationToken::new();
        let mut b = Backoff::new(Duration::from_secs(3600), Duration::from_secs(3600));
        let started = tokio::time::Instant::now();
        let waiter = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move { b.wait(&shutdown).await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        shutdown.cancel();
        assert!(!waiter.await.unwrap());
        assert!(started.elapsed() < Duration::from_secs(3600));
    }

    #[tokio::test(start_paused = true)]
    async fn wait_sleeps_the_delay_when_not_stopped() {
        let shutdown = CancellationToken::new();
        let mut b = Backoff::new(Duration::from_secs(5), Duration::from_secs(60));
        let started = tokio::time::Instant::now();
        assert!(b.wait(&shutdown).await);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }
}
