//! What wakes a kind's resources besides their own changes: the Secrets they (or their
//! CloudAccount) name, their CloudAccounts, and their Namespaces' labels (tenancy is re-evaluated
//! when any of them changes). Each woken resource is marked, so its pass runs in full.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::ResourceExt;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{ObjectRef, ReflectHandle, Store};

use super::keys::fingerprint;
use super::reconciler::Kind;
use super::tenancy::Tenancy;
use super::wake::Marks;
use super::watches::{account_changes, changes_of};
use crate::api::{CloudAccount, CloudSpec};

/// The handles one kind's controller is woken through, and the accounts they are read against.
pub struct Triggers {
    pub secrets: ReflectHandle<PartialObjectMeta<Secret>>,
    pub accounts: ReflectHandle<CloudAccount>,
    pub namespaces: ReflectHandle<PartialObjectMeta<Namespace>>,
    pub account_store: Store<CloudAccount>,
}

/// The guarded references of the objects in `store` that `pick` accepts, each marked.
fn picked<K: Kind>(
    store: &Store<DeserializeGuard<K>>,
    marks: &Marks,
    pick: impl Fn(&DeserializeGuard<K>, &K) -> bool,
) -> Vec<ObjectRef<DeserializeGuard<K>>> {
    store
        .state()
        .iter()
        .filter(|guard| guard.0.as_ref().is_ok_and(|object| pick(guard, object)))
        .map(|guard| {
            if let Ok(object) = &guard.0 {
                marks.mark(object);
            }
            ObjectRef::from_obj(guard.as_ref())
        })
        .collect()
}

impl Triggers {
    /// `controller` woken by these triggers too.
    pub fn attach<K: Kind>(
        self,
        controller: Controller<DeserializeGuard<K>>,
        store: Store<DeserializeGuard<K>>,
        marks: Arc<Marks>,
    ) -> Controller<DeserializeGuard<K>> {
        let namespaces = changes_of(
            self.namespaces,
            |namespace: &PartialObjectMeta<Namespace>| fingerprint(namespace.labels()),
        );
        let (by_secret, by_account, by_namespace) = (store.clone(), store.clone(), store);
        let (secret_marks, account_marks) = (marks.clone(), marks.clone());
        let accounts = self.account_store;
        controller
            .watches_shared_stream(self.secrets, move |secret| {
                users_of_secret(&by_secret, &secret_marks, &accounts, &secret)
            })
            .watches_shared_stream(account_changes(self.accounts), move |account| {
                let name = account.name_any();
                picked(&by_account, &account_marks, |_, object| {
                    Tenancy::uses_account(object, &name)
                })
            })
            .watches_shared_stream(namespaces, move |namespace| {
                let name = namespace.name_any();
                picked(&by_namespace, &marks, |guard, object| {
                    guard.namespace().as_deref() == Some(name.as_str())
                        && object.spec().credentials_secret_ref().is_none()
                })
            })
    }
}

/// The resources whose credentialsSecretRef names `secret` (its metadata: the watch never holds
/// a Secret's data), or whose CloudAccount's secretRef does.
fn users_of_secret<K: Kind>(
    store: &Store<DeserializeGuard<K>>,
    marks: &Marks,
    accounts: &Store<CloudAccount>,
    secret: &PartialObjectMeta<Secret>,
) -> Vec<ObjectRef<DeserializeGuard<K>>> {
    let (name, namespace) = (secret.name_any(), secret.namespace());
    let holders: Vec<String> = accounts
        .state()
        .iter()
        .filter(|account| {
            account
                .spec
                .credentials
                .secret_ref
                .as_ref()
                .is_some_and(|r| Some(&r.namespace) == namespace.as_ref() && r.name == name)
        })
        .map(|account| account.name_any())
        .collect();
    picked(store, marks, |guard, object| {
        let own = guard.namespace() == namespace
            && object
                .spec()
                .credentials_secret_ref()
                .is_some_and(|r| r.name == name);
        own || holders.iter().any(|a| Tenancy::uses_account(object, a))
    })
}
