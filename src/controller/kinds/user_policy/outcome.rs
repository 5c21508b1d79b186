//! What one UserMfaPolicy pass says: Ready (every counted user complies, and everything the
//! selector names exists), Synced (every user read, and written where it had to be), and one
//! Event per pass that wrote, naming the first users (never one Event per user).

use kube::Resource;

use super::evaluate::{Failure, Judged, Standing, Tally};
use super::select::Missing;
use super::users::Wrote;
use crate::api::{ManagementPolicy, Reason, UserMfaPolicy, UserMfaPolicyStatus};
use crate::controller::conditions::{DesiredCondition, READY, SYNCED};
use crate::controller::context::Context;
use crate::controller::keys::key_of;

/// How many users a message names before "and N more".
pub const NAMED: usize = 5;

/// `names` shown: the first few, and how many more.
pub fn named(names: &[String]) -> String {
    let mut shown = names
        .iter()
        .take(NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > NAMED {
        shown.push_str(&format!(" and {} more", names.len() - NAMED));
    }
    shown
}

/// `first` (the first few of `total` names) shown, with how many more.
fn shown(first: &[String], total: usize) -> String {
    let mut shown = first.join(", ");
    if total > first.len() {
        shown.push_str(&format!(" and {} more", total - first.len()));
    }
    shown
}

/// Ready (every counted user complies, and everything the selector names exists) and Synced.
pub fn conditions(
    policy: &UserMfaPolicy,
    tally: &Tally,
    judged: &[Judged],
    missing: &[Missing],
    ledger_full: bool,
) -> Vec<DesiredCondition> {
    vec![
        ready(policy, tally, judged, missing),
        synced(tally, ledger_full),
    ]
}

/// How Ready names a failing user: `bob (Disabled)`, `carol (no MFA device)`.
fn failing(judged: &Judged) -> Option<String> {
    let user = &judged.member.user_name;
    match &judged.standing {
        Standing::NonCompliant(Failure::NoDevice) => Some(format!("{user} (no MFA device)")),
        Standing::NonCompliant(Failure::Setting(observed)) => Some(format!(
            "{user} ({})",
            observed.as_deref().unwrap_or("unknown")
        )),
        _ => None,
    }
}

fn ready(
    policy: &UserMfaPolicy,
    tally: &Tally,
    judged: &[Judged],
    missing: &[Missing],
) -> DesiredCondition {
    let spec = &policy.spec;
    let observe = spec.management_policy == ManagementPolicy::Observe;
    let counted = tally.compliant + tally.non_compliant;
    if let Some(first) = missing.first() {
        let subjects: Vec<String> = missing.iter().map(|m| m.subject.clone()).collect();
        let mode = if observe { "observed" } else { "enforced" };
        let message = format!(
            "directory {} has no {}; the users found are {mode}",
            spec.directory_id,
            named(&subjects)
        );
        return DesiredCondition::new(READY, false, first.reason, message);
    }
    if tally.non_compliant > 0 {
        // Only the first few are named (the report has them all): a policy may fail thousands.
        let mut shown: Vec<String> = judged.iter().filter_map(failing).take(NAMED).collect();
        if tally.non_compliant > NAMED as u64 {
            shown.push(format!("and {} more", tally.non_compliant - NAMED as u64));
        }
        let message = format!(
            "{} of {counted} users fail the policy: {}; the PolicyReport lists them all",
            tally.non_compliant,
            shown.join(", ")
        );
        return DesiredCondition::new(READY, false, Reason::UsersNonCompliant, message);
    }
    let reason = if observe {
        Reason::Observed
    } else {
        Reason::Enforced
    };
    let device = if spec.requires_device() {
        " and a bound device"
    } else {
        ""
    };
    let message = format!(
        "all {counted} counted users of directory {} have userMfaAuthenticationSettings {}{device} ({} exempt, {} owned elsewhere)",
        spec.directory_id,
        spec.user_mfa_authentication_settings.as_str(),
        tally.exempt,
        tally.conflicts + tally.own_setting
    );
    DesiredCondition::new(READY, true, reason, message)
}

/// Synced: every selected user read (and written, if it had to be).
fn synced(tally: &Tally, ledger_full: bool) -> DesiredCondition {
    if ledger_full {
        return DesiredCondition::new(
            SYNCED,
            false,
            Reason::RestoreLedgerFull,
            format!(
                "status.restoreTo holds {} users, the most one policy keeps; users it would have to record are not written (split the policy, or use deletionPolicy Orphan)",
                crate::api::MAX_RESTORE_POINTS
            ),
        );
    }
    if tally.errors > 0 {
        return DesiredCondition::new(
            SYNCED,
            false,
            Reason::CloudError,
            format!(
                "{} users could not be read or written (error results in the PolicyReport); retried within 30s",
                tally.errors
            ),
        );
    }
    DesiredCondition::new(
        SYNCED,
        true,
        Reason::InSync,
        format!("{} users read", tally.compliant + tally.non_compliant),
    )
}

/// One Event per pass that wrote (not one per user): `DriftRepaired` when the spec had been in
/// force, else `Updated`.
pub async fn announce(
    policy: &UserMfaPolicy,
    ctx: &Context,
    status: &UserMfaPolicyStatus,
    wrote: &Wrote,
) {
    if wrote.count == 0 {
        return;
    }
    let drift = crate::controller::conditions::is_true(&status.common.conditions, SYNCED)
        && status.common.observed_generation == policy.meta().generation;
    let reason = if drift {
        Reason::DriftRepaired
    } else {
        Reason::Updated
    };
    let note = format!(
        "set userMfaAuthenticationSettings={} on {} users{}: {}",
        policy.spec.user_mfa_authentication_settings.as_str(),
        wrote.count,
        if drift {
            " (changed outside Kubernetes, or newly selected)"
        } else {
            ""
        },
        shown(&wrote.first, wrote.count)
    );
    tracing::info!(policy = %key_of(policy), users = wrote.count, "{note}");
    ctx.events
        .publish(policy, false, reason, "Update", note)
        .await;
}
