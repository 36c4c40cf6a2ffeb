//! A wake-up primitive for host loops: a generation counter behind a mutex and a condvar, the
//! model's stand-in for an eventfd. `notify` never blocks for long and never loses a wake-up: a
//! waiter passes the generation it last saw and returns as soon as it differs.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// An eventfd-like notifier.
#[derive(Debug, Default)]
pub struct Notifier {
    gen: Mutex<u64>,
    cv: Condvar,
}

impl Notifier {
    /// A fresh notifier at generation 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Signals every waiter.
    pub fn notify(&self) {
        let mut g = self.gen.lock().unwrap_or_else(|e| e.into_inner());
        *g = g.wrapping_add(1);
        self.cv.notify_all();
    }

    /// The current generation.
    pub fn generation(&self) -> u64 {
        *self.gen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until the generation differs from `seen` or `timeout` passes; returns the
    /// generation observed.
    pub fn wait(&self, seen: u64, timeout: Duration) -> u64 {
        let g = self.gen.lock().unwrap_or_else(|e| e.into_inner());
        let (g, _) = self
            .cv
            .wait_timeout_while(g, timeout, |g| *g == seen)
            .unwrap_or_else(|e| e.into_inner());
        *g
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_notification_before_the_wait_is_not_lost() {
        let n = Notifier::new();
        let seen = n.generation();
        n.notify();
        assert_ne!(n.wait(seen, Duration::from_secs(5)), seen);
    }

    #[test]
    fn wait_times_out_without_notification() {
        let n = Notifier::new();
        let t = std::time::Instant::now();
        assert_eq!(n.wait(0, Duration::from_millis(20)), 0);
        assert!(t.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn wakes_another_thread() {
        let n = Arc::new(Notifier::new());
        let n2 = n.clone();
        let h = std::thread::spawn(move || n2.wait(0, Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(10));
        n.notify();
        assert_eq!(h.join().unwrap(), 1);
    }
}
