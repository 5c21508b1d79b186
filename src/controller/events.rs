//! Events: built as kube-runtime's `Recorder` builds them, without its cache of every Event of
//! the last six minutes (kept there to count repeats into a series): at 10,000 resources that
//! cache alone is megabytes, and this operator does not repeat an Event (a failure is reported
//! only when Ready's message changes). Every Event is logged too, with its object.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::{Resource, ResourceExt};

use super::conditions;
use super::error::ReconcileError;
use super::keys::{MANAGER, key_of};
use crate::api::Reason;

/// Who publishes Events, through which client.
pub struct Events {
    client: kube::Client,
    controller: String,
    instance: String,
}

impl Events {
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            controller: MANAGER.into(),
            instance: std::env::var("POD_NAME").unwrap_or_else(|_| MANAGER.into()),
        }
    }

    /// Publishes an Event on `object`; a failure to publish is logged, never fatal.
    pub async fn publish<K>(
        &self,
        object: &K,
        warning: bool,
        reason: Reason,
        action: &str,
        note: String,
    ) where
        K: Resource<DynamicType = ()>,
    {
        let reason = reason.as_str();
        let object_name = key_of(object);
        if warning {
            tracing::warn!(kind = %K::kind(&()), object = %object_name, reason, note, "event");
        } else {
            tracing::info!(kind = %K::kind(&()), object = %object_name, reason, note, "event");
        }
        let event = self.build(&object.object_ref(&()), warning, reason, action, note);
        let namespace = event.metadata.namespace.clone().unwrap_or_default();
        let events: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
        if let Err(error) = events.create(&PostParams::default(), &event).await {
            tracing::warn!(object = %object.name_any(), %error, "could not publish event");
        }
    }

    /// A Warning Event for a failed reconcile, only when Ready did not already say the same.
    pub async fn failure<K>(&self, object: &K, previous: &[Condition], error: &ReconcileError)
    where
        K: Resource<DynamicType = ()>,
    {
        let message = error.to_string();
        if !conditions::ready_says(previous, error.reason(), &message) {
            self.publish(object, true, error.reason(), "Reconcile", message)
                .await;
        }
    }

    fn build(
        &self,
        regarding: &ObjectReference,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) -> K8sEvent {
        let now = jiff::Timestamp::now();
        K8sEvent {
            metadata: ObjectMeta {
                namespace: regarding.namespace.clone(),
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or(&self.controller),
                    now.as_nanosecond()
                )),
                ..ObjectMeta::default()
            },
            action: Some(action.into()),
            reason: Some(reason.into()),
            note: Some(note),
            type_: Some(if warning { "Warning" } else { "Normal" }.into()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..K8sEvent::default()
        }
    }
}
