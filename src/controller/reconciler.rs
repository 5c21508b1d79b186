//! The one reconcile every kind runs: the current-status shortcut, admission at the pass's
//! urgency, the finalizer, then observe, plan and act (act only under `Enforce`), the conditions
//! and Events that follow, one status built and written from one place, and the requeue. A kind
//! says only what differs: `Kind` for every kind, `writable::Writable` for the kinds that write.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use kube::api::Api;
use kube::core::object::{HasSpec, HasStatus};
use kube::core::{DeserializeGuard, NamespaceResourceScope};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use super::admission::{Place, Wake};
use super::budget::{Budget, Calls};
use super::clock;
use super::conditions::{self, DesiredCondition};
use super::context::Context;
use super::error::ReconcileError;
use super::finalizer;
use super::instrument;
use super::keys::{counter_key, fingerprint, key_of};
use super::passes::{current_for, urgency_of};
use super::status::{self, StatusWriter};
use crate::api::{CloudSpec, HasCommonStatus};
use crate::cloud::{self, Urgency};

/// What one kind brings to the shared reconcile (its spec names the cloud and the credentials;
/// its status carries the common fields).
pub trait Kind:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + HasSpec<Spec: CloudSpec>
    + HasStatus<Status: Serialize + PartialEq + Clone + Default + HasCommonStatus + Send + Sync>
    + Clone
    + Serialize
    + DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// What a successful pass learned, kept for `publish` and `project`.
    type Synced: Send;

    /// Whether it holds a finalizer (to write back on delete what it changed).
    const FINALIZES: bool;

    /// What one resource costs each resync, for the budget (counted as the watch sees it).
    fn calls(&self) -> Calls;

    /// One pass against the cloud: the conditions to set and what it learned. `status` is the
    /// one the pass will write: what the pass records before a write (`restoreTo`) goes there,
    /// so a failure after it keeps it.
    fn sync(
        &self,
        ctx: &Context,
        status: &mut Self::Status,
        writer: &StatusWriter<Self>,
    ) -> impl Future<Output = Result<(Vec<DesiredCondition>, Self::Synced), ReconcileError>> + Send;

    /// What a successful pass tells the rest of the operator (caches, census, budget, other
    /// resources to wake); it may add to `synced` what the status shows of that.
    fn publish(
        &self,
        _ctx: &Context,
        _synced: &mut Self::Synced,
    ) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// When the next pass is due, given the resync's `resync` (sooner, e.g. when an exemption
    /// lapses).
    fn requeue_within(
        &self,
        _synced: &Self::Synced,
        resync: std::time::Duration,
    ) -> std::time::Duration {
        resync
    }

    /// Puts what the pass learned into the kind's own status fields; pure.
    fn project(&self, synced: Self::Synced, status: &mut Self::Status);

    /// Clears the fields a failure makes meaningless (a user that does not exist has no devices).
    fn forget(_status: &mut Self::Status, _error: &ReconcileError) {}

    /// Whether a current status lets a pass be skipped (false while this process lacks
    /// something only a pass builds, e.g. a census that is asked for and not running).
    fn may_skip(&self, _ctx: &Context) -> bool {
        true
    }

    /// On delete (kinds that finalize): undo what the deletion policy asks.
    fn cleanup(
        &self,
        _ctx: &Context,
    ) -> impl Future<Output = Result<Action, ReconcileError>> + Send {
        async { Ok(Action::await_change()) }
    }
}

/// Counts `object`'s calls in the budget as the watch delivers it (the budget follows the store
/// as it fills, not the passes that have run).
pub fn count<K: Kind>(budget: &Budget, object: &K) {
    budget.count(&counter_key(object), object.calls());
}

/// The reconcile of every kind (see `reconcile_guarded`), outside a controller: a pass that
/// is not admitted at once is not sent back (tests, one-off passes).
pub async fn reconcile<K: Kind>(
    object: Arc<K>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let guard = Arc::new(DeserializeGuard(Ok(Arc::unwrap_or_clone(object))));
    let nowhere: Wake = Arc::new(|_: &str| false);
    reconcile_guarded(guard, ctx, nowhere).await
}

/// The reconcile of every kind, on the watch's own copy. A resource whose status is current
/// returns at once with its next requeue (no cloud call, no slot). The rest are admitted at
/// their urgency, or take a line and return (`admission`): `wake` sends the object back to its
/// controller when a slot is its, so 10,000 waiting passes (a bulk apply) hold no future, no
/// copy of their object and nothing in kube-runtime's runner. Every cloud call of an admitted
/// pass waits at the limiter at its urgency.
pub async fn reconcile_guarded<K: Kind>(
    guard: Arc<DeserializeGuard<K>>,
    ctx: Arc<Context>,
    wake: Wake,
) -> Result<Action, ReconcileError> {
    let Ok(object) = &guard.0 else {
        // An object that does not deserialize is `instrument::measured`'s to report.
        return Ok(Action::await_change());
    };
    // Failures, marks, lines and superseding know it by kind too: two kinds may hold one name.
    let counted = counter_key(object);
    let hash = fingerprint(&counted);
    let arrival = ctx.passes.admission.arrive(hash);
    let marked = ctx.passes.marks.take_hash(hash);
    let urgency = urgency_of(object, object.status());
    let finalized = !K::FINALIZES || finalizer::holds(object);
    if urgency == Urgency::Resync && !marked && finalized && object.may_skip(&ctx) {
        let interval = ctx.budget.effective();
        let now = jiff::Timestamp::now();
        if let Some(left) = current_for(object, object.status(), interval, now) {
            return Ok(Action::requeue(left));
        }
    }
    let key = key_of(object);
    // A first pass that failed before holds no resync back (see `Place`).
    let place = Place {
        first: urgency == Urgency::Initial && ctx.passes.failures.attempts(&counted) == 0,
        ..Place::of(urgency)
    };
    let Some(_admitted) = arrival.enter(place, &key, ctx.budget.effective(), &wake) else {
        if marked {
            // Its pass, when it comes back, still runs in full.
            ctx.passes.marks.mark_hash(hash);
        }
        return Ok(Action::await_change());
    };
    let pass = async {
        let object = Arc::new(object.clone());
        let span = instrument::pass_span(&K::kind(&()), &key);
        cloud::with_urgency(urgency, Box::pin(run(object, &ctx).instrument(span))).await
    };
    if urgency == Urgency::Interactive {
        return pass.await;
    }
    // A spec change or deletion ends a lesser pass of the object (as a crash would: the change's
    // pass reads afresh), so it never waits behind that pass's turn at the limiter.
    let superseded = ctx.passes.supersedable(&counted);
    tokio::select! {
        result = pass => result,
        () = superseded.fired() => {
            tracing::debug!(object = %key, "superseded by a change of the object");
            Ok(Action::requeue(std::time::Duration::ZERO))
        }
    }
}

/// A pass: for kinds that finalize, a deletion is cleaned up and releases the finalizer; a
/// resource without the finalizer gets it, and the same pass goes on (see `finalizer`).
async fn run<K: Kind>(object: Arc<K>, ctx: &Context) -> Result<Action, ReconcileError> {
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &object.namespace().unwrap_or_default());
    if !K::FINALIZES {
        return apply(object, ctx, &api).await;
    }
    if object.meta().deletion_timestamp.is_some() {
        if !finalizer::holds(object.as_ref()) {
            return Ok(Action::await_change());
        }
        let action = object.cleanup(ctx).await?;
        finalizer::remove(&api, object.as_ref()).await?;
        return Ok(action);
    }
    let object = match finalizer::holds(object.as_ref()) {
        true => object,
        false => Arc::new(finalizer::add(&api, object.as_ref()).await?),
    };
    apply(object, ctx, &api).await
}

/// One pass: sync, then the status (common fields, the kind's own, or what a failure voids),
/// a Warning Event for a new failure, and the requeue one resync after this pass began.
async fn apply<K: Kind>(
    object: Arc<K>,
    ctx: &Context,
    api: &Api<K>,
) -> Result<Action, ReconcileError> {
    let (started, now) = (Instant::now(), clock::now());
    let writer = StatusWriter::new(api.clone(), object.name_any());
    let previous = object.status().cloned().unwrap_or_default();
    let mut status = previous.clone();
    let outcome = object.sync(ctx, &mut status, &writer).await;
    let desired = match &outcome {
        Ok((desired, _)) => desired.clone(),
        Err(error) => conditions::failed(error).to_vec(),
    };
    *status.common_mut() =
        status::common_status(previous.common(), &desired, object.meta().generation, &now);
    match outcome {
        Ok((_, mut synced)) => {
            ctx.passes.failures.clear(&counter_key(object.as_ref()));
            object.publish(ctx, &mut synced).await;
            let next = object.requeue_within(&synced, ctx.budget.next_resync(started));
            object.project(synced, &mut status);
            let resync = ctx.budget.effective();
            writer.write_synced(&previous, status, resync, &now).await?;
            Ok(Action::requeue(next))
        }
        Err(error) => {
            K::forget(&mut status, &error);
            ctx.events
                .failure(object.as_ref(), &previous.common().conditions, &error)
                .await;
            writer.apply_changed(&previous, &status).await?;
            Err(error)
        }
    }
}
