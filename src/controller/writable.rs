//! What a pass of a kind that writes to the cloud does (`Writable`): observe, plan, record
//! `status.restoreTo` before the first write (during the read when it can), write only under
//! `Enforce`, confirm the cloud kept it, and the conditions and Events that say so.

use std::future::Future;

use super::conditions::{self, DesiredCondition, READY, SYNCED};
use super::context::Context;
use super::error::ReconcileError;
use super::plan::{FieldChange, Plan, describe};
use super::reconciler::Kind;
use super::status::StatusWriter;
use crate::api::{CommonStatus, HasCommonStatus, ManagementPolicy, Reason};

/// What a kind that writes to the cloud brings to `sync_writable`.
pub trait Writable: Kind {
    /// The client and ids a pass works on.
    type Target: Send + Sync;
    /// What the cloud has, as the planner compares it.
    type Observed: Clone + Send + Sync;
    /// The write that makes the cloud match.
    type Write: Send + Sync;
    /// What `status.restoreTo` keeps.
    type RestorePoint: Clone + PartialEq + Send + Sync;

    fn management_policy(&self) -> ManagementPolicy;

    /// Finds what to work on and reads it.
    fn observe(
        &self,
        ctx: &Context,
    ) -> impl Future<Output = Result<(Self::Target, Self::Observed), ReconcileError>> + Send;

    /// What differs and the write that fixes it (None under Observe); pure.
    fn plan(&self, observed: &Self::Observed) -> Plan<Self::Write>;

    /// Makes the write, then reads back what the cloud now has.
    fn act(
        &self,
        ctx: &Context,
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
    /// When a spec change will likely write (what the last pass saw, `status.observed`, differs
    /// from what the spec now declares, and this resource owns what it names): the restore
    /// point of what the last pass saw, for `sync_writable` to record during its read. None (the
    /// default): it is recorded after the read, before the write.
    fn restore_point_before_change(&self, _status: &Self::Status) -> Option<Self::RestorePoint> {
        None
    }
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
/// `status.restoreTo`, which stays in `status` through a failure that follows), confirms the
/// cloud kept it, and says so in conditions and Events.
pub async fn sync_writable<K: Writable>(
    object: &K,
    ctx: &Context,
    status: &mut K::Status,
    writer: &StatusWriter<K>,
) -> Result<Converged<K>, ReconcileError> {
    let (observing, early) = (object.observe(ctx), early_restore_point(object, status));
    let ((target, mut observed), early) = match early {
        None => (observing.await?, None),
        Some((point, early_status)) => {
            let (observing, written) = tokio::join!(observing, writer.apply(&early_status));
            (observing?, written.is_ok().then_some(point))
        }
    };
    let plan = object.plan(&observed);
    // The object the status recorded is not this one: its restore point is not this one's.
    let mut restore_to = K::restore_to(status).filter(|_| !object.moved(&target));
    K::set_restore_to(status, restore_to.clone());
    let subject = object.subject(&target);
    let wrote = object.management_policy() == ManagementPolicy::Enforce && plan.write.is_some();
    let conditions = match (object.management_policy(), &plan.write) {
        (ManagementPolicy::Enforce, Some(write)) => {
            if restore_to.is_none() {
                let point = K::restore_point(&observed);
                // Recorded before the first write, so a crash in between loses nothing: during
                // the read when the cloud still had what the last pass saw, else now.
                let recorded = early.as_ref() == Some(&point);
                restore_to = Some(point);
                K::set_restore_to(status, restore_to.clone());
                if !recorded {
                    writer.apply(status).await?;
                }
            }
            observed = object.act(ctx, &target, write).await?;
            let still = object.plan(&observed).changes;
            if !still.is_empty() {
                return Err(ReconcileError::Cloud(object.not_kept(&still)));
            }
            updated(ctx, object, status.common(), &subject, &plan.changes).await
        }
        (ManagementPolicy::Observe, _) if !plan.changes.is_empty() => {
            drifted(ctx, object, status.common(), &plan.changes).await
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

/// A spec change that the kind expects to be the resource's first write (no `restoreTo` yet, see
/// `restore_point_before_change`): the restore point of what the last pass saw, and the status
/// that records it, to write during the read (an API write less on the change's path).
/// `sync_writable` keeps it only when the read finds the same; else (no write after all, the
/// cloud changed since, a failed read) the pass's own status replaces it. Left: when that status
/// is never written (it fails too, or the process dies in between), `restoreTo` keeps what the
/// last pass saw, which is the value to restore unless the cloud changed in that window.
fn early_restore_point<K: Writable>(
    object: &K,
    status: &K::Status,
) -> Option<(K::RestorePoint, K::Status)> {
    let enforced = object.management_policy() == ManagementPolicy::Enforce;
    let changed = status.common().observed_generation != object.meta().generation;
    if !enforced || !changed || K::restore_to(status).is_some() {
        return None;
    }
    let point = object.restore_point_before_change(status)?;
    let mut early = status.clone();
    K::set_restore_to(&mut early, Some(point.clone()));
    Some((point, early))
}

/// After a write: `DriftRepaired` when the spec had been in force (someone changed the cloud),
/// else `Updated`; an Event says what changed.
async fn updated<K: Kind>(
    ctx: &Context,
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
    ctx.events
        .publish(object, false, reason, "Update", note)
        .await;
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
    ctx: &Context,
    object: &K,
    previous: &CommonStatus,
    changes: &[FieldChange],
) -> Vec<DesiredCondition> {
    let message = format!(
        "the cloud differs from the spec (Observe: not written): {}",
        describe(changes)
    );
    if !conditions::says(&previous.conditions, SYNCED, Reason::Drifted, &message) {
        ctx.events
            .publish(object, true, Reason::Drifted, "Observe", message.clone())
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
