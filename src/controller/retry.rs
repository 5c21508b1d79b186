//! When a resource whose pass failed is tried again: backoff that grows with its consecutive
//! failures (kube-runtime keeps no per-object count, kube issue #1916), by error class.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;

use crate::cloud::backoff;

/// Failure counts per object (by `Kind/namespace/name`: two kinds may hold one name); an entry
/// goes with the object's first success or its deletion.
#[derive(Default)]
pub struct Failures(Mutex<HashMap<String, u32>>);

impl Failures {
    pub fn record(&self, key: &str) -> u32 {
        let mut counts = self.0.lock();
        let count = counts.entry(key.to_string()).or_default();
        *count = count.saturating_add(1);
        *count
    }

    pub fn clear(&self, key: &str) {
        self.0.lock().remove(key);
    }

    /// `key`'s consecutive failures so far.
    pub fn attempts(&self, key: &str) -> u32 {
        self.0.lock().get(key).copied().unwrap_or(0)
    }
}

/// Requeue delay after the `attempt`-th consecutive failure: retryable errors start at 1 s and
/// cap at 1 min; terminal ones (someone must fix something) start at 5 s and cap at 5 min.
pub fn delay(retryable: bool, attempt: u32) -> Duration {
    let (base, cap) = if retryable {
        (Duration::from_secs(1), Duration::from_secs(60))
    } else {
        (Duration::from_secs(5), Duration::from_secs(300))
    };
    backoff::delay(base, cap, attempt)
}
