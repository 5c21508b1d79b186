//! The one read-through mechanism of the cloud-state caches (the user view, the directory and
//! RAM preference caches): a reader that finds a value young enough uses it; else one reader per
//! key reads while the others wait for that read and look again (one call in flight per key).
//! A read in flight is a map entry, not a lock held per key, so the caches keep no per-key
//! async lock (the user view holds 100,000 users); a reader dropped half way frees its waiters,
//! who then read themselves; and a value recorded while a read was in flight (a write the cloud
//! acknowledged) is newer than that read's answer and is not overwritten by it.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::watch;

/// The reads in flight of a cache, by key (dropping a sender wakes its waiters).
pub struct Flights<K>(HashMap<K, watch::Sender<()>>);

impl<K> Default for Flights<K> {
    fn default() -> Self {
        Self(HashMap::new())
    }
}

/// Ends a read in flight, also when its reader is dropped half way, so its waiters read instead.
struct Flight<'a, S, K: Eq + Hash, F: Fn(&mut S) -> &mut Flights<K>> {
    state: &'a Mutex<S>,
    flights: &'a F,
    key: Option<K>,
}

impl<S, K: Eq + Hash, F: Fn(&mut S) -> &mut Flights<K>> Drop for Flight<'_, S, K, F> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            (self.flights)(&mut self.state.lock()).0.remove(&key);
        }
    }
}

/// What `cached` finds in `state`; else, unless another reader of the same key (`key`) is
/// reading (then it waits for that read and looks again), `read`'s answer, kept by `keep`. The
/// lock is never held across the read. An error is not kept: the next reader tries again.
pub async fn read_through<S, K, T, R, E, Fut>(
    state: &Mutex<S>,
    flights: impl Fn(&mut S) -> &mut Flights<K>,
    key: impl Fn() -> K,
    cached: impl Fn(&S) -> Option<T>,
    read: impl FnOnce() -> Fut,
    keep: impl FnOnce(&mut S, R) -> T,
) -> Result<T, E>
where
    K: Eq + Hash + Clone,
    Fut: Future<Output = Result<R, E>>,
{
    let mut flight = Flight {
        state,
        flights: &flights,
        key: None,
    };
    loop {
        let mut waiting = {
            let mut guard = state.lock();
            if let Some(value) = cached(&guard) {
                return Ok(value);
            }
            let key = key();
            let map = &mut flights(&mut guard).0;
            match map.get(&key) {
                Some(sender) => sender.subscribe(),
                None => {
                    map.insert(key.clone(), watch::channel(()).0);
                    flight.key = Some(key);
                    break;
                }
            }
        };
        // Err: the read ended (its sender is gone); either way, look again.
        let _ = waiting.changed().await;
    }
    let answer = read().await;
    let mut guard = state.lock();
    if let Some(key) = flight.key.take() {
        flights(&mut guard).0.remove(&key);
    }
    Ok(keep(&mut guard, answer?))
}

/// A value per key with when the cloud said it, read through `read_through`.
pub struct ReadThrough<K, V>(Mutex<Kept<K, V>>);

struct Kept<K, V> {
    values: HashMap<K, (V, Instant)>,
    flights: Flights<K>,
}

impl<K, V> Default for ReadThrough<K, V> {
    fn default() -> Self {
        Self(Mutex::new(Kept {
            values: HashMap::new(),
            flights: Flights::default(),
        }))
    }
}

impl<K: Eq + Hash + Clone, V: Clone> ReadThrough<K, V> {
    /// The value of `key`, when one younger than `max_age` is kept; else `read`'s, kept unless
    /// a value was recorded while it read.
    pub async fn get_or_read<E, Fut>(
        &self,
        key: &K,
        max_age: Duration,
        read: impl FnOnce() -> Fut,
    ) -> Result<V, E>
    where
        Fut: Future<Output = Result<V, E>>,
    {
        read_through(
            &self.0,
            |kept| &mut kept.flights,
            || key.clone(),
            |kept| {
                let (value, at) = kept.values.get(key)?;
                (at.elapsed() < max_age).then(|| value.clone())
            },
            || {
                let started = Instant::now();
                async move { read().await.map(|value| (value, started)) }
            },
            |kept, (value, started)| {
                let recorded_since = kept.values.get(key).is_some_and(|(_, at)| *at > started);
                if !recorded_since {
                    kept.values
                        .insert(key.clone(), (value.clone(), Instant::now()));
                }
                value
            },
        )
        .await
    }

    /// A value learned otherwise (a write the cloud acknowledged, another reader's answer).
    pub fn record(&self, key: &K, value: V) {
        self.0
            .lock()
            .values
            .insert(key.clone(), (value, Instant::now()));
    }

    /// `key` is gone from the cloud: nothing about it is fresh any more.
    pub fn forget(&self, key: &K) {
        self.0.lock().values.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    const MINUTE: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn concurrent_readers_of_a_cold_key_share_one_read() {
        let cache: ReadThrough<&str, u32> = ReadThrough::default();
        let reads = AtomicU32::new(0);
        let read = || async {
            reads.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            Ok::<_, ()>(7)
        };
        let (a, b) = tokio::join!(
            cache.get_or_read(&"a", MINUTE, read),
            cache.get_or_read(&"a", MINUTE, read)
        );
        assert_eq!((a, b), (Ok(7), Ok(7)));
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        // No age is young enough: read.
        let _ = cache.get_or_read(&"a", Duration::ZERO, read).await;
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        cache.forget(&"a");
        let _ = cache.get_or_read(&"a", MINUTE, read).await;
        assert_eq!(reads.load(Ordering::SeqCst), 3, "forgotten: read again");
    }

    #[tokio::test]
    async fn an_error_is_not_kept() {
        let cache: ReadThrough<&str, u32> = ReadThrough::default();
        let failed = cache
            .get_or_read(&"a", MINUTE, || async { Err::<u32, _>("down") })
            .await;
        assert_eq!(failed, Err("down"));
        let read = cache
            .get_or_read(&"a", MINUTE, || async { Ok::<_, &str>(1) })
            .await;
        assert_eq!(read, Ok(1));
    }

    #[tokio::test]
    async fn a_value_recorded_during_a_read_is_not_overwritten_by_it() {
        let cache: ReadThrough<&str, u32> = ReadThrough::default();
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let reading = cache.get_or_read(&"a", MINUTE, || async {
            let _ = wait.await;
            Ok::<_, ()>(1)
        });
        let record = async {
            tokio::task::yield_now().await;
            cache.record(&"a", 2);
            let _ = go.send(());
        };
        let (read, ()) = tokio::join!(reading, record);
        assert_eq!(read, Ok(1), "the reader gets its own answer");
        let kept = cache
            .get_or_read(&"a", MINUTE, || async { Err::<u32, ()>(()) })
            .await;
        assert_eq!(kept, Ok(2), "the recorded value stays");
    }

    #[tokio::test]
    async fn a_reader_dropped_half_way_lets_a_waiter_read() {
        let cache: ReadThrough<&str, u32> = ReadThrough::default();
        let stuck = cache.get_or_read(&"a", MINUTE, std::future::pending::<Result<u32, ()>>);
        let waiter = cache.get_or_read(&"a", MINUTE, || async { Ok::<_, ()>(3) });
        let mut stuck = Box::pin(stuck);
        // The first reader registers its read, then is dropped (its pass was cancelled).
        assert!(futures::poll!(stuck.as_mut()).is_pending());
        let mut waiter = Box::pin(waiter);
        assert!(
            futures::poll!(waiter.as_mut()).is_pending(),
            "waits for the read in flight"
        );
        drop(stuck);
        assert_eq!(waiter.await, Ok(3));
    }
}
