//! UserMfaSetting: enforce or observe one user's MFA setting, report the bound devices, and say
//! whether the setting is in effect (only while the directory is `Byuser`).

use std::collections::HashSet;
use std::sync::Arc;

use kube::Resource;
use kube::runtime::controller::Action;

use super::census::{self, UserState};
use super::claims::{self, Claim, Claimant};
use super::conditions::{self, DesiredCondition, EFFECTIVE, SYNCED};
use super::context::{Context, Identity};
use super::error::ReconcileError;
use super::plan::{FieldChange, Plan, shown};
use super::reconciler::{Converged, Kind, Writable, sync_writable};
use super::status::StatusWriter;
use super::users::UserView;
use crate::api::{
    BoundMfaDevice, DeletionPolicy, ManagementPolicy, ObservedUserMfa, Reason, UserMfaSetting,
    UserMfaSettingSpec,
};
use crate::cloud::cloudsso::{CloudSsoClient, MfaDevice};
use crate::cloud::{CloudError, Endpoint};

pub fn plan_user(spec: &UserMfaSettingSpec, observed: Option<&str>) -> Plan<&'static str> {
    let desired = spec.user_mfa_authentication_settings.as_str();
    let changes: Vec<FieldChange> = (observed != Some(desired))
        .then(|| FieldChange {
            field: "userMfaAuthenticationSettings",
            from: shown(observed),
            to: desired.into(),
        })
        .into_iter()
        .collect();
    let write = (!changes.is_empty() && spec.management_policy == ManagementPolicy::Enforce)
        .then_some(desired);
    Plan { changes, write }
}

/// Whether a per-user setting takes effect under the directory's setting.
pub fn effective(directory_setting: Option<&str>, directory_id: &str) -> DesiredCondition {
    match directory_setting {
        Some("Byuser") => DesiredCondition::new(
            EFFECTIVE,
            true,
            Reason::DirectoryByUser,
            format!("directory {directory_id} applies per-user settings (Byuser)"),
        ),
        Some(other) => DesiredCondition::new(
            EFFECTIVE,
            false,
            Reason::DirectorySettingOverrides,
            format!(
                "directory {directory_id} is {other}, so this per-user setting has no effect until the directory is Byuser"
            ),
        ),
        None => DesiredCondition::new(
            EFFECTIVE,
            false,
            Reason::DirectorySettingUnknown,
            format!("the MFA setting of directory {directory_id} could not be read"),
        ),
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
    endpoint: Endpoint,
    client: CloudSsoClient,
    user_id: String,
    /// The spec changed since the last status (or there is none): everything is read afresh.
    spec_changed: bool,
    users: Arc<UserView>,
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
    match ctx.user_waker.get() {
        Some(waker) => claims::settle(object, claim, waker, &ctx.user_claims).map(|_| ()),
        None => Ok(()),
    }
}

/// The names of `spec`'s directory that UserMfaSettings ask for and that no status resolved yet:
/// when they are many, one listing of the directory resolves them all.
fn unresolved_names(spec: &UserMfaSettingSpec, ctx: &Context) -> HashSet<String> {
    let Some(store) = ctx.user_store.get() else {
        return HashSet::new();
    };
    store
        .state()
        .iter()
        .filter_map(|guard| guard.0.as_ref().ok())
        .filter(|other| {
            other.spec.directory_id == spec.directory_id
                && other.spec.endpoint == spec.endpoint
                && other.spec.region == spec.region
                && !resolved_in_status(other)
        })
        .filter_map(|other| other.spec.user_name.clone())
        .collect()
}

/// A status that resolved the spec's current userName: written by a pass of this generation
/// that succeeded (a failed pass keeps the id an earlier userName resolved to).
fn resolved_in_status(object: &UserMfaSetting) -> bool {
    object.status.as_ref().is_some_and(|status| {
        status.user_id.is_some()
            && status.common.observed_generation == object.meta().generation
            && conditions::is_true(&status.common.conditions, SYNCED)
    })
}

/// The user id: given, or resolved from the name: read back from the status when it resolved
/// this very spec (so a restart resolves nothing again), else through the shared resolver.
async fn resolve_user_id(
    object: &UserMfaSetting,
    endpoint: &Endpoint,
    client: &CloudSsoClient,
    ctx: &Context,
    trust_status: bool,
) -> Result<String, ReconcileError> {
    let spec = &object.spec;
    if let Some(user_id) = &spec.user_id {
        return Ok(user_id.clone());
    }
    let user_name = spec.user_name.clone().unwrap_or_default();
    let directory_id = spec.directory_id.as_str();
    if let Some(user_id) = ctx.names.known(endpoint, directory_id, &user_name) {
        return Ok(user_id);
    }
    if trust_status
        && resolved_in_status(object)
        && let Some(user_id) = object.status.as_ref().and_then(|s| s.user_id.clone())
    {
        ctx.names
            .remember(endpoint, directory_id, &user_name, &user_id);
        return Ok(user_id);
    }
    ctx.names
        .resolve(client, endpoint, directory_id, &user_name, || {
            unresolved_names(spec, ctx)
        })
        .await
        .map_err(|error| ReconcileError::from_cloud(error, directory_id, Some(&user_name)))?
        .ok_or_else(|| ReconcileError::UserNotFound {
            user: format!("named '{user_name}'"),
            directory_id: spec.directory_id.clone(),
            detail: " (ListUsers found no such user name)".into(),
        })
}

/// Drops a resolved name; whether there was one to drop.
fn forget_user_id(spec: &UserMfaSettingSpec, endpoint: &Endpoint, ctx: &Context) -> bool {
    let Some(user_name) = &spec.user_name else {
        return false;
    };
    ctx.names.forget(endpoint, &spec.directory_id, user_name)
}

fn is_user_gone(error: &CloudError) -> bool {
    error
        .code()
        .is_some_and(|code| code == "EntityNotExists.User")
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
    type Ctx = Context;
    type Synced = Synced;
    const FINALIZES: bool = true;

    /// Converges the setting, then reads the devices and whether the directory lets it apply.
    async fn sync(
        &self,
        ctx: &Context,
        previous: &Self::Status,
        writer: &StatusWriter<Self>,
    ) -> Result<(Vec<DesiredCondition>, Synced), ReconcileError> {
        let mut converged = sync_writable(self, ctx, previous, writer).await?;
        let directory_id = self.spec.directory_id.as_str();
        let target = &converged.target;
        // Devices may be read less often than the setting, but always afresh after a write or
        // a change of the spec.
        let devices_max_age = (!converged.wrote && !target.spec_changed)
            .then(|| census::fresh_for(ctx.budget.device_interval()));
        let devices = ctx
            .users
            .devices(
                &target.client,
                &target.endpoint,
                directory_id,
                &target.user_id,
                devices_max_age,
            )
            .await
            .map_err(cloud_error(directory_id, &target.user_id))?;
        let directory = ctx
            .directories
            .get_or_fetch(
                &target.endpoint,
                directory_id,
                ctx.budget.effective(),
                || target.client.get_mfa_setting_info(directory_id),
            )
            .await;
        converged.conditions.push(match directory {
            Ok(info) => effective(
                info.mfa_authentication_advance_settings.as_deref(),
                directory_id,
            ),
            Err(error) => {
                tracing::warn!(%error, directory_id, "could not read the directory's setting");
                effective(None, directory_id)
            }
        });
        let conditions = converged.conditions.clone();
        let devices = devices_of(devices);
        Ok((conditions, Synced { converged, devices }))
    }

    async fn report(&self, ctx: &Context, synced: Synced, status: &mut Self::Status) {
        let Synced { converged, devices } = synced;
        let Converged {
            target,
            observed,
            restore_to,
            ..
        } = converged;
        // The directory's compliance gauges (when its census is on) count this user as observed.
        let directory_id = &self.spec.directory_id;
        ctx.budget.count_user(
            &census::counter_key(self),
            &format!("{}/{directory_id}", target.endpoint.url()),
        );
        ctx.census.observe_user(
            &target.endpoint,
            directory_id,
            &target.user_id,
            UserState {
                setting: observed.clone(),
                devices: devices.len(),
            },
        );
        target.identity.record(&mut status.common);
        status.user_id = Some(target.user_id);
        status.observed = Some(ObservedUserMfa {
            user_mfa_authentication_settings: observed,
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
        let spec = &self.spec;
        ctx.budget.release(&census::counter_key(self));
        if let Some(waker) = ctx.user_waker.get() {
            claims::wake_sharing(waker, self, &ctx.user_claims);
        }
        let status = self.status.clone().unwrap_or_default();
        let outcome = match (
            status
                .restore_to
                .as_ref()
                .and_then(|r| r.user_mfa_authentication_settings.clone()),
            status.user_id.clone(),
            spec.deletion_policy,
        ) {
            (Some(restore), Some(user_id), DeletionPolicy::Restore)
                if claims::owned(&status.common) =>
            {
                self.restore(ctx, &user_id, &restore).await
            }
            _ => Ok(Action::await_change()),
        };
        if outcome.is_ok() {
            ctx.user_claims.forget(self);
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
        let (_, client, identity) = match ctx.cloudsso_of(self, directory_id).await {
            Ok(route) => route,
            // No account admits it any more: nothing may be written, and deletion must not hang.
            Err(error @ ReconcileError::AccountNotAllowed { .. }) => {
                return Ok(ctx
                    .skip_restore(self, error.reason(), error.to_string())
                    .await);
            }
            Err(error) => return Err(error),
        };
        let claim = claim_of(&identity, directory_id, user_id);
        if let Some(waker) = ctx.user_waker.get()
            && let Err(why) = claims::may_restore(self, &claim, waker, &ctx.user_claims)
        {
            return Ok(ctx.skip_restore(self, Reason::Conflict, why).await);
        }
        let written = client
            .update_user_mfa_setting(directory_id, user_id, restore)
            .await;
        let restored = format!("user {user_id} set back to {restore}");
        ctx.finish_restore(self, written, directory_id, Some(user_id), restored)
            .await
    }
}

impl Writable for UserMfaSetting {
    type Target = Target;
    type Observed = Option<String>;
    type Write = &'static str;
    type RestorePoint = ObservedUserMfa;

    fn management_policy(&self) -> ManagementPolicy {
        self.spec.management_policy
    }

    /// Resolves the user, then reads its setting (through the shared view: a read younger than
    /// the resync is reused, unless the spec changed); a user resolved by name may have been
    /// deleted and re-created under a new id, so a vanished id is resolved once more.
    async fn observe(&self, ctx: &Context) -> Result<(Target, Option<String>), ReconcileError> {
        let spec = &self.spec;
        let directory_id = spec.directory_id.as_str();
        let (endpoint, client, identity) = ctx.cloudsso_of(self, directory_id).await?;
        let status = self.status.as_ref();
        let spec_changed = status.is_none_or(|status| {
            status.observed.is_none() || status.common.observed_generation != self.meta().generation
        });
        let max_age = (!spec_changed).then(|| census::fresh_for(ctx.budget.effective()));
        let mut user_id = resolve_user_id(self, &endpoint, &client, ctx, true).await?;
        // Before any read of the user: a resource that does not own it costs no calls.
        settle(self, ctx, &claim_of(&identity, directory_id, &user_id))?;
        let read = |user_id: String| {
            let (client, endpoint) = (&client, &endpoint);
            async move {
                ctx.users
                    .setting(client, endpoint, directory_id, &user_id, max_age)
                    .await
            }
        };
        let observed = match read(user_id.clone()).await {
            Err(error) if is_user_gone(&error) && forget_user_id(spec, &endpoint, ctx) => {
                ctx.users.forget(&endpoint, directory_id, &user_id);
                user_id = resolve_user_id(self, &endpoint, &client, ctx, false).await?;
                settle(self, ctx, &claim_of(&identity, directory_id, &user_id))?;
                read(user_id.clone()).await
            }
            other => other,
        }
        .map_err(cloud_error(directory_id, &user_id))?;
        let target = Target {
            endpoint,
            client,
            user_id,
            spec_changed,
            users: ctx.users.clone(),
            identity,
        };
        Ok((target, observed))
    }

    fn moved(&self, target: &Target) -> bool {
        self.recorded_claim().is_some_and(|recorded| {
            recorded != claim_of(&target.identity, &self.spec.directory_id, &target.user_id)
        })
    }

    fn plan(&self, observed: &Option<String>) -> Plan<&'static str> {
        plan_user(&self.spec, observed.as_deref())
    }

    async fn act(
        &self,
        target: &Target,
        desired: &&'static str,
    ) -> Result<Option<String>, ReconcileError> {
        let directory_id = self.spec.directory_id.as_str();
        target
            .client
            .update_user_mfa_setting(directory_id, &target.user_id, desired)
            .await
            .map_err(cloud_error(directory_id, &target.user_id))?;
        // The API answers a write only once it took effect: what was written is what the cloud
        // has (the next resync reads it back), so no second call.
        let written = Some(desired.to_string());
        target.users.record_setting(
            &target.endpoint,
            directory_id,
            &target.user_id,
            written.clone(),
        );
        Ok(written)
    }

    fn subject(&self, target: &Target) -> String {
        format!("user {}", target.user_id)
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

    fn restore_point(observed: &Option<String>) -> ObservedUserMfa {
        ObservedUserMfa {
            user_mfa_authentication_settings: observed.clone(),
        }
    }

    fn set_restore_to(status: &mut Self::Status, restore_to: Option<ObservedUserMfa>) {
        status.restore_to = restore_to;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::UserMfaAuthenticationSettings;
    use crate::controller::plan::describe;

    fn spec(setting: UserMfaAuthenticationSettings, mode: ManagementPolicy) -> UserMfaSettingSpec {
        UserMfaSettingSpec {
            directory_id: "d-1".into(),
            user_id: Some("u-1".into()),
            user_name: None,
            user_mfa_authentication_settings: setting,
            region: None,
            endpoint: None,
            credentials_secret_ref: None,
            account_ref: None,
            management_policy: mode,
            deletion_policy: DeletionPolicy::Orphan,
        }
    }

    #[test]
    fn enforce_writes_only_a_difference() {
        assert_eq!(
            plan_user(
                &spec(
                    UserMfaAuthenticationSettings::Enabled,
                    ManagementPolicy::Enforce
                ),
                Some("Enabled")
            ),
            Plan {
                changes: vec![],
                write: None
            }
        );
        let plan = plan_user(
            &spec(
                UserMfaAuthenticationSettings::Enabled,
                ManagementPolicy::Enforce,
            ),
            Some("Disabled"),
        );
        assert_eq!(plan.write, Some("Enabled"));
        assert_eq!(
            describe(&plan.changes),
            "userMfaAuthenticationSettings from Disabled to Enabled"
        );
    }

    #[test]
    fn observe_never_writes() {
        let plan = plan_user(
            &spec(
                UserMfaAuthenticationSettings::Disabled,
                ManagementPolicy::Observe,
            ),
            Some("Enabled"),
        );
        assert!(!plan.changes.is_empty());
        assert_eq!(plan.write, None);
    }

    #[test]
    fn effective_only_under_byuser() {
        assert!(effective(Some("Byuser"), "d-1").status);
        let enabled = effective(Some("Enabled"), "d-1");
        assert!(!enabled.status);
        assert_eq!(enabled.reason, Reason::DirectorySettingOverrides);
        assert!(enabled.message.contains("is Enabled"));
        assert!(!effective(None, "d-1").status);
    }
}
