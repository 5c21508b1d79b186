//! A UserMfaPolicy's `restoreTo`: each user's setting from before the policy first changed it,
//! recorded (under deletionPolicy Restore only) in the status before the write, and written back
//! on delete to the users the policy still owns, through the account and endpoint it changed
//! them through. Kept as two lists of ids (see `PolicyRestorePoints`), bounded so the object
//! stays far from etcd's limit: past the bound the policy writes no further users.

use std::collections::HashSet;

use futures::StreamExt;
use kube::Resource;
use kube::runtime::controller::Action;

use super::outcome::named;
use super::users::Read;
use crate::api::{
    DeletionPolicy, MAX_RESTORE_POINTS, PolicyRestorePoints, Reason, UserMfaPolicy,
    UserMfaPolicyStatus,
};
use crate::cloud::cloudsso::{CloudSsoClient, UserMfaUpdate};
use crate::controller::context::Context;
use crate::controller::error::ReconcileError;
use crate::controller::keys::key_of;
use crate::controller::restore;
use crate::controller::state::{Claim, Claimant};

/// Whether the policy keeps restore points (only to write them back: Orphan keeps none, so a
/// policy over 100,000 users does not carry their ids).
pub fn records(policy: &UserMfaPolicy) -> bool {
    policy.spec.deletion_policy == DeletionPolicy::Restore
}

/// Records in `status.restoreTo` the value of each of the `due` users (indices into `read`) that
/// it does not hold yet; returns the users that may be written (all, unless the ledger is full)
/// and whether it was.
pub fn record(
    policy: &UserMfaPolicy,
    status: &mut UserMfaPolicyStatus,
    read: &[Read],
    due: Vec<usize>,
) -> (Vec<usize>, bool) {
    if !records(policy) || due.is_empty() {
        return (due, false);
    }
    let ledger = status.restore_to.get_or_insert_with(Default::default);
    let mut kept: HashSet<String> = ledger
        .enabled
        .iter()
        .chain(&ledger.disabled)
        .cloned()
        .collect();
    let mut writable = Vec::new();
    let mut full = false;
    for i in due {
        let (member, facts) = &read[i];
        let Ok(facts) = facts else { continue };
        if kept.contains(&*member.user_id) {
            writable.push(i);
            continue;
        }
        if kept.len() >= MAX_RESTORE_POINTS {
            full = true;
            continue;
        }
        match facts.setting.as_deref() {
            Some("Enabled") => ledger.enabled.push(member.user_id.to_string()),
            Some("Disabled") => ledger.disabled.push(member.user_id.to_string()),
            // No value to go back to: written, and left as the policy set it on delete.
            _ => {}
        }
        kept.insert(member.user_id.to_string());
        writable.push(i);
    }
    (writable, full)
}

/// On delete under Restore: writes each recorded value back to the users this policy still owns
/// (no UserMfaSetting and no older policy has them now); a Warning names who was skipped.
pub async fn restore_on_delete(
    policy: &UserMfaPolicy,
    ctx: &Context,
) -> Result<Action, ReconcileError> {
    let ledger = policy
        .status
        .as_ref()
        .and_then(|status| status.restore_to.clone())
        .unwrap_or_default();
    if !records(policy) || ledger.is_empty() {
        return Ok(Action::await_change());
    }
    let directory_id = policy.spec.directory_id.as_str();
    let route = ctx.cloudsso_of(policy, directory_id).await;
    let (_, client, identity) = match restore::skip_unless_routed(ctx, policy, route).await? {
        Ok(route) => route,
        Err(skipped) => return Ok(skipped),
    };
    let now = Claim {
        account_id: identity.account_id,
        endpoint: identity.endpoint,
        directory_id: directory_id.to_string(),
        user_id: None,
    };
    if let Some(claimed) = policy.recorded_claim()
        && claimed != now
    {
        let why = format!(
            "the credentials now reach {}, not {} whose users this policy changed",
            now.subject(),
            claimed.subject()
        );
        return Ok(restore::skip(ctx, policy, Reason::Conflict, why).await);
    }
    write_back(policy, ctx, &client, &now, &ledger).await
}

/// The ledger's users that another owner has now (skipped), and the writes back to the rest.
fn still_owned(
    policy: &UserMfaPolicy,
    ctx: &Context,
    claim: &Claim,
    ledger: &PolicyRestorePoints,
) -> (Vec<String>, Vec<(String, &'static str)>) {
    let created = policy.meta().creation_timestamp.as_ref().map(|t| t.0);
    let owners = ctx
        .state
        .policy_selections
        .older_owners(&key_of(policy), created, claim);
    let own_settings = super::pass::own_settings(ctx, claim);
    let values = [("Enabled", &ledger.enabled), ("Disabled", &ledger.disabled)];
    let mut skipped = Vec::new();
    let mut writes = Vec::new();
    for (value, users) in values {
        for user_id in users {
            if own_settings.contains(user_id) || owners.owner_of(user_id).is_some() {
                skipped.push(user_id.clone());
            } else {
                writes.push((user_id.clone(), value));
            }
        }
    }
    (skipped, writes)
}

/// Writes the ledger back to the users still owned; Err (retried) if a write failed.
async fn write_back(
    policy: &UserMfaPolicy,
    ctx: &Context,
    client: &CloudSsoClient,
    claim: &Claim,
    ledger: &PolicyRestorePoints,
) -> Result<Action, ReconcileError> {
    let (skipped, writes) = still_owned(policy, ctx, claim, ledger);
    let directory_id = policy.spec.directory_id.as_str();
    // Collected first, so the deletion's future is provably Send.
    let writes: Vec<_> = writes
        .into_iter()
        .map(|(user_id, value)| async move {
            let update = UserMfaUpdate {
                directory_id: directory_id.to_string(),
                user_id: user_id.clone(),
                user_mfa_authentication_settings: value.to_string(),
            };
            match client.update_user_mfa_setting(&update).await {
                Err(error) if !error.is_entity_gone() => Err((user_id, error)),
                _ => Ok(user_id),
            }
        })
        .collect();
    let outcomes: Vec<_> = futures::stream::iter(writes)
        .buffer_unordered(16)
        .collect()
        .await;
    let restored = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
    if let Some(Err((user_id, error))) = outcomes.into_iter().find(Result::is_err) {
        let error = ReconcileError::from_cloud(error, directory_id, Some(&user_id));
        let note = format!("could not restore every user before deletion: {error}");
        ctx.events
            .publish(policy, true, error.reason(), "Delete", note)
            .await;
        return Err(error);
    }
    let mut note = format!("{restored} users set back to their setting from before this policy");
    if !skipped.is_empty() {
        note.push_str(&format!(
            "; not restored (a UserMfaSetting or an older policy owns them now): {}",
            named(&skipped)
        ));
    }
    ctx.events
        .publish(
            policy,
            !skipped.is_empty(),
            Reason::Restored,
            "Delete",
            note,
        )
        .await;
    Ok(Action::await_change())
}
