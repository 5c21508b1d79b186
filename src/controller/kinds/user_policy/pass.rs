//! One pass of a UserMfaPolicy: route, select, settle who counts each user, read the counted
//! users, write the ones that differ (Enforce), judge them, and the conditions and Event that
//! follow. The user reads go at a resync's or a first pass's urgency even when the spec just
//! changed: a policy over 10,000 users must not crowd out a person's change of one resource.

use std::collections::HashSet;
use std::sync::Arc;

use futures::StreamExt;
use kube::Resource;

use super::evaluate::{self, Facts, Failure, Judged, Member, Place, Standing, Tally};
use super::select::{self, Missing};
use super::{Synced, ledger};
use crate::api::{ManagementPolicy, Reason, UserMfaPolicy, UserMfaPolicyStatus};
use crate::cloud::cloudsso::{CloudSsoClient, UserMfaSettings, UserMfaUpdate};
use crate::cloud::{self, CloudError, Urgency};
use crate::controller::census;
use crate::controller::conditions::{DesiredCondition, READY, SYNCED};
use crate::controller::context::Context;
use crate::controller::error::ReconcileError;
use crate::controller::keys::{DirectoryKey, UserKey, key_of};
use crate::controller::kinds::user::effective;
use crate::controller::state::policy_selections::{Selection, user_hash};
use crate::controller::state::{Claim, Claimant};
use crate::controller::status::StatusWriter;
use crate::controller::tenancy::Identity;

/// Users read or written at once by one pass (the client's rate limit still applies).
const CONCURRENT_USERS: usize = 32;

/// How many users a message names before "and N more".
const NAMED: usize = 5;

/// What the pass works with.
struct Target {
    client: CloudSsoClient,
    identity: Identity,
    directory: DirectoryKey,
    claim: Claim,
}

pub async fn run(
    policy: &UserMfaPolicy,
    ctx: &Context,
    status: &mut UserMfaPolicyStatus,
    writer: &StatusWriter<UserMfaPolicy>,
) -> Result<(Vec<DesiredCondition>, Synced), ReconcileError> {
    let spec = &policy.spec;
    let directory_id = spec.directory_id.as_str();
    let (endpoint, client, identity) = ctx.cloudsso_of(policy, directory_id).await?;
    let directory = DirectoryKey::new(&endpoint, directory_id);
    let claim = Claim {
        account_id: identity.account_id.clone(),
        endpoint: identity.endpoint.clone(),
        directory_id: directory_id.to_string(),
        user_id: None,
    };
    wait_for_older(policy, ctx, &claim)?;
    let target = Target {
        client,
        identity,
        directory,
        claim,
    };
    let urgency = cloud::limiter::current_urgency().min(Urgency::Initial);
    cloud::with_urgency(urgency, converge(policy, ctx, status, writer, target)).await
}

/// Selects, reads, writes and judges.
async fn converge(
    policy: &UserMfaPolicy,
    ctx: &Context,
    status: &mut UserMfaPolicyStatus,
    writer: &StatusWriter<UserMfaPolicy>,
    target: Target,
) -> Result<(Vec<DesiredCondition>, Synced), ReconcileError> {
    let spec = &policy.spec;
    let now = jiff::Timestamp::now();
    let directory_id = spec.directory_id.as_str();
    let selected = select::select(
        &spec.users,
        &target.client,
        &target.directory,
        &ctx.state.names,
    )
    .await
    .map_err(|error| ReconcileError::from_cloud(error, directory_id, None))?;
    let mut tally = Tally {
        matched: selected.members.len() as u64,
        ..Tally::default()
    };
    let owners =
        ctx.state
            .policy_selections
            .older_owners(&key_of(policy), created(policy), &target.claim);
    let own_settings = own_settings(ctx, &target.claim);
    let mut judged = Vec::new();
    let mut counted = Vec::new();
    for member in &selected.members {
        let place = evaluate::place(spec, member, now, &own_settings, &owners);
        tally.count_place(&place);
        match place {
            Place::Counted => counted.push(member.clone()),
            Place::Exempt(exemption) => judged.push(Judged {
                member: member.clone(),
                standing: Standing::Exempt {
                    reason: exemption.reason.clone(),
                    expires: exemption.expires.clone(),
                },
            }),
            Place::OwnSetting | Place::Owner(_) => {}
        }
    }
    let selection = Selection {
        uid: policy.meta().uid.clone(),
        claim: target.claim.clone(),
        created: created(policy),
        enforces: spec.management_policy == ManagementPolicy::Enforce,
        users: Arc::new(
            selected
                .members
                .iter()
                .map(|m| user_hash(&m.user_id))
                .collect(),
        ),
    };
    let read = read_users(ctx, &target, counted).await;
    let (read, wrote, ledger_full) =
        write_users(policy, ctx, status, writer, &target, read).await?;
    for (member, facts) in read {
        let standing = match facts {
            Ok(facts) => evaluate::judge(spec, &facts, now),
            Err(message) => Standing::Error(message),
        };
        tally.count_standing(&standing);
        if !matches!(standing, Standing::Compliant { stale: None }) {
            judged.push(Judged { member, standing });
        }
    }
    judged.sort_by(|a, b| a.member.user_name.cmp(&b.member.user_name));
    let errors = tally.errors > 0;
    let mut conditions = conditions(policy, &tally, &judged, &selected.missing, ledger_full);
    conditions.push(effective_of(ctx, &target).await);
    announce(policy, ctx, status, &wrote).await;
    let synced = Synced {
        directory: target.directory,
        identity: target.identity,
        claim: target.claim,
        tally,
        judged,
        missing: selected.missing,
        selection,
        next_expiry: evaluate::next_expiry(spec, now),
        errors,
        report: None,
    };
    Ok((conditions, synced))
}

fn created(policy: &UserMfaPolicy) -> Option<jiff::Timestamp> {
    policy.meta().creation_timestamp.as_ref().map(|t| t.0)
}

/// An older Enforce policy of the same directory that succeeded before (its status records the
/// same account and endpoint) but has not listed its users in this process yet (a restart): its
/// users are not known, so this one waits rather than write users it may not own.
fn wait_for_older(
    policy: &UserMfaPolicy,
    ctx: &Context,
    claim: &Claim,
) -> Result<(), ReconcileError> {
    if policy.spec.management_policy == ManagementPolicy::Observe {
        return Ok(());
    }
    let mine = (created(policy), key_of(policy));
    let known = ctx.wakers.user_policies.known();
    let pending = known
        .iter()
        .filter_map(|guard| guard.0.as_ref().ok())
        .filter(|other| {
            other.spec.directory_id == claim.directory_id
                && other.spec.management_policy == ManagementPolicy::Enforce
                && other.meta().deletion_timestamp.is_none()
                && (created(other), key_of(*other)) < mine
                && other.recorded_claim().as_ref() == Some(claim)
                && !ctx
                    .state
                    .policy_selections
                    .published(&key_of(*other), other.meta().uid.as_deref())
        })
        .map(key_of)
        .next();
    match pending {
        Some(owner) => Err(ReconcileError::Pending(format!(
            "waiting for the older UserMfaPolicy {owner} to list its users (it owns the users both select)"
        ))),
        None => Ok(()),
    }
}

impl Claimant for UserMfaPolicy {
    fn directory_id(&self) -> &str {
        &self.spec.directory_id
    }
    fn recorded_claim(&self) -> Option<Claim> {
        let status = self.status.as_ref()?;
        Claim::from_status(&status.common, &self.spec.directory_id, None)
    }
}

/// The users UserMfaSettings manage in the directory, through the same account and endpoint.
pub(super) fn own_settings(ctx: &Context, claim: &Claim) -> HashSet<String> {
    let registry = &ctx.state.user_claims;
    ctx.wakers
        .users
        .known()
        .iter()
        .filter_map(|guard| guard.0.as_ref().ok())
        .filter(|setting| {
            setting.spec.directory_id == claim.directory_id
                && setting.meta().deletion_timestamp.is_none()
        })
        .filter_map(|setting| registry.claim_of(setting))
        .filter(|owned| owned.account_id == claim.account_id && owned.endpoint == claim.endpoint)
        .filter_map(|owned| owned.user_id)
        .collect()
}

/// What a pass read of one user: its facts, or the error message.
pub type Read = (Member, Result<Facts, String>);

/// Reads each counted user's setting and devices through the view (a read younger than most of
/// the resync is reused). A user deleted since the listing is dropped.
async fn read_users(ctx: &Context, target: &Target, counted: Vec<Member>) -> Vec<Read> {
    let fresh = Some(census::fresh_for(ctx.budget.effective()));
    let devices_fresh = Some(census::fresh_for(ctx.budget.device_interval()));
    let view = &ctx.state.users;
    let reads = futures::stream::iter(counted).map(|member| async move {
        let key = target.directory.user(&member.user_id);
        let read = tokio::try_join!(
            view.settings(&target.client, &key, fresh),
            view.devices(&target.client, &key, devices_fresh),
        );
        match read {
            Ok((settings, devices)) => Some((
                member,
                Ok(Facts {
                    setting: settings.user_mfa_authentication_settings,
                    devices,
                }),
            )),
            Err(error) if error.is_entity_gone() => {
                view.forget(&key);
                None
            }
            Err(error) => Some((member, Err(user_error(error, target, &key)))),
        }
    });
    reads
        .buffer_unordered(CONCURRENT_USERS)
        .filter_map(futures::future::ready)
        .collect()
        .await
}

fn user_error(error: CloudError, target: &Target, key: &UserKey) -> String {
    ReconcileError::from_cloud(error, &target.directory.directory_id, Some(&key.user_id))
        .to_string()
}

/// Who a pass wrote: the users, and whether the spec had been in force before (drift).
pub struct Wrote {
    pub users: Vec<String>,
}

/// Writes every read user whose setting differs (Enforce only), after recording each one's value
/// in `restoreTo` (Restore only; a full ledger stops further writes); returns the reads with the
/// written value, who was written, and whether the ledger was full.
async fn write_users(
    policy: &UserMfaPolicy,
    ctx: &Context,
    status: &mut UserMfaPolicyStatus,
    writer: &StatusWriter<UserMfaPolicy>,
    target: &Target,
    mut read: Vec<Read>,
) -> Result<(Vec<Read>, Wrote, bool), ReconcileError> {
    let spec = &policy.spec;
    let mut wrote = Wrote { users: Vec::new() };
    if spec.management_policy != ManagementPolicy::Enforce {
        return Ok((read, wrote, false));
    }
    let due: Vec<usize> = (0..read.len())
        .filter(|i| matches!(&read[*i].1, Ok(facts) if evaluate::needs_write(spec, facts)))
        .collect();
    let (due, full) = ledger::record(policy, status, &read, due);
    if !due.is_empty() && ledger::records(policy) {
        writer.apply(status).await?;
    }
    let desired = spec.user_mfa_authentication_settings.as_str();
    // Collected first: a lazily mapped iterator inside the stream would make the pass's future
    // not provably Send.
    let writes: Vec<_> = due
        .into_iter()
        .map(|i| {
            let user_id = read[i].0.user_id.clone();
            async move {
                let update = UserMfaUpdate {
                    directory_id: spec.directory_id.clone(),
                    user_id: user_id.clone(),
                    user_mfa_authentication_settings: desired.to_string(),
                };
                let key = target.directory.user(&user_id);
                let written = target.client.update_user_mfa_setting(&update).await;
                if written.is_ok() {
                    let settings = UserMfaSettings {
                        user_mfa_authentication_settings: Some(desired.to_string()),
                    };
                    ctx.state.users.record_settings(&key, settings).await;
                }
                (i, written.map_err(|error| user_error(error, target, &key)))
            }
        })
        .collect();
    let outcomes: Vec<(usize, Result<(), String>)> = futures::stream::iter(writes)
        .buffer_unordered(CONCURRENT_USERS)
        .collect()
        .await;
    for (i, outcome) in outcomes {
        let (member, facts) = &mut read[i];
        match outcome {
            Ok(()) => {
                if let Ok(facts) = facts {
                    facts.setting = Some(desired.to_string());
                }
                wrote.users.push(member.user_name.clone());
            }
            Err(message) => *facts = Err(message),
        }
    }
    wrote.users.sort();
    Ok((read, wrote, full))
}

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

/// Ready (every counted user complies, and everything the selector names exists) and Synced.
fn conditions(
    policy: &UserMfaPolicy,
    tally: &Tally,
    judged: &[Judged],
    missing: &[Missing],
    ledger_full: bool,
) -> Vec<DesiredCondition> {
    let spec = &policy.spec;
    let observe = spec.management_policy == ManagementPolicy::Observe;
    let failing: Vec<String> = judged
        .iter()
        .filter_map(|judged| match &judged.standing {
            Standing::NonCompliant(Failure::NoDevice) => {
                Some(format!("{} (no MFA device)", judged.member.user_name))
            }
            Standing::NonCompliant(Failure::Setting(observed)) => Some(format!(
                "{} ({})",
                judged.member.user_name,
                observed.as_deref().unwrap_or("unknown")
            )),
            _ => None,
        })
        .collect();
    let counted = tally.compliant + tally.non_compliant;
    let ready = if let Some(first) = missing.first() {
        let subjects: Vec<String> = missing.iter().map(|m| m.subject.clone()).collect();
        DesiredCondition::new(
            READY,
            false,
            first.reason,
            format!(
                "directory {} has no {}; the users found are {}",
                spec.directory_id,
                named(&subjects),
                if observe { "observed" } else { "enforced" }
            ),
        )
    } else if !failing.is_empty() {
        DesiredCondition::new(
            READY,
            false,
            Reason::UsersNonCompliant,
            format!(
                "{} of {counted} users fail the policy: {}; the PolicyReport lists them all",
                failing.len(),
                named(&failing)
            ),
        )
    } else {
        DesiredCondition::new(
            READY,
            true,
            if observe {
                Reason::Observed
            } else {
                Reason::Enforced
            },
            format!(
                "all {counted} counted users of directory {} have userMfaAuthenticationSettings {}{} ({} exempt, {} owned elsewhere)",
                spec.directory_id,
                spec.user_mfa_authentication_settings.as_str(),
                if spec.requires_device() {
                    " and a bound device"
                } else {
                    ""
                },
                tally.exempt,
                tally.conflicts + tally.own_setting
            ),
        )
    };
    vec![ready, synced(tally, ledger_full)]
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

/// Whether the directory lets a per-user setting apply (read once per resync for all).
async fn effective_of(ctx: &Context, target: &Target) -> DesiredCondition {
    let directory_id = target.directory.directory_id.as_str();
    let read = ctx
        .state
        .directories
        .setting(&target.client, &target.directory, ctx.budget.effective())
        .await;
    match read {
        Ok(info) => effective(
            info.mfa_authentication_advance_settings.as_deref(),
            directory_id,
        ),
        Err(error) => {
            tracing::warn!(%error, directory_id, "could not read the directory's setting");
            effective(None, directory_id)
        }
    }
}

/// One Event per pass that wrote (not one per user): `DriftRepaired` when the spec had been in
/// force, else `Updated`.
async fn announce(
    policy: &UserMfaPolicy,
    ctx: &Context,
    status: &UserMfaPolicyStatus,
    wrote: &Wrote,
) {
    if wrote.users.is_empty() {
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
        wrote.users.len(),
        if drift {
            " (changed outside Kubernetes, or newly selected)"
        } else {
            ""
        },
        named(&wrote.users)
    );
    tracing::info!(policy = %key_of(policy), users = wrote.users.len(), "{note}");
    ctx.events
        .publish(policy, false, reason, "Update", note)
        .await;
}
