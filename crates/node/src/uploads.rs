//! Uploads in progress and the bytes sent, for the user interface, kept
//! from the transfer server's notices.

use rutella_transfer::UploadMeter;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The most uploads listed at once (the server's own caps keep the real
/// number lower; this only bounds the table).
const MAX_LISTED: usize = 1024;

/// The span an upload's current speed is measured over.
const SPEED_WINDOW: Duration = Duration::from_secs(5);

/// Samples kept per upload for its speed (taken when the list is read).
const MAX_SAMPLES: usize = 32;

/// One upload in progress.
#[derive(Debug, Clone)]
pub struct UploadInfo {
    /// The downloading peer (its TCP address).
    pub peer: SocketAddr,
    /// The file, as named inside its shared folder.
    pub name: String,
    /// The file's size, when it could be read.
    pub size: Option<u64>,
    /// When it started.
    pub started: Instant,
    /// File bytes sent so far.
    pub sent: u64,
    /// Bytes per second over about the last 5 seconds (since the start
    /// when younger).
    pub speed: f64,
}

struct Open {
    info: UploadInfo,
    meter: UploadMeter,
    /// (when, bytes sent then), oldest first.
    samples: VecDeque<(Instant, u64)>,
}

impl Open {
    /// Reads the meter now: the bytes sent and the speed over the window.
    fn refresh(&mut self, now: Instant) {
        let sent = self.meter.get();
        self.samples.push_back((now, sent));
        // Keep one sample at or before the window's start, so that the
        // speed is measured over the whole window once it is that old.
        while self.samples.len() > 2
            && self
                .samples
                .get(1)
                .is_some_and(|(t, _)| now.saturating_duration_since(*t) >= SPEED_WINDOW)
        {
            self.samples.pop_front();
        }
        while self.samples.len() > MAX_SAMPLES {
            self.samples.pop_front();
        }
        self.info.sent = sent;
        self.info.speed = match self.samples.front() {
            Some((t, b)) => {
                let secs = now.saturating_duration_since(*t).as_secs_f64();
                if secs > 0.0 {
                    sent.saturating_sub(*b) as f64 / secs
                } else {
                    0.0
                }
            }
            None => 0.0,
        };
    }
}

#[derive(Default)]
struct Table {
    open: Vec<Open>,
}

/// The table, shared by the client handles and the task that reads the
/// server's notices.
#[derive(Clone, Default)]
pub(crate) struct Uploads {
    table: Arc<Mutex<Table>>,
    sent: Arc<AtomicU64>,
}

impl Uploads {
    /// An upload started; `meter` counts its bytes as they go out.
    pub(crate) fn started(&self, info: UploadInfo, meter: UploadMeter) {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if t.open.len() >= MAX_LISTED {
            t.open.remove(0);
        }
        let mut samples = VecDeque::new();
        samples.push_back((info.started, meter.get()));
        t.open.push(Open {
            info,
            meter,
            samples,
        });
    }

    pub(crate) fn ended(&self, peer: SocketAddr, name: &str, bytes: u64) {
        self.sent.fetch_add(bytes, Ordering::Relaxed);
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = t
            .open
            .iter()
            .position(|u| u.info.peer == peer && u.info.name == name)
        {
            t.open.remove(k);
        }
    }

    pub(crate) fn list(&self) -> Vec<UploadInfo> {
        let now = Instant::now();
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        t.open
            .iter_mut()
            .map(|u| {
                u.refresh(now);
                u.info.clone()
            })
            .collect()
    }

    /// File bytes sent by uploads that ended.
    pub(crate) fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speed_is_over_the_last_window() {
        let t0 = Instant::now();
        let meter = UploadMeter::default();
        let mut u = Open {
            info: UploadInfo {
                peer: SocketAddr::from(([127, 0, 0, 1], 1)),
                name: "a".into(),
                size: None,
                started: t0,
                sent: 0,
                speed: 0.0,
            },
            meter: meter.clone(),
            samples: VecDeque::from([(t0, 0)]),
        };
        // 1000 B/s for 10 s, then 100 B/s for 10 s, read every second.
        let mut total = 0u64;
        for s in 1..=20u64 {
            total += if s <= 10 { 1000 } else { 100 };
            let now = t0 + Duration::from_secs(s);
            // The meter only grows: set it to the running total.
            let before = u.meter.get();
            u.meter.add(total - before);
            u.refresh(now);
        }
        assert_eq!(u.info.sent, 10 * 1000 + 10 * 100);
        // Over the last 5 s only: 100 B/s, not the average of 550.
        assert!((u.info.speed - 100.0).abs() < 1.0, "{}", u.info.speed);
        assert!(u.samples.len() <= MAX_SAMPLES);
    }
}
