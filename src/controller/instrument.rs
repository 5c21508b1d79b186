//! What every reconcile is wrapped in: objects that do not deserialize (the watch carries them in
//! a `DeserializeGuard`, so one bad object cannot stall the others) get a Warning Event and wait
//! for a change; every run is counted and timed in the metrics; logs inside it carry the kind and
//! namespace/name (a span of our own target, so it survives the usual `kube=warn` filter); and a
//! failed run is requeued with backoff by error class, growing per object.

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use kube::Resource;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use tracing::Instrument;

use super::context::Context;
use super::error::ReconcileError;
use super::keys::key_of;
use super::retry;
use crate::api::Reason;

/// `reconcile`, measured and guarded (see the module note).
pub fn measured<K, F, Fut>(
    reconcile: F,
) -> impl FnMut(
    Arc<DeserializeGuard<K>>,
    Arc<Context>,
) -> BoxFuture<'static, Result<Action, ReconcileError>>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    F: Fn(Arc<DeserializeGuard<K>>, Arc<Context>) -> Fut,
    Fut: std::future::Future<Output = Result<Action, ReconcileError>> + Send + 'static,
{
    let kind: &'static str = match K::kind(&()) {
        std::borrow::Cow::Borrowed(kind) => kind,
        // Derived kinds name themselves statically; any other is named once for the process.
        std::borrow::Cow::Owned(kind) => Box::leak(kind.into_boxed_str()),
    };
    move |guard, ctx| {
        let span = tracing::info_span!("reconcile", kind, object = %key_of(guard.as_ref()));
        let invalid = guard.0.is_err();
        let metrics = ctx.metrics.clone();
        let run = match &guard.0 {
            // The guard itself: the reconcile clones its object only once it is admitted.
            Ok(_) => reconcile(guard.clone(), ctx).boxed(),
            Err(error) => {
                let note = format!(
                    "cannot read this {kind}: {}; fix or delete it (other resources are unaffected)",
                    error.error
                );
                async move {
                    ctx.events
                        .publish(
                            guard.as_ref(),
                            true,
                            Reason::InvalidObject,
                            "Reconcile",
                            note,
                        )
                        .await;
                    Ok(Action::await_change())
                }
                .boxed()
            }
        };
        async move {
            let started = std::time::Instant::now();
            let result = run.await;
            let failed = match &result {
                Err(error) => Some(error.reason().as_str()),
                Ok(_) if invalid => Some(Reason::InvalidObject.as_str()),
                Ok(_) => None,
            };
            metrics.reconcile_finished(kind, started.elapsed(), failed);
            result
        }
        .instrument(span)
        .boxed()
    }
}

/// The requeue after a failed pass: backoff by error class, growing with the object's
/// consecutive failures.
pub fn error_policy<K: Resource>(
    object: Arc<K>,
    error: &ReconcileError,
    ctx: Arc<Context>,
) -> Action {
    let key = key_of(object.as_ref());
    let attempt = ctx.passes.failures.record(&key);
    let delay = retry::delay(error.is_retryable(), attempt);
    tracing::warn!(object = %key, reason = error.reason().as_str(), %error, attempt, ?delay, "reconcile failed");
    Action::requeue(delay)
}
