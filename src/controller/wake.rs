//! Queues of the controllers: the objects one controller sees (its reflector's store) and a
//! channel into its queue, so a reconcile of one object can wake others it affects (a policy's
//! users when the directory's setting changes, the other claimants of a directory). A woken
//! object is marked, so its next pass runs in full even when its status looks current. And the
//! way admission sends a waiting object back to its controller (`admission_wake`).

use std::collections::HashSet;
use std::sync::Arc;

use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use kube::Resource;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{ObjectRef, Store};
use parking_lot::Mutex;

use super::admission::Wake;
use super::keys::{counter_key, fingerprint, guarded_ref, ref_of_key};

/// What a controller's queue is fed from.
pub type Woken<K> = UnboundedReceiver<ObjectRef<DeserializeGuard<K>>>;

/// The objects something other than their own change queued (a Secret, a CloudAccount, a
/// Namespace, another resource), by a hash of `Kind/namespace/name`: their next pass must not
/// take the current-status shortcut. Taken by that pass.
#[derive(Default)]
pub struct Marks(Mutex<HashSet<u64>>);

impl Marks {
    pub fn mark<K: Resource<DynamicType = ()>>(&self, object: &K) {
        self.0.lock().insert(fingerprint(&counter_key(object)));
    }

    /// `mark`, given the object's hash (`fingerprint(&counter_key(object))`).
    pub fn mark_hash(&self, hash: u64) {
        self.0.lock().insert(hash);
    }

    /// Whether the object of `hash` (see `mark_hash`) was marked since its last pass; unmarks it.
    pub fn take_hash(&self, hash: u64) -> bool {
        self.0.lock().remove(&hash)
    }
}

/// The objects of one kind, and a way to queue some of them.
pub struct Waker<K: Resource<DynamicType = ()> + 'static> {
    store: Store<DeserializeGuard<K>>,
    wake: UnboundedSender<ObjectRef<DeserializeGuard<K>>>,
    marks: Arc<Marks>,
}

impl<K: Resource<DynamicType = ()> + 'static> Clone for Waker<K> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            wake: self.wake.clone(),
            marks: self.marks.clone(),
        }
    }
}

/// A waker over `store`, and the receiver its controller reconciles on.
pub fn channel<K>(store: Store<DeserializeGuard<K>>, marks: Arc<Marks>) -> (Waker<K>, Woken<K>)
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let (wake, woken) = unbounded();
    (Waker { store, wake, marks }, woken)
}

/// How admission sends a waiting object of this kind back (by `namespace/name`), and the
/// receiver its controller reconciles on; an object no longer in `store` is not sent.
pub fn admission_wake<K>(store: Store<DeserializeGuard<K>>) -> (Wake, Woken<K>)
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let (send, woken) = unbounded();
    let wake: Wake = Arc::new(move |key: &str| {
        let reference = ref_of_key(key);
        store.get(&reference).is_some() && send.unbounded_send(reference).is_ok()
    });
    (wake, woken)
}

impl<K> Waker<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    /// Every object of the kind (those that deserialize), shared with the store.
    pub fn known(&self) -> Vec<Arc<DeserializeGuard<K>>> {
        self.store.state()
    }

    /// Queues every known object `pick` accepts.
    pub fn wake_where(&self, pick: impl Fn(&K) -> bool) {
        for guard in self.store.state() {
            if let Ok(object) = &guard.0
                && pick(object)
            {
                self.wake(object);
            }
        }
    }

    /// A callback that queues `object` whenever called (e.g. when its census changes).
    pub fn wake_later(&self, object: &K) -> impl Fn() + Send + Sync + 'static {
        let (wake, marks) = (self.wake.clone(), self.marks.clone());
        let (reference, hash) = (guarded_ref(object), fingerprint(&counter_key(object)));
        move || {
            marks.mark_hash(hash);
            let _ = wake.unbounded_send(reference.clone());
        }
    }

    /// Queues `object`; a stopped controller is no error (the process is shutting down).
    pub fn wake(&self, object: &K) {
        self.marks.mark(object);
        let _ = self.wake.unbounded_send(guarded_ref(object));
    }
}
