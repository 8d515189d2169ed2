//! Messages a tenant can cause, written at most once per interval from each place: a client
//! that provokes one on purpose must not fill the host's disk with the service's log.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One call site's allowance.
#[derive(Debug, Default)]
pub struct Throttle {
    /// When the last message went out, in ms after the process's first use of any throttle
    /// (0: never).
    last: AtomicU64,
    /// Messages held back since.
    held: AtomicU64,
}

fn clock_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

impl Throttle {
    pub const fn new() -> Self {
        Throttle { last: AtomicU64::new(0), held: AtomicU64::new(0) }
    }

    /// Whether to write the message now (`Some(n)`: `n` were held back since the last one),
    /// at most once per `every`.
    pub fn allow(&self, every: Duration) -> Option<u64> {
        let now = clock_ms();
        let last = self.last.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < every.as_millis() as u64 {
            self.held.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        // One thread wins the interval.
        if self.last.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err() {
            self.held.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.held.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_message_per_interval_and_the_count_of_the_others() {
        let t = Throttle::new();
        assert_eq!(t.allow(Duration::from_millis(200)), Some(0));
        for _ in 0..1000 {
            assert_eq!(t.allow(Duration::from_millis(200)), None);
        }
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(t.allow(Duration::from_millis(200)), Some(1000));
        assert_eq!(t.allow(Duration::from_millis(200)), None);
    }
}
