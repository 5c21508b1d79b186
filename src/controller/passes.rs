//! What kind of pass a resource needs, decided from the object alone before any cloud call: none
//! yet (its status is current: returns at once with its next requeue, so the queue after a
//! restart drains in milliseconds), or one of the three urgencies the rate limiter serves in
//! order (a spec change or deletion, a new resource's first pass, a resync); and the bookkeeping
//! of passes the controllers share: failures, marks, admission (see `admission`), and which
//! lesser passes under way a change of their object ends.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::Resource;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::admission::Admission;
use super::conditions::{self, SYNCED};
use super::keys::fingerprint;
use super::retry::Failures;
use super::wake::Marks;
use crate::api::{HasCommonStatus, Reason};
use crate::cloud::Urgency;

/// The urgency of the pass `object` needs: a deletion, or a spec that changed since a pass
/// handled one, is interactive; a resource no pass ever synced is new; the rest resync.
pub fn urgency_of<K>(object: &K, status: Option<&impl HasCommonStatus>) -> Urgency
where
    K: Resource,
{
    let common = status.map(|status| status.common());
    if object.meta().deletion_timestamp.is_some() {
        return Urgency::Interactive;
    }
    match common {
        None => Urgency::Initial,
        Some(common) if common.last_sync_time.is_none() => Urgency::Initial,
        Some(common) if common.observed_generation != object.meta().generation => {
            Urgency::Interactive
        }
        Some(_) => Urgency::Resync,
    }
}

/// The share of the resync interval after which a resource is read again: a little under one,
/// so every read comes within one interval of the last, however the passes are spread.
pub const RESYNC_SHARE: f64 = 0.995;

/// When a status is taken as current: its last sync younger than this share of the interval
/// (less 1 s, the resolution of `lastSyncTime`), so a pass requeued at `RESYNC_SHARE` is due.
const CURRENT_SHARE: f64 = 0.99;

/// How long `object`'s status stays current when it is now (Some: no pass is needed yet, requeue
/// after that long): this generation synced (or, under Observe, found drifted), and the last
/// sync younger than the resync `interval`.
pub fn current_for<K: Resource>(
    object: &K,
    status: Option<&impl HasCommonStatus>,
    interval: Duration,
    now: Timestamp,
) -> Option<Duration> {
    let common = status?.common();
    let generation = object.meta().generation;
    if object.meta().deletion_timestamp.is_some() || common.observed_generation != generation {
        return None;
    }
    let synced = conditions::find(&common.conditions, SYNCED)?;
    let settled = synced.status == "True" || synced.reason == Reason::Drifted.as_str();
    if !settled || synced.observed_generation != generation {
        return None;
    }
    let last: Timestamp = common.last_sync_time.as_deref()?.parse().ok()?;
    let age = now.duration_since(last).unsigned_abs();
    let current = interval
        .mul_f64(CURRENT_SHARE)
        .checked_sub(Duration::from_secs(1))?;
    current.checked_sub(age).filter(|left| !left.is_zero())
}

/// The bookkeeping of passes the controllers share.
pub struct Passes {
    pub failures: Failures,
    /// Objects woken by something other than their own change (see `wake::Marks`).
    pub marks: Arc<Marks>,
    /// Passes making cloud calls at once, per urgency, and the line of those that wait.
    pub admission: Admission,
    /// The resyncs and first passes under way, by a hash of `Kind/namespace/name`: a spec change
    /// or deletion of the object ends them (see `superseded`).
    under_way: Mutex<HashMap<u64, Arc<Notify>>>,
}

impl Passes {
    pub fn new(concurrency: usize) -> Self {
        Self {
            failures: Failures::default(),
            marks: Arc::default(),
            admission: Admission::new(concurrency),
            under_way: Mutex::default(),
        }
    }

    /// Registers a pass of `key` that a change of its object supersedes; the pass waits on the
    /// returned signal beside its work and ends when it fires.
    pub fn supersedable(&self, key: &str) -> Superseded<'_> {
        let hash = fingerprint(key);
        let signal = Arc::new(Notify::new());
        self.under_way.lock().insert(hash, signal.clone());
        Superseded {
            passes: self,
            hash,
            signal,
        }
    }

    /// `key`'s spec changed or it is being deleted: a resync or first pass under way (waiting for
    /// admission or at the limiter at its lower urgency, with the object as it was) ends, so
    /// kube-runtime, which runs one pass of an object at a time, starts the change's pass now.
    pub fn superseded(&self, key: &str) {
        if let Some(signal) = self.under_way.lock().get(&fingerprint(key)) {
            signal.notify_one();
        }
    }
}

/// A registered pass (see `Passes::supersedable`); unregisters when dropped.
pub struct Superseded<'a> {
    passes: &'a Passes,
    hash: u64,
    signal: Arc<Notify>,
}

impl Superseded<'_> {
    /// Resolves when a change of the object supersedes the pass.
    pub async fn fired(&self) {
        self.signal.notified().await;
    }
}

impl Drop for Superseded<'_> {
    fn drop(&mut self) {
        let mut under_way = self.passes.under_way.lock();
        if under_way
            .get(&self.hash)
            .is_some_and(|signal| Arc::ptr_eq(signal, &self.signal))
        {
            under_way.remove(&self.hash);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{UserMfaSetting, UserMfaSettingStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    fn object(generation: i64) -> UserMfaSetting {
        let spec = serde_json::from_value(serde_json::json!({
            "directoryId": "d-1", "userId": "u-1", "userMfaAuthenticationSettings": "Enabled",
        }))
        .unwrap();
        let mut object = UserMfaSetting::new("u", spec);
        object.metadata.generation = Some(generation);
        object
    }

    fn status(generation: i64, synced: &str, reason: Reason, at: &str) -> UserMfaSettingStatus {
        let mut status = UserMfaSettingStatus::default();
        status.common.observed_generation = Some(generation);
        status.common.last_sync_time = Some(at.into());
        status.common.conditions = vec![Condition {
            type_: SYNCED.into(),
            status: synced.into(),
            reason: reason.to_string(),
            message: String::new(),
            last_transition_time: Time(at.parse().unwrap()),
            observed_generation: Some(generation),
        }];
        status
    }

    #[test]
    fn a_new_resource_is_initial_a_changed_one_interactive_a_synced_one_a_resync() {
        let none: Option<&UserMfaSettingStatus> = None;
        assert_eq!(urgency_of(&object(1), none), Urgency::Initial);
        let synced = status(1, "True", Reason::InSync, "2026-12-01T00:00:00Z");
        assert_eq!(urgency_of(&object(1), Some(&synced)), Urgency::Resync);
        assert_eq!(urgency_of(&object(2), Some(&synced)), Urgency::Interactive);
        let mut deleting = object(1);
        deleting.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
        assert_eq!(urgency_of(&deleting, Some(&synced)), Urgency::Interactive);
        // A first pass that failed has no lastSyncTime: it stays a new resource's.
        let mut failed = synced.clone();
        failed.common.last_sync_time = None;
        assert_eq!(urgency_of(&object(1), Some(&failed)), Urgency::Initial);
    }

    #[test]
    fn a_status_is_current_while_its_last_sync_is_younger_than_the_interval() {
        let at = "2026-12-01T00:00:00Z";
        let now = |seconds: i64| {
            at.parse::<Timestamp>().unwrap() + jiff::SignedDuration::from_secs(seconds)
        };
        let minute = Duration::from_secs(60);
        let synced = status(1, "True", Reason::InSync, at);
        assert_eq!(
            current_for(&object(1), Some(&synced), minute, now(10)),
            Some(Duration::from_millis(59_400 - 1_000 - 10_000))
        );
        assert_eq!(
            current_for(&object(1), Some(&synced), minute, now(59)),
            None
        );
        assert_eq!(
            current_for(&object(2), Some(&synced), minute, now(10)),
            None
        );
        let drifted = status(1, "False", Reason::Drifted, at);
        assert!(current_for(&object(1), Some(&drifted), minute, now(10)).is_some());
        let failed = status(1, "False", Reason::CloudError, at);
        assert_eq!(
            current_for(&object(1), Some(&failed), minute, now(10)),
            None
        );
    }
}
