//! The one read-through cache of cloud reads: a value per key with when the cloud said it. A
//! reader that finds one young enough uses it; else it reads, and concurrent readers of the same
//! field wait for that one read and share its answer (one call in flight per field and key).

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Mutex as AsyncMutex;

/// One cached field: its last value and when it was read; locked while a read is in flight.
pub struct Field<V>(AsyncMutex<Option<(V, Instant)>>);

impl<V> Default for Field<V> {
    fn default() -> Self {
        Self(AsyncMutex::new(None))
    }
}

impl<V: Clone> Field<V> {
    /// The value, when one younger than `max_age` is kept (None: always read); else `read`'s,
    /// kept. An error is not kept: the next reader tries again.
    pub async fn get_or_read<E, Fut>(
        &self,
        max_age: Option<Duration>,
        read: impl FnOnce() -> Fut,
    ) -> Result<V, E>
    where
        Fut: Future<Output = Result<V, E>>,
    {
        let mut entry = self.0.lock().await;
        if let (Some((value, at)), Some(max_age)) = (entry.as_ref(), max_age)
            && at.elapsed() < max_age
        {
            return Ok(value.clone());
        }
        let value = read().await?;
        *entry = Some((value.clone(), Instant::now()));
        Ok(value)
    }

    /// A value learned otherwise (a write the cloud acknowledged, another reader's answer).
    pub async fn record(&self, value: V) {
        *self.0.lock().await = Some((value, Instant::now()));
    }
}

/// The fields `S` of every key read so far.
pub struct ReadThrough<K, S> {
    slots: Mutex<HashMap<K, Arc<S>>>,
}

impl<K, S> Default for ReadThrough<K, S> {
    fn default() -> Self {
        Self {
            slots: Mutex::default(),
        }
    }
}

impl<K: Eq + Hash + Clone, S: Default> ReadThrough<K, S> {
    /// The fields of `key` (empty the first time).
    pub fn slot(&self, key: &K) -> Arc<S> {
        self.slots.lock().entry(key.clone()).or_default().clone()
    }

    /// `key` is gone from the cloud: nothing about it is fresh any more.
    pub fn forget(&self, key: &K) {
        self.slots.lock().remove(key);
    }

    /// The fields of the key `key` borrows as (`own` makes the key, only when it is new: a
    /// lookup allocates nothing).
    pub fn slot_of<Q>(&self, key: &Q, own: impl FnOnce() -> K) -> Arc<S>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        let mut slots = self.slots.lock();
        if let Some(slot) = slots.get(key) {
            return slot.clone();
        }
        slots.entry(own()).or_default().clone()
    }

    /// Forgets the key `key` borrows as.
    pub fn forget_of<Q>(&self, key: &Q)
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        self.slots.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn concurrent_readers_of_a_cold_field_share_one_read() {
        let cache: ReadThrough<&str, Field<u32>> = ReadThrough::default();
        let reads = AtomicU32::new(0);
        let read = || async {
            reads.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            Ok::<_, ()>(7)
        };
        let slot = cache.slot(&"a");
        let (a, b) = tokio::join!(
            slot.get_or_read(Some(Duration::from_secs(60)), read),
            slot.get_or_read(Some(Duration::from_secs(60)), read)
        );
        assert_eq!((a, b), (Ok(7), Ok(7)));
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        // No max age: always read.
        let _ = cache.slot(&"a").get_or_read(None, read).await;
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        cache.forget(&"a");
        let _ = cache
            .slot(&"a")
            .get_or_read(Some(Duration::from_secs(60)), read)
            .await;
        assert_eq!(reads.load(Ordering::SeqCst), 3, "forgotten: read again");
    }

    #[tokio::test]
    async fn an_error_is_not_kept() {
        let field: Field<u32> = Field::default();
        let failed = field
            .get_or_read(Some(Duration::from_secs(60)), || async {
                Err::<u32, _>("down")
            })
            .await;
        assert_eq!(failed, Err("down"));
        let read = field
            .get_or_read(Some(Duration::from_secs(60)), || async { Ok::<_, &str>(1) })
            .await;
        assert_eq!(read, Ok(1));
    }
}
