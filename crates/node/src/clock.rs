//! The node's clock.

/// The time on tokio's clock, as the overlay takes it: under a paused clock
/// (`start_paused` tests) the overlay's timers follow the paused time.
pub(crate) fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}
