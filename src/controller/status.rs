//! Writing status: the fields every kind shares built in one place, and written by server-side
//! apply under one field manager, only when something changed.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::clock;
use super::conditions::{self, DesiredCondition};
use super::keys::MANAGER;
use crate::api::{CommonStatus, HasCommonStatus};

/// The shared fields after a pass: `desired` merged into the previous conditions, the generation
/// this pass saw, and `lastSyncTime` as it was (`write_synced` stamps it on success).
pub fn common_status(
    previous: &CommonStatus,
    desired: &[DesiredCondition],
    generation: Option<i64>,
    now: &Time,
) -> CommonStatus {
    CommonStatus {
        conditions: conditions::merge(&previous.conditions, desired, generation, now),
        observed_generation: generation,
        last_sync_time: previous.last_sync_time.clone(),
        // Who the last successful pass acted as: kept through failures (claims read it).
        account_id: previous.account_id.clone(),
        endpoint: previous.endpoint.clone(),
        cloud_account: previous.cloud_account.clone(),
    }
}

/// The `lastSyncTime` to write: kept when nothing else changed and it is younger than half the
/// resync interval, so bursts of reconciles do not rewrite status for a timestamp alone.
pub fn sync_time(
    previous: Option<&str>,
    rest_unchanged: bool,
    resync: Duration,
    now: &Time,
) -> String {
    if rest_unchanged
        && let Some(previous) = previous
        && let Ok(at) = previous.parse::<Timestamp>()
        && now.0.duration_since(at).unsigned_abs() < resync / 2
    {
        return previous.to_string();
    }
    clock::rfc3339(now)
}

/// Where one object's status goes: every status write of a reconcile passes through here.
pub struct StatusWriter<K: Resource<DynamicType = ()>> {
    api: Api<K>,
    name: String,
}

impl<K> StatusWriter<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    pub fn new(api: Api<K>, name: String) -> Self {
        Self { api, name }
    }

    /// Applies `status` as it is.
    pub async fn apply<S: Serialize>(&self, status: &S) -> Result<(), kube::Error> {
        let patch = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": status,
        });
        self.api
            .patch_status(
                &self.name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
            .map(|_| ())
    }

    /// Applies `status` only when it differs from `previous`.
    pub async fn apply_changed<S>(&self, previous: &S, status: &S) -> Result<(), kube::Error>
    where
        S: Serialize + PartialEq,
    {
        if status != previous {
            self.apply(status).await?;
        }
        Ok(())
    }

    /// The status of a successful sync: stamps `lastSyncTime` (see `sync_time`), then applies
    /// it only when it differs from `previous`.
    pub async fn write_synced<S>(
        &self,
        previous: &S,
        mut status: S,
        resync: Duration,
        now: &Time,
    ) -> Result<(), kube::Error>
    where
        S: Serialize + PartialEq + HasCommonStatus,
    {
        let unchanged = status == *previous;
        status.common_mut().last_sync_time = Some(sync_time(
            previous.common().last_sync_time.as_deref(),
            unchanged,
            resync,
            now,
        ));
        self.apply_changed(previous, &status).await
    }
}
