//! The finalizer of the kinds that write back on delete. Unlike kube-runtime's `finalizer()`,
//! which adds it and ends the pass (the next pass, woken by the watch, does the work), the pass
//! that adds it goes on: at 10,000 new resources that was 10,000 extra passes queued ahead of
//! every real one, and nothing turned Ready until most finalizers were in. Both writes carry the
//! resourceVersion read, so a concurrent change fails the write (409) instead of being lost.

use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::keys::FINALIZER;

/// Whether `object` holds the finalizer.
pub fn holds<K: Resource>(object: &K) -> bool {
    object.finalizers().iter().any(|f| f == FINALIZER)
}

/// `object` with `finalizers` instead of its own, written; the object as stored after.
async fn write<K>(api: &Api<K>, object: &K, finalizers: Vec<String>) -> Result<K, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let patch = serde_json::json!({
        "metadata": {
            "finalizers": finalizers,
            "resourceVersion": object.resource_version(),
        }
    });
    api.patch(
        &object.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
}

/// Adds the finalizer; returns the object as stored with it.
pub async fn add<K>(api: &Api<K>, object: &K) -> Result<K, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let mut finalizers = object.finalizers().to_vec();
    finalizers.push(FINALIZER.to_string());
    write(api, object, finalizers).await
}

/// Removes the finalizer (the object goes once no other finalizer holds it).
pub async fn remove<K>(api: &Api<K>, object: &K) -> Result<(), kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let finalizers = object
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    match write(api, object, finalizers).await {
        // Already gone: nothing held it but this finalizer, and someone removed it.
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        other => other.map(|_| ()),
    }
}
