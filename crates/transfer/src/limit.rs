//! A rate limit shared by every transfer it is given to: one budget of
//! bytes per second for all uploads, or all downloads, of a node at once.
//!
//! A token bucket that may go into debt: each transfer takes what it just
//! moved and waits until the debt is paid back at the rate, so that the
//! total over every transfer holds the rate whatever their number. The
//! same bucket serves async tasks (uploads) and the blocking threads that
//! read downloads.
//!
//! The rate is shared by every clone and may be changed while transfers
//! run ([`RateLimiter::set_rate`]): the next wait of each transfer uses the
//! new rate. A limiter without a rate ([`RateLimiter::unlimited`]) never
//! waits, so a node can hand one limiter to every transfer from the start
//! and set or lift the limit later.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The slice of an unlimited limiter: large, yet small enough to add to a
/// file offset without overflow.
const UNLIMITED_SLICE: usize = 1 << 30;

/// Bytes per second shared by every transfer holding a clone.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    inner: Arc<Mutex<Bucket>>,
    /// Bytes per second; 0: no limit.
    rate: Arc<AtomicU64>,
}

#[derive(Debug)]
struct Bucket {
    /// Bytes that may go now without waiting (negative: owed).
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    /// A limit of `bytes_per_sec` (at least 1), with a burst of 1/10 s.
    pub fn new(bytes_per_sec: u64) -> RateLimiter {
        RateLimiter::starting(Some(bytes_per_sec.max(1)), Instant::now())
    }

    /// A limiter without a limit (until [`RateLimiter::set_rate`]).
    pub fn unlimited() -> RateLimiter {
        RateLimiter::starting(None, Instant::now())
    }

    fn starting(bytes_per_sec: Option<u64>, now: Instant) -> RateLimiter {
        RateLimiter {
            inner: Arc::new(Mutex::new(Bucket {
                tokens: 0.0,
                last: now,
            })),
            rate: Arc::new(AtomicU64::new(bytes_per_sec.unwrap_or(0))),
        }
    }

    /// The limit, bytes per second; `None`: no limit.
    pub fn rate(&self) -> Option<u64> {
        match self.rate.load(Ordering::Relaxed) {
            0 => None,
            r => Some(r),
        }
    }

    /// Whether a limit is set.
    pub fn is_limited(&self) -> bool {
        self.rate().is_some()
    }

    /// Sets the limit of every clone (at least 1 byte per second), or
    /// lifts it with `None`. Debt owed under the old rate is forgiven, so
    /// that a raised or lifted limit applies at once.
    pub fn set_rate(&self, bytes_per_sec: Option<u64>) {
        let mut b = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        b.tokens = b.tokens.max(0.0);
        self.rate
            .store(bytes_per_sec.map_or(0, |r| r.max(1)), Ordering::Relaxed);
    }

    /// The most bytes one transfer should move between two waits: 1/20 s
    /// of the rate (at least 1 KiB), so that the limit holds over short
    /// spans and a wait is never long.
    pub fn slice(&self) -> usize {
        match self.rate() {
            Some(rate) => usize::try_from((rate / 20).max(1024)).unwrap_or(UNLIMITED_SLICE),
            None => UNLIMITED_SLICE,
        }
    }

    /// Takes `n` bytes from the budget; returns how long to wait before
    /// moving more.
    pub fn reserve(&self, n: u64) -> Duration {
        self.reserve_at(n, Instant::now())
    }

    fn reserve_at(&self, n: u64, now: Instant) -> Duration {
        let mut b = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Some(rate) = self.rate() else {
            b.last = now;
            b.tokens = 0.0;
            return Duration::ZERO;
        };
        let rate = rate as f64;
        let burst = rate / 10.0;
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.last = now;
        b.tokens = (b.tokens + elapsed * rate).min(burst) - n as f64;
        if b.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-b.tokens / rate)
        }
    }

    /// Takes `n` bytes and waits (async) as long as the limit asks.
    pub async fn take(&self, n: u64) {
        let wait = self.reserve(n);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Takes `n` bytes and waits (a blocking thread) as long as the limit
    /// asks.
    pub fn take_blocking(&self, n: u64) {
        let wait = self.reserve(n);
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_of_every_taker_holds_the_rate() {
        let t0 = Instant::now();
        let l = RateLimiter::starting(Some(1000), t0);
        // Two takers of 500 bytes at once: the second waits for both.
        assert_eq!(l.reserve_at(500, t0), Duration::from_millis(500));
        assert_eq!(l.reserve_at(500, t0), Duration::from_millis(1000));
        // A second later, the debt is paid.
        assert_eq!(l.reserve_at(0, t0 + Duration::from_secs(1)), Duration::ZERO);
        // Idle time earns at most the burst (1/10 s).
        let later = t0 + Duration::from_secs(100);
        assert_eq!(l.reserve_at(100, later), Duration::ZERO);
        assert_eq!(l.reserve_at(100, later), Duration::from_millis(100));
        assert_eq!(l.slice(), 1024);
        assert_eq!(RateLimiter::new(1 << 20).slice(), (1 << 20) / 20);
    }

    #[test]
    fn a_rate_set_on_one_clone_holds_for_every_clone_at_once() {
        let t0 = Instant::now();
        let l = RateLimiter::starting(None, t0);
        let other = l.clone();
        assert_eq!(l.reserve_at(1 << 30, t0), Duration::ZERO);
        assert!(!other.is_limited());
        other.set_rate(Some(1000));
        assert_eq!(l.rate(), Some(1000));
        assert_eq!(l.reserve_at(1000, t0), Duration::from_secs(1));
        // Raised: the debt of the old rate is forgiven, the new rate holds.
        l.set_rate(Some(4000));
        assert_eq!(other.reserve_at(2000, t0), Duration::from_millis(500));
        // Lifted: no wait at all.
        other.set_rate(None);
        assert_eq!(l.reserve_at(1 << 30, t0), Duration::ZERO);
        assert_eq!(l.rate(), None);
        assert_eq!(l.slice(), UNLIMITED_SLICE);
    }
}
