//! Writing status: server-side apply under one field manager, only when something changed.

use std::time::Duration;

use jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::context::MANAGER;
use crate::api::{
    CommonStatus, DirectoryMfaPolicyStatus, RamUserMfaStatusStatus, UserMfaSettingStatus,
};

/// A status with the fields all three kinds share.
pub trait HasCommonStatus {
    fn common(&self) -> &CommonStatus;
    fn common_mut(&mut self) -> &mut CommonStatus;
}

macro_rules! has_common_status {
    ($($status:ty),*) => {$(
        impl HasCommonStatus for $status {
            fn common(&self) -> &CommonStatus {
                &self.common
            }
            fn common_mut(&mut self) -> &mut CommonStatus {
                &mut self.common
            }
        }
    )*};
}
has_common_status!(
    DirectoryMfaPolicyStatus,
    UserMfaSettingStatus,
    RamUserMfaStatusStatus
);

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

/// Writes the status of a successful sync: stamps `lastSyncTime` (see `sync_time`) and applies
/// the status only when it differs from `previous`.
pub async fn write_synced<K, S>(
    api: &Api<K>,
    name: &str,
    previous: &S,
    mut status: S,
    resync: Duration,
) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize + PartialEq + HasCommonStatus,
{
    let unchanged = status == *previous;
    status.common_mut().last_sync_time = Some(sync_time(
        previous.common().last_sync_time.as_deref(),
        unchanged,
        resync,
    ));
    if status != *previous {
        apply_status(api, name, &status).await?;
    }
    Ok(())
}
