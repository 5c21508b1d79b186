//! Queues of other controllers: the objects one controller sees (its reflector's store) and a
//! channel into its queue, so a reconcile of one object can wake others it affects (a policy's
//! users when the directory's setting changes, the other claimants of a directory).

use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use kube::Resource;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{ObjectRef, Store};

use super::keys::guarded_ref;

/// What a controller's queue is fed from.
pub type Woken<K> = UnboundedReceiver<ObjectRef<DeserializeGuard<K>>>;

/// The objects of one kind, and a way to queue some of them.
pub struct Waker<K: Resource<DynamicType = ()> + 'static> {
    store: Store<DeserializeGuard<K>>,
    wake: UnboundedSender<ObjectRef<DeserializeGuard<K>>>,
}

impl<K: Resource<DynamicType = ()> + 'static> Clone for Waker<K> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            wake: self.wake.clone(),
        }
    }
}

/// A waker over `store`, and the receiver its controller reconciles on.
pub fn channel<K>(store: Store<DeserializeGuard<K>>) -> (Waker<K>, Woken<K>)
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let (wake, woken) = unbounded();
    (Waker { store, wake }, woken)
}

impl<K> Waker<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    /// Every object of the kind (those that deserialize), shared with the store.
    pub fn known(&self) -> Vec<std::sync::Arc<DeserializeGuard<K>>> {
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
        let (wake, reference) = (self.wake.clone(), guarded_ref(object));
        move || {
            let _ = wake.unbounded_send(reference.clone());
        }
    }

    /// Queues `object`; a stopped controller is no error (the process is shutting down).
    pub fn wake(&self, object: &K) {
        let _ = self.wake.unbounded_send(guarded_ref(object));
    }
}
