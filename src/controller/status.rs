//! Writing status: server-side apply under one field manager, only when something changed.

use std::time::Duration;

use jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::context::MANAGER;

pub async fn apply_status<K, S>(api: &Api<K>, name: &str, status: &S) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(|_| ())
}

/// The `lastSyncTime` to write: kept when nothing else changed and it is younger than half the
/// resync interval, so bursts of reconciles do not rewrite status for a timestamp alone.
pub fn sync_time(previous: Option<&str>, rest_unchanged: bool, resync: Duration) -> String {
    if rest_unchanged
        && let Some(previous) = previous
        && let Ok(at) = previous.parse::<Timestamp>()
        && Timestamp::now().duration_since(at).unsigned_abs() < resync / 2
    {
        return previous.to_string();
    }
    crate::cloud::client::acs_timestamp(Timestamp::now())
}
