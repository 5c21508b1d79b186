//! UserMfaPolicy: one MFA setting for the users a selector finds. A pass selects the users,
//! settles who counts each one (an exemption, a UserMfaSetting, an older Enforce policy, or this
//! policy), reads the counted users through the shared user view (at most once per resync,
//! whoever asks), writes those that differ (Enforce; `restoreTo` recorded first under Restore),
//! and reports: counts in status, names in the PolicyReport, the per-policy gauges.

mod evaluate;
mod ledger;
mod outcome;
mod pass;
mod report;
mod select;
mod users;

use std::time::Duration;

use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

pub use evaluate::{Facts, Failure, Judged, Member, Place, Standing, Tally};

use crate::api::{PolicyReportStatus, UserMfaPolicy};
use crate::controller::budget::{Calls, CensusDemand};
use crate::controller::conditions::DesiredCondition;
use crate::controller::context::Context;
use crate::controller::error::ReconcileError;
use crate::controller::keys::{DirectoryKey, counter_key, key_of};
use crate::controller::reconciler::Kind;
use crate::controller::state::Claim;
use crate::controller::state::policy_selections::Selection;
use crate::controller::status::StatusWriter;
use crate::controller::tenancy::Identity;
use crate::telemetry::PolicyUsers;

/// What a successful pass learned.
pub struct Synced {
    directory: DirectoryKey,
    identity: Identity,
    claim: Claim,
    tally: Tally,
    /// The users with a result to report (fail, warn, skip, error), by name.
    judged: Vec<Judged>,
    /// What the selector names that the directory lacks.
    missing: Vec<select::Missing>,
    /// The users it selected (for the ownership of younger policies).
    selection: Selection,
    next_expiry: Option<jiff::Timestamp>,
    /// Whether a user could not be read or written (the pass is retried soon).
    errors: bool,
    report: Option<PolicyReportStatus>,
}

impl Kind for UserMfaPolicy {
    type Synced = Synced;
    const FINALIZES: bool = true;

    /// Its directory's setting (for Effective); its users are counted by its pass, as a census.
    fn calls(&self) -> Calls {
        Calls::Single
    }

    async fn sync(
        &self,
        ctx: &Context,
        status: &mut Self::Status,
        writer: &StatusWriter<Self>,
    ) -> Result<(Vec<DesiredCondition>, Synced), ReconcileError> {
        pass::run(self, ctx, status, writer).await
    }

    /// Tells younger policies of the directory what this one now owns, counts its users in the
    /// budget, sets its gauges and writes its PolicyReport.
    async fn publish(&self, ctx: &Context, synced: &mut Synced) {
        let key = key_of(self);
        if ctx
            .state
            .policy_selections
            .publish(&key, synced.selection.clone())
        {
            wake_younger(ctx, self, &synced.claim.directory_id);
        }
        let census = CensusDemand {
            users: synced.tally.matched,
            managed: synced.tally.own_setting,
            interval: None,
        };
        ctx.budget.count_census(&counter_key(self), Some(census));
        ctx.metrics.set_policy_users(
            &self.namespace().unwrap_or_default(),
            &self.name_any(),
            &synced.directory.directory_id,
            PolicyUsers::from(&synced.tally),
        );
        synced.report = Some(report::write(ctx, self, synced).await);
    }

    fn project(&self, synced: Synced, status: &mut Self::Status) {
        let Synced {
            identity,
            tally,
            next_expiry,
            report,
            ..
        } = synced;
        identity.record(&mut status.common);
        status.matched_users = Some(tally.matched);
        status.compliant_users = Some(tally.compliant);
        status.non_compliant_users = Some(tally.non_compliant);
        status.exempt_users = Some(tally.exempt);
        status.conflicts = Some(tally.conflicts);
        status.conflicting_policies = tally.owners.into_iter().collect();
        status.users_with_own_setting = Some(tally.own_setting);
        status.error_users = Some(tally.errors);
        status.next_exemption_expiry = next_expiry.map(|at| at.to_string());
        status.report = report;
    }

    /// Passes again when an exemption lapses, and soon after a user could not be read or written.
    fn requeue_within(&self, synced: &Synced, resync: Duration) -> Duration {
        let mut next = resync;
        if synced.errors {
            next = next.min(Duration::from_secs(30));
        }
        if let Some(at) = synced.next_expiry {
            let left = jiff::Timestamp::now().duration_until(at).unsigned_abs();
            next = next.min(left + Duration::from_secs(1));
        }
        next
    }

    /// Not while this process has not seen its selection (younger policies wait for it), nor
    /// once an exemption it counted has lapsed.
    fn may_skip(&self, ctx: &Context) -> bool {
        let published = ctx
            .state
            .policy_selections
            .published(&key_of(self), self.meta().uid.as_deref());
        let lapsed = self
            .status
            .as_ref()
            .and_then(|status| status.next_exemption_expiry.as_deref())
            .and_then(|at| at.parse::<jiff::Timestamp>().ok())
            .is_some_and(|at| at <= jiff::Timestamp::now());
        published && !lapsed
    }

    async fn cleanup(&self, ctx: &Context) -> Result<Action, ReconcileError> {
        let action = ledger::restore_on_delete(self, ctx).await?;
        let key = key_of(self);
        ctx.budget.release(&counter_key(self));
        ctx.state.policy_selections.forget(&key);
        ctx.metrics
            .forget_policy(&self.namespace().unwrap_or_default(), &self.name_any());
        wake_younger(ctx, self, &self.spec.directory_id);
        Ok(action)
    }
}

/// Queues the younger policies of the directory: what they own may have changed.
fn wake_younger(ctx: &Context, policy: &UserMfaPolicy, directory_id: &str) {
    let created = policy.meta().creation_timestamp.as_ref().map(|t| t.0);
    let key = key_of(policy);
    ctx.wakers.user_policies.wake_where(|other| {
        let theirs = other.meta().creation_timestamp.as_ref().map(|t| t.0);
        other.spec.directory_id == directory_id
            && key_of(other) != key
            && (created, key.as_str()) < (theirs, key_of(other).as_str())
    });
}
