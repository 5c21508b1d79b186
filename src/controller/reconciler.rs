//! The one reconcile every kind runs: the finalizer, then observe, plan and act (act only under
//! `Enforce`), the conditions and Events that follow, one status built and written from one
//! place, and the requeue. A kind says only what differs: `Kind` for every kind, `Writable` for
//! the kinds that write to the cloud.

use std::future::Future;
use std::sync::Arc;

use kube::api::Api;
use kube::core::NamespaceResourceScope;
use kube::core::object::{HasSpec, HasStatus};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{self, Event as FinalizerEvent, finalizer};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::clock;
use super::conditions::{self, DesiredCondition, READY, SYNCED};
use super::context::{Context, Handled};
use super::error::ReconcileError;
use super::keys::{FINALIZER, key_of};
use super::plan::{FieldChange, Plan, describe};
use super::status::{self, StatusWriter};
use crate::api::{CloudSpec, CommonStatus, HasCommonStatus, ManagementPolicy, Reason};

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
    /// What its reconciles share: the `Context`, or one that wraps it.
    type Ctx: AsRef<Context> + Send + Sync + 'static;
    /// What a successful pass learned, kept for `report`.
    type Synced: Send;

    /// Whether it holds a finalizer (to write back on delete what it changed).
    const FINALIZES: bool;

    /// One pass against the cloud: the conditions to set and what to report.
    fn sync(
        &self,
        ctx: &Self::Ctx,
        previous: &Self::Status,
        writer: &StatusWriter<Self>,
    ) -> impl Future<Output = Result<(Vec<DesiredCondition>, Self::Synced), ReconcileError>> + Send;

    /// Puts what the pass learned into the kind's own status fields (and shares it: caches,
    /// census, other controllers).
    fn report(
        &self,
        ctx: &Self::Ctx,
        synced: Self::Synced,
        status: &mut Self::Status,
    ) -> impl Future<Output = ()> + Send;

    /// Clears the fields a failure makes meaningless (a user that does not exist has no devices).
    fn forget(_status: &mut Self::Status, _error: &ReconcileError) {}

    /// On delete (kinds that finalize): undo what the deletion policy asks.
    fn cleanup(
        &self,
        _ctx: &Self::Ctx,
    ) -> impl Future<Output = Result<Action, ReconcileError>> + Send {
        async { Ok(Action::await_change()) }
    }
}

/// The reconcile of every kind: the finalizer splits apply from cleanup for kinds that hold one.
pub async fn reconcile<K: Kind>(
    object: Arc<K>,
    ctx: Arc<K::Ctx>,
) -> Result<Action, ReconcileError> {
    let base: &Context = (*ctx).as_ref();
    let key = key_of(object.as_ref());
    // The main controller and the fast lane (see `controller::fast_lane`) share objects: one
    // pass at a time per object. The lock also keeps the generation the last full pass handled.
    let mut handled = base.passes.lock(&key).await;
    let this = object.meta().uid.clone().zip(object.meta().generation);
    let seen = object.status().and_then(|s| s.common().observed_generation);
    if object.meta().deletion_timestamp.is_none()
        && this.is_some()
        && *handled == this
        && seen != this.as_ref().map(|(_, generation)| *generation)
    {
        // This generation of this object was handled, and the copy is from before that pass
        // wrote its status (the watch has not caught up): nothing to do, and a pass would read
        // again.
        return Ok(Action::requeue(base.budget.next_resync(&key)));
    }
    let api: Api<K> = Api::namespaced(base.client.clone(), &object.namespace().unwrap_or_default());
    let applied = |result: Result<Action, ReconcileError>, handled: &mut Handled| {
        if result.is_ok() {
            *handled = this.clone();
        }
        result
    };
    if !K::FINALIZES {
        let result = apply(object, &ctx, &api).await;
        return applied(result, &mut handled);
    }
    let handled = &mut *handled;
    finalizer(&api, FINALIZER, object, |event| async {
        match event {
            FinalizerEvent::Apply(object) => applied(apply(object, &ctx, &api).await, handled),
            FinalizerEvent::Cleanup(object) => {
                let cleaned = object.cleanup(&ctx).await;
                if cleaned.is_ok() {
                    base.passes.forget(&key);
                }
                cleaned
            }
        }
    })
    .await
    .map_err(|error| match error {
        finalizer::Error::ApplyFailed(error) | finalizer::Error::CleanupFailed(error) => error,
        other => ReconcileError::Finalizer(other.to_string()),
    })
}

/// One pass: sync, then the status (common fields, the kind's own, or what a failure voids),
/// a Warning Event for a new failure, and the requeue.
async fn apply<K: Kind>(
    object: Arc<K>,
    ctx: &K::Ctx,
    api: &Api<K>,
) -> Result<Action, ReconcileError> {
    let base: &Context = ctx.as_ref();
    let now = clock::now();
    let writer = StatusWriter::new(api.clone(), object.name_any());
    let previous = object.status().cloned().unwrap_or_default();
    let outcome = object.sync(ctx, &previous, &writer).await;
    let desired = match &outcome {
        Ok((desired, _)) => desired.clone(),
        Err(error) => conditions::failed(error).to_vec(),
    };
    let mut status = previous.clone();
    *status.common_mut() =
        status::common_status(previous.common(), &desired, object.meta().generation, &now);
    match outcome {
        Ok((_, synced)) => {
            base.failures.clear(&key_of(object.as_ref()));
            object.report(ctx, synced, &mut status).await;
            let resync = base.budget.effective();
            writer.write_synced(&previous, status, resync, &now).await?;
            // Each resource at its own phase of the (budgeted) interval: reads spread evenly.
            Ok(Action::requeue(
                base.budget.next_resync(&key_of(object.as_ref())),
            ))
        }
        Err(error) => {
            K::forget(&mut status, &error);
            base.report_failure(object.as_ref(), &previous.common().conditions, &error)
                .await;
            writer.apply_changed(&previous, &status).await?;
            Err(error)
        }
    }
}

/// What a kind that writes to the cloud brings to `sync_writable`.
pub trait Writable: Kind {
    /// The client and ids a pass works on.
    type Target: Send + Sync;
    /// What the cloud has, as the planner compares it.
    type Observed: Clone + Send + Sync;
    /// The write that makes the cloud match.
    type Write: Send + Sync;
    /// What `status.restoreTo` keeps.
    type RestorePoint: Clone + Send + Sync;

    fn management_policy(&self) -> ManagementPolicy;

    /// Finds what to work on and reads it.
    fn observe(
        &self,
        ctx: &Self::Ctx,
    ) -> impl Future<Output = Result<(Self::Target, Self::Observed), ReconcileError>> + Send;

    /// What differs and the write that fixes it (None under Observe); pure.
    fn plan(&self, observed: &Self::Observed) -> Plan<Self::Write>;

    /// Makes the write, then reads back what the cloud now has.
    fn act(
        &self,
        target: &Self::Target,
        write: &Self::Write,
    ) -> impl Future<Output = Result<Self::Observed, ReconcileError>> + Send;

    /// How messages and Events name what is written: `directory d-…`, `user u-…`.
    fn subject(&self, target: &Self::Target) -> String;

    /// Ready's message when the cloud already matches.
    fn ready_message(&self, target: &Self::Target, _mode: ManagementPolicy) -> String {
        format!("{} has the declared MFA setting", self.subject(target))
    }

    /// The error when the cloud did not keep a write (`still` is what differs after it).
    fn not_kept(&self, still: &[FieldChange]) -> String {
        format!("the cloud did not keep the setting: {}", describe(still))
    }

    /// Whether the pass reaches another cloud object than the one the status recorded (the
    /// credentials moved to another account or endpoint, or a name resolved to another user):
    /// `restoreTo` was the old object's and must not be written to this one.
    fn moved(&self, _target: &Self::Target) -> bool {
        false
    }

    fn restore_to(status: &Self::Status) -> Option<Self::RestorePoint>;
    fn restore_point(observed: &Self::Observed) -> Self::RestorePoint;
    fn set_restore_to(status: &mut Self::Status, restore_to: Option<Self::RestorePoint>);
}

/// What `sync_writable` leaves for the kind's own reporting.
pub struct Converged<K: Writable> {
    pub target: K::Target,
    pub observed: K::Observed,
    pub conditions: Vec<DesiredCondition>,
    pub restore_to: Option<K::RestorePoint>,
    /// Whether this pass wrote to the cloud.
    pub wrote: bool,
}

/// Observe, plan, and act only under `Enforce`: writes the plan (after recording
/// `status.restoreTo`), confirms the cloud kept it, and says so in conditions and Events.
pub async fn sync_writable<K: Writable>(
    object: &K,
    ctx: &K::Ctx,
    previous: &K::Status,
    writer: &StatusWriter<K>,
) -> Result<Converged<K>, ReconcileError> {
    let base: &Context = ctx.as_ref();
    let (target, mut observed) = object.observe(ctx).await?;
    let plan = object.plan(&observed);
    let mut restore_to = K::restore_to(previous).filter(|_| !object.moved(&target));
    let subject = object.subject(&target);
    let wrote = object.management_policy() == ManagementPolicy::Enforce && plan.write.is_some();
    let conditions = match (object.management_policy(), &plan.write) {
        (ManagementPolicy::Enforce, Some(write)) => {
            if restore_to.is_none() {
                // Recorded before the first write, so a crash in between loses nothing.
                restore_to = Some(K::restore_point(&observed));
                let mut recorded = previous.clone();
                K::set_restore_to(&mut recorded, restore_to.clone());
                writer.apply(&recorded).await?;
            }
            observed = object.act(&target, write).await?;
            let still = object.plan(&observed).changes;
            if !still.is_empty() {
                return Err(ReconcileError::Cloud(object.not_kept(&still)));
            }
            updated(base, object, previous.common(), &subject, &plan.changes).await
        }
        (ManagementPolicy::Observe, _) if !plan.changes.is_empty() => {
            drifted(base, object, previous.common(), &plan.changes).await
        }
        (mode, _) => in_sync(mode, object.ready_message(&target, mode)),
    };
    Ok(Converged {
        target,
        observed,
        conditions,
        restore_to,
        wrote,
    })
}

/// After a write: `DriftRepaired` when the spec had been in force (someone changed the cloud),
/// else `Updated`; an Event says what changed.
async fn updated<K: Kind>(
    base: &Context,
    object: &K,
    previous: &CommonStatus,
    subject: &str,
    changes: &[FieldChange],
) -> Vec<DesiredCondition> {
    let described = describe(changes);
    let drift = conditions::is_true(&previous.conditions, SYNCED)
        && previous.observed_generation == object.meta().generation;
    let (reason, note) = if drift {
        (
            Reason::DriftRepaired,
            format!("{subject} was changed outside Kubernetes; set back: {described}"),
        )
    } else {
        (Reason::Updated, format!("{subject}: {described}"))
    };
    base.event(object, false, reason, "Update", note).await;
    vec![
        DesiredCondition::new(
            READY,
            true,
            Reason::Enforced,
            format!("{subject} has the declared MFA setting"),
        ),
        DesiredCondition::new(SYNCED, true, reason, format!("set {described}")),
    ]
}

/// Observe found a difference: not written; a Warning Event the first time it reads so.
async fn drifted<K: Kind>(
    base: &Context,
    object: &K,
    previous: &CommonStatus,
    changes: &[FieldChange],
) -> Vec<DesiredCondition> {
    let message = format!(
        "the cloud differs from the spec (Observe: not written): {}",
        describe(changes)
    );
    if !conditions::says(&previous.conditions, SYNCED, Reason::Drifted, &message) {
        base.event(object, true, Reason::Drifted, "Observe", message.clone())
            .await;
    }
    vec![
        DesiredCondition::new(READY, false, Reason::Drifted, message.clone()),
        DesiredCondition::new(SYNCED, false, Reason::Drifted, message),
    ]
}

/// Nothing to write: Ready says whether that is by enforcing or only observing.
fn in_sync(mode: ManagementPolicy, ready_message: String) -> Vec<DesiredCondition> {
    let reason = match mode {
        ManagementPolicy::Enforce => Reason::Enforced,
        ManagementPolicy::Observe => Reason::Observed,
    };
    vec![
        DesiredCondition::new(READY, true, reason, ready_message),
        DesiredCondition::new(SYNCED, true, Reason::InSync, "the cloud matches the spec"),
    ]
}
