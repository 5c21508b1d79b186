//! The user reads and writes of one UserMfaPolicy pass: each counted user's setting and devices
//! through the shared view (at most once per resync, whoever asks), then the write of each one
//! whose setting differs, after `restoreTo` records it; many at once, the limiter deciding the pace.

use futures::StreamExt;

use super::evaluate::{self, Facts, Member};
use super::ledger;
use super::pass::Target;
use crate::api::{ManagementPolicy, UserMfaPolicy, UserMfaPolicyStatus};
use crate::cloud::CloudError;
use crate::cloud::cloudsso::{UserMfaSettings, UserMfaUpdate};
use crate::controller::census;
use crate::controller::context::Context;
use crate::controller::error::ReconcileError;
use crate::controller::keys::UserKey;
use crate::controller::status::StatusWriter;

/// Users read or written at once by one pass (the client's rate limit still applies).
const CONCURRENT_USERS: usize = 32;

/// What a pass read of one user: its facts, or the error message.
pub type Read = (Member, Result<Facts, String>);

/// Reads each counted user's setting and devices through the view (a read younger than most of
/// the resync is reused). A user deleted since the listing is dropped.
pub async fn read(ctx: &Context, target: &Target, counted: Vec<Member>) -> Vec<Read> {
    let fresh = Some(census::fresh_for(ctx.budget.effective()));
    let devices_fresh = Some(census::fresh_for(ctx.budget.device_interval()));
    let view = &ctx.state.users;
    let reads = futures::stream::iter(counted).map(|member| async move {
        let key = target.directory.user(&member.user_id);
        let read = tokio::try_join!(
            view.settings(&target.client, &key, fresh),
            view.device_summary(&target.client, &key, devices_fresh),
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

/// Who a pass wrote: how many, and the first few by name (for its one Event).
#[derive(Default)]
pub struct Wrote {
    pub count: usize,
    pub first: Vec<String>,
}

impl Wrote {
    /// Adds the users one batch wrote (`names`, in any order).
    pub fn add(&mut self, mut names: Vec<String>) {
        self.count += names.len();
        self.first.append(&mut names);
        self.first.sort();
        self.first.truncate(super::outcome::NAMED);
    }

    /// Adds what another batch wrote.
    pub fn merge(&mut self, other: Wrote) {
        let unnamed = other.count.saturating_sub(other.first.len());
        self.add(other.first);
        self.count += unnamed;
    }
}

/// Writes every read user whose setting differs (Enforce only), after recording each one's value
/// in `restoreTo` (Restore only; a full ledger stops further writes); returns the reads with the
/// written value, who was written, and whether the ledger was full.
pub async fn write(
    policy: &UserMfaPolicy,
    ctx: &Context,
    status: &mut UserMfaPolicyStatus,
    writer: &StatusWriter<UserMfaPolicy>,
    target: &Target,
    mut read: Vec<Read>,
) -> Result<(Vec<Read>, Wrote, bool), ReconcileError> {
    let spec = &policy.spec;
    let mut wrote = Wrote::default();
    let mut names = Vec::new();
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
            async move { (i, write_one(ctx, target, &user_id, desired).await) }
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
                names.push(member.user_name.to_string());
            }
            Err(message) => *facts = Err(message),
        }
    }
    wrote.add(names);
    Ok((read, wrote, full))
}

/// Writes `desired` to one user; the view keeps what the cloud now has.
async fn write_one(
    ctx: &Context,
    target: &Target,
    user_id: &str,
    desired: &str,
) -> Result<(), String> {
    let update = UserMfaUpdate {
        directory_id: target.directory.directory_id.clone(),
        user_id: user_id.to_string(),
        user_mfa_authentication_settings: desired.to_string(),
    };
    let key = target.directory.user(user_id);
    target
        .client
        .update_user_mfa_setting(&update)
        .await
        .map_err(|error| user_error(error, target, &key))?;
    let settings = UserMfaSettings {
        user_mfa_authentication_settings: Some(desired.to_string()),
    };
    ctx.state.users.record_settings(&key, settings);
    Ok(())
}
