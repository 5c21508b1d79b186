//! The one backoff of the project: exponential with jitter, for a cloud call's retries and for a
//! resource's requeue after failed passes alike (backon's builder, already in the tree through
//! kube-runtime).

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// The delay before retry `attempt` (1 = the first): `base` doubled per attempt up to `cap`, and
/// a random point in the upper half of that, so callers that failed together do not retry
/// together. backon adds its jitter above the delay, so it is asked for half of each.
pub fn delay(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let half = |d: Duration| (d / 2).max(Duration::from_millis(1));
    ExponentialBuilder::default()
        .with_min_delay(half(base))
        .with_max_delay(half(cap))
        .with_jitter()
        .without_max_times()
        .build()
        .nth(attempt.saturating_sub(1).min(64) as usize)
        .unwrap_or(cap)
        .min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_within_its_upper_half() {
        let (base, cap) = (Duration::from_secs(1), Duration::from_secs(60));
        for (attempt, ceiling) in [(1, 1), (2, 2), (3, 4), (7, 60), (40, 60)] {
            let ceiling = Duration::from_secs(ceiling);
            for _ in 0..50 {
                let delay = delay(base, cap, attempt);
                assert!(
                    delay >= ceiling / 2 && delay <= ceiling,
                    "attempt {attempt}: {delay:?} not in [{:?}, {ceiling:?}]",
                    ceiling / 2
                );
            }
        }
    }
}
