//! How the controllers name things: an object's `namespace/name`, the reference their queues use,
//! the finalizer and the field manager. A leaf, so every controller module can use it.

use kube::Resource;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::ObjectRef;

/// The field manager of every status write, and the Events' reporting controller.
pub const MANAGER: &str = "cloudsso-mfa-operator";

/// Held by the kinds that may write back to the cloud on delete.
pub const FINALIZER: &str = "cloudsso.mfa-operator.dev/finalizer";

/// `namespace/name`: how logs, failure counts and ownership name an object.
pub fn key_of<K: Resource>(object: &K) -> String {
    format!(
        "{}/{}",
        object.meta().namespace.as_deref().unwrap_or_default(),
        object.meta().name.as_deref().unwrap_or_default()
    )
}

/// The reference of the object `key_of` named `key` (no namespace before the `/`: cluster-scoped).
pub fn ref_of_key<K: Resource<DynamicType = ()>>(key: &str) -> ObjectRef<K> {
    let (namespace, name) = key.split_once('/').unwrap_or(("", key));
    let reference = ObjectRef::new(name);
    match namespace {
        "" => reference,
        namespace => reference.within(namespace),
    }
}

/// The reference the controllers queue for `object` (they watch its guarded form).
pub fn guarded_ref<K: Resource<DynamicType = ()>>(object: &K) -> ObjectRef<DeserializeGuard<K>> {
    let reference = ObjectRef::new(object.meta().name.as_deref().unwrap_or_default());
    match object.meta().namespace.as_deref() {
        Some(namespace) => reference.within(namespace),
        None => reference,
    }
}

/// A 64-bit hash of `value`: to tell whether a value changed, or to key a large map without
/// keeping the names themselves.
pub fn fingerprint<T: std::hash::Hash + ?Sized>(value: &T) -> u64 {
    use std::hash::Hasher;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// One directory at one endpoint: what the caches, the census and the gauges are keyed by (the
/// same directory id at another endpoint is another directory).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DirectoryKey {
    pub endpoint: String,
    pub directory_id: String,
}

impl DirectoryKey {
    pub fn new(endpoint: &crate::cloud::Endpoint, directory_id: &str) -> Self {
        Self {
            endpoint: endpoint.url(),
            directory_id: directory_id.to_string(),
        }
    }

    pub fn user(&self, user_id: &str) -> UserKey {
        UserKey {
            directory: self.clone(),
            user_id: user_id.to_string(),
        }
    }
}

impl std::fmt::Display for DirectoryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.endpoint, self.directory_id)
    }
}

/// One user of one directory at one endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UserKey {
    pub directory: DirectoryKey,
    pub user_id: String,
}

/// How the budget, the census and the pass bookkeeping know a resource: `Kind/namespace/name`
/// (two kinds may hold one name).
pub fn counter_key<K: Resource<DynamicType = ()>>(resource: &K) -> String {
    format!("{}/{}", K::kind(&()), key_of(resource))
}
