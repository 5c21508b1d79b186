//! The watches the controllers run on: one per kind (its store, without managedFields and
//! kubectl's last-applied copy, and its spec and lifecycle changes), one metadata-only Secret
//! watch, and the CloudAccount and Namespace watches tenancy reads. A kind's watch also keeps the
//! budget and the pass bookkeeping with the store: counted as objects arrive (a bulk apply
//! stretches the resync while it fills the store, not after its passes), released as they go.

use std::collections::HashMap;
use std::sync::Arc;

use futures::{FutureExt, StreamExt, future};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::Api;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::reflector::{self, ReflectHandle};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use parking_lot::Mutex;

use super::context::Context;
use super::keys::{counter_key, fingerprint, key_of};
use super::reconciler::{Kind, count};
use crate::api::CloudAccount;

/// The annotation client-side `kubectl apply` keeps a copy of the applied object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Room for a burst of watch events before the watch waits for the controllers to take them.
pub const SHARED_BUFFER: usize = 1024;

/// One kind's store and the writer its watch fills it through.
pub type Reflector<K> = (
    reflector::Store<DeserializeGuard<K>>,
    reflector::store::Writer<DeserializeGuard<K>>,
);

/// What a reconcile is triggered by: the spec and deletion (not status writes, nor the
/// finalizer a pass adds: that pass goes on itself; a finalizer removed by someone else is put
/// back by the next resync, which a missing finalizer never skips).
fn spec_or_lifecycle<K: Resource>(object: &K) -> u64 {
    let meta = object.meta();
    fingerprint(&(meta.generation, meta.deletion_timestamp.is_some()))
}

/// The last `spec_or_lifecycle` let through, by a hash of the object's name (at 10,000 objects
/// the names themselves would cost a megabyte; a collision only delays one object to its next
/// resync). An entry goes with its object.
type Seen = Arc<Mutex<HashMap<u64, u64>>>;

/// Kind `K`'s watch: fills the store, counts what arrives in the budget and forgets what goes;
/// returns the changes the controller is triggered by and the watch to drive.
pub fn kind_watch<K: Kind>(
    api: Api<DeserializeGuard<K>>,
    writer: reflector::store::Writer<DeserializeGuard<K>>,
    ctx: Arc<Context>,
) -> (
    impl futures::Stream<Item = Arc<DeserializeGuard<K>>> + Send + 'static,
    future::BoxFuture<'static, ()>,
) {
    let handle = writer
        .subscribe()
        .expect("the writer of a shared store has subscribers");
    let seen: Seen = Arc::default();
    let forget = seen.clone();
    let superseding = ctx.clone();
    let events = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|object| {
            object.managed_fields_mut().clear();
            object.annotations_mut().remove(LAST_APPLIED);
        })
        .inspect(move |event| match event {
            Ok(watcher::Event::Apply(guard) | watcher::Event::InitApply(guard)) => {
                if let Ok(object) = &guard.0 {
                    count(&ctx.budget, object);
                }
            }
            Ok(watcher::Event::Delete(guard)) => {
                let counted = counter_key(guard);
                ctx.budget.release(&counted);
                ctx.passes.failures.clear(&counted);
                forget.lock().remove(&fingerprint(&key_of(guard)));
            }
            _ => {}
        });
    let watch = reflector::reflector(writer, events)
        .for_each(|_| future::ready(()))
        .boxed();
    let changes = handle.filter(move |guard| {
        let hash = spec_or_lifecycle(guard.as_ref());
        let key = key_of(guard.as_ref());
        let before = seen.lock().insert(fingerprint(&key), hash);
        if before.is_some_and(|before| before != hash) {
            // A change of an object already known: whatever lesser pass of it is under way ends.
            superseding.passes.superseded(&counter_key(guard.as_ref()));
        }
        future::ready(before != Some(hash))
    });
    (changes, watch)
}

/// Lets through an object only when `hash` of it changed since it last did (a CloudAccount's
/// spec, a Namespace's labels: not status writes or unrelated metadata).
pub fn changes_of<T, H>(
    objects: ReflectHandle<T>,
    hash: H,
) -> impl futures::Stream<Item = Arc<T>> + Send + 'static
where
    T: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    H: Fn(&T) -> u64 + Send + 'static,
{
    let mut seen: HashMap<String, u64> = HashMap::new();
    objects.filter(move |object| {
        let value = hash(object.as_ref());
        let changed = seen.insert(object.name_any(), value) != Some(value);
        future::ready(changed)
    })
}

/// A CloudAccount's spec changes (its generation: not our status writes).
pub fn account_changes(
    accounts: ReflectHandle<CloudAccount>,
) -> impl futures::Stream<Item = Arc<CloudAccount>> + Send + 'static {
    changes_of(accounts, |account: &CloudAccount| {
        fingerprint(&account.meta().generation)
    })
}

/// `N` handles on a shared store: one per reader and no other (a handle nobody reads would fill
/// its buffer and stop the watch for everyone).
fn handles<T, const N: usize>(writer: &reflector::store::Writer<T>) -> [ReflectHandle<T>; N]
where
    T: Resource<DynamicType = ()> + Clone + 'static,
{
    std::array::from_fn(|_| {
        writer
            .subscribe()
            .expect("a shared store always has subscribers")
    })
}

/// The Secret index, a handle per controller, and the watch to drive.
pub type SecretWatch<const N: usize> = (
    reflector::Store<PartialObjectMeta<Secret>>,
    [ReflectHandle<PartialObjectMeta<Secret>>; N],
    future::BoxFuture<'static, ()>,
);

/// The one Secret watch: metadata only (a full watch would hold a copy of every Secret in scope,
/// Helm releases included, just to learn that one changed), without managedFields or
/// annotations (kubectl's last-applied is a copy of the data), into a store that the credential
/// cache reads resourceVersions from; with a handle for each of the `N` controllers.
pub fn secret_watch<const N: usize>(api: Api<PartialObjectMeta<Secret>>) -> SecretWatch<N> {
    let (store, writer) = reflector::store_shared(SHARED_BUFFER);
    let changes = handles(&writer);
    let watch = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default())
            .default_backoff()
            .modify(|secret| {
                secret.managed_fields_mut().clear();
                secret.annotations_mut().clear();
            }),
    )
    .for_each(|_| future::ready(()))
    .boxed();
    (store, changes, watch)
}

/// What `tenancy_watches` starts: the two stores, their handles, and the watches to drive.
pub struct TenancyWatches<const A: usize, const N: usize> {
    pub accounts: reflector::Store<CloudAccount>,
    pub account_handles: [ReflectHandle<CloudAccount>; A],
    pub namespaces: reflector::Store<PartialObjectMeta<Namespace>>,
    pub namespace_handles: [ReflectHandle<PartialObjectMeta<Namespace>>; N],
    pub watch: future::BoxFuture<'static, ()>,
}

/// The CloudAccounts (cluster-scoped, few) and the Namespaces (metadata only: their labels)
/// that tenancy reads, each into a store, with handles for the controllers they wake.
pub fn tenancy_watches<const A: usize, const N: usize>(
    client: &kube::Client,
    namespace: &Option<String>,
) -> TenancyWatches<A, N> {
    let (accounts, account_writer) = reflector::store_shared(SHARED_BUFFER);
    let account_handles = handles(&account_writer);
    let account_watch = reflector::reflector(
        account_writer,
        watcher(
            Api::<CloudAccount>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .modify(|account| account.managed_fields_mut().clear()),
    )
    .for_each(|_| future::ready(()));
    let (namespaces, namespace_writer) = reflector::store_shared(SHARED_BUFFER);
    let namespace_handles = handles(&namespace_writer);
    // Only the watched namespace's labels matter when the operator watches one.
    let config = match namespace {
        Some(namespace) => watcher::Config::default().fields(&format!("metadata.name={namespace}")),
        None => watcher::Config::default(),
    };
    let namespace_watch = reflector::reflector(
        namespace_writer,
        watcher(
            Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
            config,
        )
        .default_backoff()
        .modify(|namespace| {
            namespace.managed_fields_mut().clear();
            namespace.annotations_mut().clear();
        }),
    )
    .for_each(|_| future::ready(()));
    let watch = async move {
        futures::join!(account_watch, namespace_watch);
    }
    .boxed();
    TenancyWatches {
        accounts,
        account_handles,
        namespaces,
        namespace_handles,
        watch,
    }
}
