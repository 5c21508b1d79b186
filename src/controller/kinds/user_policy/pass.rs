//! One pass of a UserMfaPolicy: route, select, settle who counts each user, read the counted
//! users, write the ones that differ (Enforce), judge them, and the conditions and Event that
//! follow (`users` reads and writes, `outcome` says). The user reads go at a resync's or a first pass's urgency even when the spec just
//! changed: a policy over 10,000 users must not crowd out a person's change of one resource.

use std::collections::HashSet;
use std::sync::Arc;

use kube::Resource;

use super::evaluate::{self, Judged, Member, Place, Standing, Tally};
use super::{Synced, outcome, select, users};
use crate::api::{ManagementPolicy, UserMfaPolicy, UserMfaPolicyStatus};
use crate::cloud::cloudsso::CloudSsoClient;
use crate::cloud::{self, Urgency};
use crate::controller::conditions::DesiredCondition;
use crate::controller::context::Context;
use crate::controller::error::ReconcileError;
use crate::controller::keys::{DirectoryKey, key_of};
use crate::controller::kinds::user::directory_effective;
use crate::controller::state::policy_selections::{Selection, user_hash};
use crate::controller::state::{Claim, Claimant};
use crate::controller::status::StatusWriter;
use crate::controller::tenancy::Identity;

/// Users read, written and judged together: their reads are all a pass holds at once.
const BATCH: usize = 2000;

/// What the pass works with.
pub struct Target {
    pub client: CloudSsoClient,
    pub identity: Identity,
    pub directory: DirectoryKey,
    pub claim: Claim,
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
    let mut selected = select::select(
        &spec.users,
        &target.client,
        &target.directory,
        &ctx.state.names,
    )
    .await
    .map_err(|error| ReconcileError::from_cloud(error, &spec.directory_id, None))?;
    let selection = selection_of(policy, &target.claim, &selected.members);
    let Placed {
        mut tally,
        mut judged,
        counted,
    } = place_all(policy, ctx, &target.claim, &selected.members, now);
    // In batches: only one batch's reads (settings, devices) are held at a time, and each user
    // is moved out of the selection into its batch (kept on only when judged: not one copy of
    // every name and id twice).
    let (mut wrote, mut ledger_full) = (users::Wrote::default(), false);
    let mut members = std::mem::take(&mut selected.members);
    for batch in counted.chunks(BATCH) {
        let batch = batch
            .iter()
            .map(|&i| std::mem::take(&mut members[i]))
            .collect();
        let read = users::read(ctx, &target, batch).await;
        let (read, written, full) =
            users::write(policy, ctx, status, writer, &target, read).await?;
        wrote.merge(written);
        ledger_full |= full;
        judge(spec, read, now, &mut tally, &mut judged);
    }
    drop(members);
    judged.sort_by(|a, b| a.member.user_name.cmp(&b.member.user_name));
    let mut conditions =
        outcome::conditions(policy, &tally, &judged, &selected.missing, ledger_full);
    conditions.push(directory_effective(ctx, &target.client, &target.directory).await);
    outcome::announce(policy, ctx, status, &wrote).await;
    let synced = Synced {
        directory: target.directory,
        identity: target.identity,
        claim: target.claim,
        errors: tally.errors > 0,
        tally,
        judged,
        missing: selected.missing,
        selection,
        next_expiry: evaluate::next_expiry(spec, now),
        report: None,
    };
    Ok((conditions, synced))
}

/// How a batch of read (and written) users stands: counted, and kept when not simply compliant.
fn judge(
    spec: &crate::api::UserMfaPolicySpec,
    read: Vec<users::Read>,
    now: jiff::Timestamp,
    tally: &mut Tally,
    judged: &mut Vec<Judged>,
) {
    for (member, facts) in read {
        let standing = match facts {
            Ok(facts) => evaluate::judge(spec, &facts, now),
            Err(message) => Standing::Error(message.into()),
        };
        tally.count_standing(&standing);
        if !matches!(standing, Standing::Compliant { stale: None }) {
            judged.push(Judged { member, standing });
        }
    }
}

/// The users `policy` selected, as other policies weigh them.
fn selection_of(policy: &UserMfaPolicy, claim: &Claim, members: &[Member]) -> Selection {
    Selection {
        uid: policy.meta().uid.clone(),
        claim: claim.clone(),
        created: created(policy),
        enforces: policy.spec.management_policy == ManagementPolicy::Enforce,
        users: Arc::new(members.iter().map(|m| user_hash(&m.user_id)).collect()),
    }
}

/// Who counts each selected user: the counts so far, the exempt users' results, and the users
/// this policy reads.
struct Placed {
    tally: Tally,
    judged: Vec<Judged>,
    /// Indices into the members.
    counted: Vec<usize>,
}

fn place_all(
    policy: &UserMfaPolicy,
    ctx: &Context,
    claim: &Claim,
    members: &[Member],
    now: jiff::Timestamp,
) -> Placed {
    let selections = &ctx.state.policy_selections;
    let owners = selections.older_owners(&key_of(policy), created(policy), claim);
    let own_settings = own_settings(ctx, claim);
    let mut placed = Placed {
        tally: Tally {
            matched: members.len() as u64,
            ..Tally::default()
        },
        judged: Vec::new(),
        counted: Vec::new(),
    };
    for (index, member) in members.iter().enumerate() {
        let place = evaluate::place(&policy.spec, member, now, &own_settings, &owners);
        placed.tally.count_place(&place);
        match place {
            Place::Counted => placed.counted.push(index),
            Place::Exempt(exemption) => placed.judged.push(Judged {
                member: member.clone(),
                standing: Standing::Exempt(Box::new(exemption.clone())),
            }),
            Place::OwnSetting | Place::Owner(_) => {}
        }
    }
    placed
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
