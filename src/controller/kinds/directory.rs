//! DirectoryMfaPolicy: enforce or observe one directory's MFA setting, repair drift, and restore
//! on delete; only the policy that owns the directory (see `claims`) writes it.

use std::sync::Arc;

use kube::runtime::controller::Action;

use crate::api::{
    DeletionPolicy, DirectoryMfaPolicy, DirectoryMfaPolicySpec, DirectoryUserSummary,
    ManagementPolicy, ObservedDirectoryMfa, ResyncBudget,
};
use crate::cloud::cloudsso::{MfaSettingInfo, MfaSettingUpdate};
use crate::cloud::{CloudSsoClient, Endpoint};
use crate::controller::budget::{Calls, CensusDemand};
use crate::controller::conditions::DesiredCondition;
use crate::controller::context::Context;
use crate::controller::error::ReconcileError;
use crate::controller::keys::{DirectoryKey, counter_key};
use crate::controller::plan::{FieldChange, Plan, shown};
use crate::controller::reconciler::Kind;
use crate::controller::restore;
use crate::controller::state::claims::{self, Claim, Claimant};
use crate::controller::status::StatusWriter;
use crate::controller::tenancy::Identity;
use crate::controller::writable::{Converged, Writable, sync_writable};

fn sorted(types: Option<&Vec<String>>) -> Vec<String> {
    let mut types = types.cloned().unwrap_or_default();
    types.sort();
    types.dedup();
    types
}

pub fn plan_directory(
    spec: &DirectoryMfaPolicySpec,
    observed: &MfaSettingInfo,
) -> Plan<MfaSettingUpdate> {
    let mut changes = Vec::new();
    let desired_setting = spec.mfa_authentication_settings.as_str();
    if observed.mfa_authentication_advance_settings.as_deref() != Some(desired_setting) {
        changes.push(FieldChange {
            field: "mfaAuthenticationSettings",
            from: shown(observed.mfa_authentication_advance_settings.as_deref()),
            to: desired_setting.into(),
        });
    }
    let desired_operation = spec
        .operation_for_risk_login
        .filter(|_| {
            spec.mfa_authentication_settings
                .takes_risk_login_operation()
        })
        .map(|operation| operation.as_str());
    if let Some(operation) = desired_operation
        && observed.operation_for_risk_login.as_deref() != Some(operation)
    {
        changes.push(FieldChange {
            field: "operationForRiskLogin",
            from: shown(observed.operation_for_risk_login.as_deref()),
            to: operation.into(),
        });
    }
    if let Some(types) = &spec.allowed_verification_types
        && sorted(Some(types)) != sorted(observed.allowed_verification_types.as_ref())
    {
        changes.push(FieldChange {
            field: "allowedVerificationTypes",
            from: format!(
                "{:?}",
                observed
                    .allowed_verification_types
                    .clone()
                    .unwrap_or_default()
            ),
            to: format!("{types:?}"),
        });
    }
    let write =
        (spec.management_policy == ManagementPolicy::Enforce && !changes.is_empty()).then(|| {
            MfaSettingUpdate {
                directory_id: spec.directory_id.clone(),
                mfa_authentication_settings: desired_setting.into(),
                operation_for_risk_login: desired_operation.map(str::to_string),
                allowed_verification_types: spec.allowed_verification_types.clone(),
            }
        });
    Plan { changes, write }
}

/// The write that puts back what the cloud had before this resource first changed it.
pub fn plan_restore(
    directory_id: &str,
    restore_to: &ObservedDirectoryMfa,
) -> Option<MfaSettingUpdate> {
    let setting = restore_to.mfa_authentication_settings.clone()?;
    let takes_operation = matches!(setting.as_str(), "Byuser" | "OnlyRiskyLogin");
    Some(MfaSettingUpdate {
        directory_id: directory_id.to_string(),
        operation_for_risk_login: restore_to
            .operation_for_risk_login
            .clone()
            .filter(|_| takes_operation),
        allowed_verification_types: restore_to.allowed_verification_types.clone(),
        mfa_authentication_settings: setting,
    })
}

fn observed_of(info: &MfaSettingInfo) -> ObservedDirectoryMfa {
    ObservedDirectoryMfa {
        mfa_authentication_settings: info.mfa_authentication_advance_settings.clone(),
        operation_for_risk_login: info.operation_for_risk_login.clone(),
        allowed_verification_types: info.allowed_verification_types.clone(),
    }
}

/// The directory a pass works on, and the other policies that name it.
pub struct Target {
    endpoint: Endpoint,
    client: CloudSsoClient,
    contenders: Vec<String>,
    identity: Identity,
}

impl Claimant for DirectoryMfaPolicy {
    fn directory_id(&self) -> &str {
        &self.spec.directory_id
    }
    fn recorded_claim(&self) -> Option<Claim> {
        let status = self.status.as_ref()?;
        Claim::from_status(&status.common, &self.spec.directory_id, None)
    }
}

/// The directory `identity` reaches.
fn claim_of(identity: &Identity, directory_id: &str) -> Claim {
    Claim {
        account_id: identity.account_id.clone(),
        endpoint: identity.endpoint.clone(),
        directory_id: directory_id.to_string(),
        user_id: None,
    }
}

impl DirectoryMfaPolicy {
    fn cloud_error(&self) -> impl Fn(crate::cloud::CloudError) -> ReconcileError + '_ {
        |error| ReconcileError::from_cloud(error, &self.spec.directory_id, None)
    }
}

/// What a pass of a policy learned: the directory as converged, and what the pass published of
/// it (the census's summary, the budget).
pub struct Synced {
    converged: Converged<DirectoryMfaPolicy>,
    users: Option<DirectoryUserSummary>,
    resync: Option<ResyncBudget>,
}

impl Kind for DirectoryMfaPolicy {
    type Synced = Synced;
    const FINALIZES: bool = true;

    fn calls(&self) -> Calls {
        Calls::Single
    }

    async fn sync(
        &self,
        ctx: &Context,
        status: &mut Self::Status,
        writer: &StatusWriter<Self>,
    ) -> Result<(Vec<DesiredCondition>, Synced), ReconcileError> {
        let converged = sync_writable(self, ctx, status, writer).await?;
        let conditions = converged.conditions.clone();
        let synced = Synced {
            converged,
            users: None,
            resync: None,
        };
        Ok((conditions, synced))
    }

    /// Shares the directory's setting (users' Effective follows it), and runs its census.
    async fn publish(&self, ctx: &Context, synced: &mut Synced) {
        let directory_id = &self.spec.directory_id;
        let converged = &synced.converged;
        let directory = DirectoryKey::new(&converged.target.endpoint, directory_id);
        ctx.state
            .directories
            .record(&directory, converged.observed.clone());
        let setting_before = self
            .status
            .as_ref()
            .and_then(|status| status.observed.as_ref())
            .and_then(|observed| observed.mfa_authentication_settings.as_deref());
        if setting_before
            != converged
                .observed
                .mfa_authentication_advance_settings
                .as_deref()
        {
            ctx.wakers
                .users
                .wake_where(|user| user.spec.directory_id == *directory_id);
        }
        synced.users = self.census(ctx, &converged.target.client, &directory);
        synced.resync = Some(ctx.budget.status());
    }

    fn project(&self, synced: Synced, status: &mut Self::Status) {
        let Synced {
            converged,
            users,
            resync,
        } = synced;
        status.users = users;
        status.resync = resync;
        status.observed = Some(observed_of(&converged.observed));
        status.restore_to = converged.restore_to;
        status.contenders = converged.target.contenders;
        converged.target.identity.record(&mut status.common);
    }

    /// Not while a census is asked for and does not run in this process (after a restart).
    fn may_skip(&self, ctx: &Context) -> bool {
        !self.census_enabled() || ctx.census.counts(&counter_key(self))
    }

    async fn cleanup(&self, ctx: &Context) -> Result<Action, ReconcileError> {
        let spec = &self.spec;
        claims::wake_sharing(&ctx.wakers.policies, self, &ctx.state.directory_claims);
        let status = self.status.clone().unwrap_or_default();
        // Its share of the directory's gauges, and of the budget, goes with it.
        ctx.census.release(&counter_key(self));
        ctx.budget.release(&counter_key(self));
        let restore = status
            .restore_to
            .as_ref()
            .and_then(|restore| plan_restore(&spec.directory_id, restore));
        let wanted = spec.deletion_policy == DeletionPolicy::Restore
            && claims::owned(&status.common)
            && restore.is_some();
        let outcome = match restore.filter(|_| wanted) {
            None => Ok(Action::await_change()),
            Some(update) => self.restore(ctx, update).await,
        };
        if outcome.is_ok() {
            ctx.state.directory_claims.forget(self);
        }
        outcome
    }
}

impl DirectoryMfaPolicy {
    fn census_enabled(&self) -> bool {
        self.spec
            .census
            .as_ref()
            .is_some_and(|census| census.enabled)
    }

    /// The census of the directory's users when asked for (its summary so far), counted in the
    /// budget; none, and no gauges, when not (or no longer) asked for.
    fn census(
        &self,
        ctx: &Context,
        client: &crate::cloud::CloudSsoClient,
        directory: &DirectoryKey,
    ) -> Option<DirectoryUserSummary> {
        let key = counter_key(self);
        let Some(census) = self.spec.census.as_ref().filter(|census| census.enabled) else {
            ctx.budget.count_census(&key, None);
            ctx.census.release(&key);
            return None;
        };
        // Never more often than the (budgeted) resync.
        let every = census
            .interval()
            .unwrap_or_default()
            .max(ctx.budget.effective());
        let managed = ctx
            .wakers
            .users
            .known()
            .iter()
            .filter_map(|guard| guard.0.as_ref().ok())
            .filter(|user| user.spec.directory_id == directory.directory_id)
            .count() as u64;
        let demand = CensusDemand {
            users: ctx.census.size(directory).unwrap_or(0),
            managed,
            interval: census.interval(),
        };
        ctx.budget.count_census(&key, Some(demand));
        // When the directory's summary changes, this policy is woken to show it.
        let on_change = Arc::new(ctx.wakers.policies.wake_later(self));
        ctx.census
            .refresh(client, directory, &key, Some(on_change), every)
    }

    /// Writes back `restoreTo` on delete, only while this policy still owns the directory it
    /// changed, through the same account and endpoint (re-checked from the live store).
    async fn restore(
        &self,
        ctx: &Context,
        update: MfaSettingUpdate,
    ) -> Result<Action, ReconcileError> {
        let directory_id = &self.spec.directory_id;
        let route = ctx.cloudsso_of(self, directory_id).await;
        let (_, client, identity) = match restore::skip_unless_routed(ctx, self, route).await? {
            Ok(route) => route,
            Err(skipped) => return Ok(skipped),
        };
        let claim = claim_of(&identity, directory_id);
        let (policies, registry) = (&ctx.wakers.policies, &ctx.state.directory_claims);
        if let Err(why) = claims::may_restore(self, &claim, policies, registry) {
            return Ok(restore::skip(ctx, self, crate::api::Reason::Conflict, why).await);
        }
        let restored = format!(
            "directory {} set back to {}",
            directory_id, update.mfa_authentication_settings
        );
        let written = client.update_mfa_settings(&update).await;
        restore::finish(ctx, self, written, directory_id, None, restored).await
    }
}

impl Writable for DirectoryMfaPolicy {
    type Target = Target;
    type Observed = MfaSettingInfo;
    type Write = MfaSettingUpdate;
    type RestorePoint = ObservedDirectoryMfa;

    fn management_policy(&self) -> ManagementPolicy {
        self.spec.management_policy
    }

    async fn observe(&self, ctx: &Context) -> Result<(Target, MfaSettingInfo), ReconcileError> {
        let directory_id = &self.spec.directory_id;
        let (endpoint, client, identity) = ctx.cloudsso_of(self, directory_id).await?;
        let claim = claim_of(&identity, directory_id);
        let registry = &ctx.state.directory_claims;
        let contenders = claims::settle(self, &claim, &ctx.wakers.policies, registry)?;
        let observed = client
            .get_mfa_setting_info(&self.spec.directory_id)
            .await
            .map_err(self.cloud_error())?;
        let target = Target {
            endpoint,
            client,
            contenders,
            identity,
        };
        Ok((target, observed))
    }

    fn moved(&self, target: &Target) -> bool {
        self.recorded_claim()
            .is_some_and(|recorded| recorded != claim_of(&target.identity, &self.spec.directory_id))
    }

    fn plan(&self, observed: &MfaSettingInfo) -> Plan<MfaSettingUpdate> {
        plan_directory(&self.spec, observed)
    }

    async fn act(
        &self,
        _ctx: &Context,
        target: &Target,
        write: &MfaSettingUpdate,
    ) -> Result<MfaSettingInfo, ReconcileError> {
        target
            .client
            .update_mfa_settings(write)
            .await
            .map_err(self.cloud_error())?;
        target
            .client
            .get_mfa_setting_info(&self.spec.directory_id)
            .await
            .map_err(self.cloud_error())
    }

    fn subject(&self, _target: &Target) -> String {
        format!("directory {}", self.spec.directory_id)
    }

    fn ready_message(&self, target: &Target, mode: ManagementPolicy) -> String {
        let what = match mode {
            ManagementPolicy::Enforce => "has the declared MFA setting",
            ManagementPolicy::Observe => "matches the spec (Observe)",
        };
        claims::with_contenders(
            format!("{} {what}", self.subject(target)),
            &target.contenders,
        )
    }

    fn restore_to(status: &Self::Status) -> Option<ObservedDirectoryMfa> {
        status.restore_to.clone()
    }

    fn restore_point(observed: &MfaSettingInfo) -> ObservedDirectoryMfa {
        observed_of(observed)
    }

    fn set_restore_to(status: &mut Self::Status, restore_to: Option<ObservedDirectoryMfa>) {
        status.restore_to = restore_to;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{MfaAuthenticationSettings, OperationForRiskLogin};
    use crate::controller::plan::describe;

    fn spec(
        setting: MfaAuthenticationSettings,
        operation: Option<OperationForRiskLogin>,
        mode: ManagementPolicy,
    ) -> DirectoryMfaPolicySpec {
        DirectoryMfaPolicySpec {
            directory_id: "d-1".into(),
            mfa_authentication_settings: setting,
            operation_for_risk_login: operation,
            allowed_verification_types: None,
            region: None,
            endpoint: None,
            credentials_secret_ref: None,
            account_ref: None,
            management_policy: mode,
            deletion_policy: DeletionPolicy::Orphan,
            census: None,
        }
    }

    fn info(setting: &str, operation: Option<&str>) -> MfaSettingInfo {
        MfaSettingInfo {
            mfa_authentication_advance_settings: Some(setting.into()),
            operation_for_risk_login: operation.map(Into::into),
            allowed_verification_types: None,
        }
    }

    #[test]
    fn nothing_is_written_when_the_cloud_matches() {
        let plan = plan_directory(
            &spec(
                MfaAuthenticationSettings::Byuser,
                Some(OperationForRiskLogin::Autonomous),
                ManagementPolicy::Enforce,
            ),
            &info("Byuser", Some("Autonomous")),
        );
        assert_eq!(
            plan,
            Plan {
                changes: vec![],
                write: None
            }
        );
    }

    #[test]
    fn enforce_writes_the_setting_and_the_risk_operation() {
        let plan = plan_directory(
            &spec(
                MfaAuthenticationSettings::OnlyRiskyLogin,
                Some(OperationForRiskLogin::EnforceVerify),
                ManagementPolicy::Enforce,
            ),
            &info("Enabled", None),
        );
        assert_eq!(plan.changes.len(), 2);
        let write = plan.write.unwrap();
        assert_eq!(write.mfa_authentication_settings, "OnlyRiskyLogin");
        assert_eq!(
            write.operation_for_risk_login.as_deref(),
            Some("EnforceVerify")
        );
    }

    #[test]
    fn observe_reports_drift_without_writing() {
        let plan = plan_directory(
            &spec(
                MfaAuthenticationSettings::Enabled,
                None,
                ManagementPolicy::Observe,
            ),
            &info("Disabled", None),
        );
        assert_eq!(plan.write, None);
        assert_eq!(
            describe(&plan.changes),
            "mfaAuthenticationSettings from Disabled to Enabled"
        );
    }

    #[test]
    fn unspecified_fields_are_left_alone() {
        // No operationForRiskLogin and no allowedVerificationTypes in the spec: whatever the cloud has is fine.
        let plan = plan_directory(
            &spec(
                MfaAuthenticationSettings::Byuser,
                None,
                ManagementPolicy::Enforce,
            ),
            &info("Byuser", Some("EnforceVerify")),
        );
        assert!(plan.write.is_none());
    }

    #[test]
    fn verification_types_compare_as_sets() {
        let mut wanted = spec(
            MfaAuthenticationSettings::Enabled,
            None,
            ManagementPolicy::Enforce,
        );
        wanted.allowed_verification_types = Some(vec!["WebAuthn".into(), "TOTP".into()]);
        let mut observed = info("Enabled", None);
        observed.allowed_verification_types = Some(vec!["TOTP".into(), "WebAuthn".into()]);
        assert!(plan_directory(&wanted, &observed).write.is_none());
        observed.allowed_verification_types = Some(vec!["TOTP".into()]);
        assert!(plan_directory(&wanted, &observed).write.is_some());
    }

    #[test]
    fn restore_writes_back_what_was_there() {
        let restore = plan_restore(
            "d-1",
            &ObservedDirectoryMfa {
                mfa_authentication_settings: Some("Enabled".into()),
                operation_for_risk_login: Some("Autonomous".into()),
                allowed_verification_types: None,
            },
        )
        .unwrap();
        assert_eq!(restore.mfa_authentication_settings, "Enabled");
        assert_eq!(
            restore.operation_for_risk_login, None,
            "not sent where it means nothing"
        );
        assert!(plan_restore("d-1", &ObservedDirectoryMfa::default()).is_none());
    }
}
