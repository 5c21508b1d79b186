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
