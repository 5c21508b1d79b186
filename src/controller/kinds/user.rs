//! UserMfaSetting: enforce or observe one user's MFA setting, report the bound devices, and say
//! whether the setting is in effect (only while the directory is `Byuser`).

use kube::Resource;
use kube::runtime::controller::Action;

use super::user_id;
use super::user_plan::{effective, plan_user};
use crate::api::{
    BoundMfaDevice, DeletionPolicy, ManagementPolicy, ObservedUserMfa, Reason, UserMfaSetting,
};
use crate::cloud::CloudError;
use crate::cloud::cloudsso::{CloudSsoClient, MfaDevice, UserMfaSettings, UserMfaUpdate};
use crate::controller::budget::Calls;
use crate::controller::census::{self, UserState};
use crate::controller::conditions::DesiredCondition;
use crate::controller::context::Context;
use crate::controller::error::ReconcileError;
use crate::controller::keys::{DirectoryKey, UserKey};
use crate::controller::plan::{FieldChange, Plan};
use crate::controller::reconciler::Kind;
use crate::controller::restore;
use crate::controller::state::claims::{self, Claim, Claimant};
use crate::controller::status::StatusWriter;
use crate::controller::tenancy::Identity;
use crate::controller::writable::{Converged, Writable, sync_writable};

/// Effective for a user of `directory`: whether the directory lets a per-user setting apply
/// (its setting, read once per resync for all its users, whoever asks).
pub async fn directory_effective(
    ctx: &Context,
    client: &CloudSsoClient,
    directory: &DirectoryKey,
) -> DesiredCondition {
    let directory_id = directory.directory_id.as_str();
    let read = ctx
        .state
        .directories
        .setting(client, directory, ctx.budget.effective())
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

fn devices_of(devices: Vec<MfaDevice>) -> Vec<BoundMfaDevice> {
    devices
        .into_iter()
        .map(|device| BoundMfaDevice {
            device_id: device.device_id,
            device_name: device.device_name,
            device_type: device.device_type,
            effective_time: device.effective_time,
        })
        .collect()
}

/// The user a pass works on.
pub struct Target {
    user: UserKey,
    client: CloudSsoClient,
    /// The spec changed since the last status (or there is none): everything is read afresh.
    spec_changed: bool,
    identity: Identity,
}

impl Claimant for UserMfaSetting {
    fn directory_id(&self) -> &str {
        &self.spec.directory_id
    }
    fn recorded_claim(&self) -> Option<Claim> {
        let status = self.status.as_ref()?;
        // No claim without a user: a failure that cleared the id claims nothing (and moves nothing).
        let user_id = self
            .spec
            .user_id
            .clone()
            .or_else(|| status.user_id.clone())?;
        Claim::from_status(&status.common, &self.spec.directory_id, Some(user_id))
    }
    fn may_claim(&self, claim: &Claim) -> bool {
        // By its given or last resolved id; one not resolved yet may claim anyone.
        let known = self.spec.user_id.as_deref().or_else(|| {
            self.status
                .as_ref()
                .and_then(|status| status.user_id.as_deref())
        });
        known.is_none_or(|user_id| claim.user_id.as_deref() == Some(user_id))
    }
}

/// The user `identity` reaches.
fn claim_of(identity: &Identity, directory_id: &str, user_id: &str) -> Claim {
    Claim {
        account_id: identity.account_id.clone(),
        endpoint: identity.endpoint.clone(),
        directory_id: directory_id.to_string(),
        user_id: Some(user_id.to_string()),
    }
}

/// The older UserMfaSetting for the same user of the same account and endpoint owns it; this one
/// is never applied while it does (`Conflict`).
fn settle(object: &UserMfaSetting, ctx: &Context, claim: &Claim) -> Result<(), ReconcileError> {
    claims::settle(object, claim, &ctx.wakers.users, &ctx.state.user_claims).map(|_| ())
}

fn cloud_error(directory_id: &str, user_id: &str) -> impl Fn(CloudError) -> ReconcileError {
    let (directory_id, user_id) = (directory_id.to_string(), user_id.to_string());
    move |error| ReconcileError::from_cloud(error, &directory_id, Some(&user_id))
}

/// A successful pass: the user's setting as written or found, and its devices.
pub struct Synced {
    converged: Converged<UserMfaSetting>,
    devices: Vec<BoundMfaDevice>,
}

impl Kind for UserMfaSetting {
    type Synced = Synced;
    const FINALIZES: bool = true;

    fn calls(&self) -> Calls {
        Calls::User {
            directory_id: self.spec.directory_id.clone(),
        }
    }

    /// Converges the setting, then reads the devices and whether the directory lets it apply.
    async fn sync(
        &self,
        ctx: &Context,
        status: &mut Self::Status,
        writer: &StatusWriter<Self>,
    ) -> Result<(Vec<DesiredCondition>, Synced), ReconcileError> {
        let mut converged = sync_writable(self, ctx, status, writer).await?;
        let target = &converged.target;
        // Devices may be read less often than the setting, but always afresh after a write or
        // a change of the spec.
        let devices_max_age = (!converged.wrote && !target.spec_changed)
            .then(|| census::fresh_for(ctx.budget.device_interval()));
        let devices = ctx
            .state
            .users
            .devices(&target.client, &target.user, devices_max_age)
            .await
            .map_err(cloud_error(&self.spec.directory_id, &target.user.user_id))?;
        converged
            .conditions
            .push(directory_effective(ctx, &target.client, &target.user.directory).await);
        let conditions = converged.conditions.clone();
        let devices = devices_of(devices);
        Ok((conditions, Synced { converged, devices }))
    }

    /// The user counts as observed in its directory's census (when that is on).
    async fn publish(&self, ctx: &Context, synced: &mut Synced) {
        let Converged {
            target, observed, ..
        } = &synced.converged;
        let state = UserState {
            setting: observed.user_mfa_authentication_settings.clone(),
            devices: synced.devices.len(),
        };
        ctx.census
            .observe_user(&target.user.directory, &target.user.user_id, state);
    }

    fn project(&self, synced: Synced, status: &mut Self::Status) {
        let Synced { converged, devices } = synced;
        let Converged {
            target,
            observed,
            restore_to,
            ..
        } = converged;
        target.identity.record(&mut status.common);
        status.user_id = Some(target.user.user_id);
        status.observed = Some(ObservedUserMfa {
            user_mfa_authentication_settings: observed.user_mfa_authentication_settings,
        });
        status.bound_device_count = Some(devices.len() as u32);
        status.devices = Some(devices);
        status.restore_to = restore_to;
    }

    fn forget(status: &mut Self::Status, error: &ReconcileError) {
        if matches!(error, ReconcileError::UserNotFound { .. }) {
            // A user that does not exist has no id, setting or devices to report.
            status.user_id = None;
            status.observed = None;
            status.bound_device_count = None;
            status.devices = None;
        }
    }

    async fn cleanup(&self, ctx: &Context) -> Result<Action, ReconcileError> {
        ctx.budget
            .release(&crate::controller::keys::counter_key(self));
        claims::wake_sharing(&ctx.wakers.users, self, &ctx.state.user_claims);
        let status = self.status.clone().unwrap_or_default();
        let restore = status
            .restore_to
            .as_ref()
            .and_then(|r| r.user_mfa_authentication_settings.clone());
        let outcome = match (restore, status.user_id.clone(), self.spec.deletion_policy) {
            (Some(restore), Some(user_id), DeletionPolicy::Restore)
                if claims::owned(&status.common) =>
            {
                self.restore(ctx, &user_id, &restore).await
            }
            _ => Ok(Action::await_change()),
        };
        if outcome.is_ok() {
            ctx.state.user_claims.forget(self);
        }
        outcome
    }
}

impl UserMfaSetting {
    /// Writes back `restoreTo` on delete, only while this resource still owns the user it
    /// changed, through the same account and endpoint (re-checked from the live store).
    async fn restore(
        &self,
        ctx: &Context,
        user_id: &str,
        restore: &str,
    ) -> Result<Action, ReconcileError> {
        let directory_id = self.spec.directory_id.as_str();
        let route = ctx.cloudsso_of(self, directory_id).await;
        let (_, client, identity) = match restore::skip_unless_routed(ctx, self, route).await? {
            Ok(route) => route,
            Err(skipped) => return Ok(skipped),
        };
        let claim = claim_of(&identity, directory_id, user_id);
        let (users, registry) = (&ctx.wakers.users, &ctx.state.user_claims);
        if let Err(why) = claims::may_restore(self, &claim, users, registry) {
            return Ok(restore::skip(ctx, self, Reason::Conflict, why).await);
        }
        let update = UserMfaUpdate {
            directory_id: directory_id.to_string(),
            user_id: user_id.to_string(),
            user_mfa_authentication_settings: restore.to_string(),
        };
        let written = client.update_user_mfa_setting(&update).await;
        let restored = format!("user {user_id} set back to {restore}");
        restore::finish(ctx, self, written, directory_id, Some(user_id), restored).await
    }

    /// Reads the user's setting through the shared view; a user resolved by name may have been
    /// deleted and re-created under a new id, so a vanished id is resolved once more.
    async fn read_user(
        &self,
        ctx: &Context,
        directory: &DirectoryKey,
        client: &CloudSsoClient,
        identity: &Identity,
        max_age: Option<std::time::Duration>,
    ) -> Result<(UserKey, UserMfaSettings), ReconcileError> {
        let directory_id = self.spec.directory_id.as_str();
        let mut user = directory.user(&user_id::resolve(self, directory, client, ctx, true).await?);
        // Before any read of the user: a resource that does not own it costs no calls.
        settle(self, ctx, &claim_of(identity, directory_id, &user.user_id))?;
        let view = &ctx.state.users;
        let observed = match view.settings(client, &user, max_age).await {
            Err(error) if error.is_entity_gone() && user_id::forget(&self.spec, directory, ctx) => {
                view.forget(&user);
                user =
                    directory.user(&user_id::resolve(self, directory, client, ctx, false).await?);
                settle(self, ctx, &claim_of(identity, directory_id, &user.user_id))?;
                view.settings(client, &user, max_age).await
            }
            other => other,
        }
        .map_err(cloud_error(directory_id, &user.user_id))?;
        Ok((user, observed))
    }
}

impl Writable for UserMfaSetting {
    type Target = Target;
    type Observed = UserMfaSettings;
    type Write = UserMfaUpdate;
    type RestorePoint = ObservedUserMfa;

    fn management_policy(&self) -> ManagementPolicy {
        self.spec.management_policy
    }

    /// Resolves the user, then reads its setting (a read younger than the resync is reused,
    /// unless the spec changed).
    async fn observe(&self, ctx: &Context) -> Result<(Target, UserMfaSettings), ReconcileError> {
        let directory_id = self.spec.directory_id.as_str();
        let (endpoint, client, identity) = ctx.cloudsso_of(self, directory_id).await?;
        let directory = DirectoryKey::new(&endpoint, directory_id);
        let spec_changed = self.status.as_ref().is_none_or(|status| {
            status.observed.is_none() || status.common.observed_generation != self.meta().generation
        });
        let max_age = (!spec_changed).then(|| census::fresh_for(ctx.budget.effective()));
        let (user, observed) = self
            .read_user(ctx, &directory, &client, &identity, max_age)
            .await?;
        let target = Target {
            user,
            client,
            spec_changed,
            identity,
        };
        Ok((target, observed))
    }

    fn moved(&self, target: &Target) -> bool {
        self.recorded_claim().is_some_and(|recorded| {
            recorded
                != claim_of(
                    &target.identity,
                    &self.spec.directory_id,
                    &target.user.user_id,
                )
        })
    }

    fn plan(&self, observed: &UserMfaSettings) -> Plan<UserMfaUpdate> {
        let user_id = self
            .spec
            .user_id
            .clone()
            .or_else(|| self.status.as_ref().and_then(|s| s.user_id.clone()))
            .unwrap_or_default();
        plan_user(&self.spec, &user_id, observed)
    }

    async fn act(
        &self,
        ctx: &Context,
        target: &Target,
        write: &UserMfaUpdate,
    ) -> Result<UserMfaSettings, ReconcileError> {
        // The planner's write names the user this pass resolved.
        let write = UserMfaUpdate {
            user_id: target.user.user_id.clone(),
            ..write.clone()
        };
        target
            .client
            .update_user_mfa_setting(&write)
            .await
            .map_err(cloud_error(&write.directory_id, &write.user_id))?;
        // The API answers a write only once it took effect: what was written is what the cloud
        // has (the next resync reads it back), so no second call.
        let written = UserMfaSettings {
            user_mfa_authentication_settings: Some(write.user_mfa_authentication_settings),
        };
        ctx.state
            .users
            .record_settings(&target.user, written.clone());
        Ok(written)
    }

    fn subject(&self, target: &Target) -> String {
        format!("user {}", target.user.user_id)
    }

    fn not_kept(&self, _still: &[FieldChange]) -> String {
        format!(
            "the cloud did not keep userMfaAuthenticationSettings={}",
            self.spec.user_mfa_authentication_settings.as_str()
        )
    }

    fn restore_to(status: &Self::Status) -> Option<ObservedUserMfa> {
        status.restore_to.clone()
    }

    fn restore_point_before_change(&self, status: &Self::Status) -> Option<ObservedUserMfa> {
        let declared = self.spec.user_mfa_authentication_settings.as_str();
        let seen = status.observed.as_ref()?;
        let writes = seen.user_mfa_authentication_settings.as_deref() != Some(declared);
        (writes && claims::owned(&status.common)).then(|| seen.clone())
    }

    fn restore_point(observed: &UserMfaSettings) -> ObservedUserMfa {
        ObservedUserMfa {
            user_mfa_authentication_settings: observed.user_mfa_authentication_settings.clone(),
        }
    }

    fn set_restore_to(status: &mut Self::Status, restore_to: Option<ObservedUserMfa>) {
        status.restore_to = restore_to;
    }
}
