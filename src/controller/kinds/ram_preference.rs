//! RamSecurityPreference: enforce or observe a RAM account's MFA preferences for its RAM users
//! (IMS Get/SetSecurityPreference, writing only the fields the spec names), repair drift, and
//! restore on delete; one owner per account and endpoint (see `claims`), like a directory.

use kube::runtime::controller::Action;

use crate::api::{
    DeletionPolicy, ManagementPolicy, ObservedRamSecurityPreference, RamSecurityPreference,
    RamSecurityPreferenceSpec, Reason,
};
use crate::cloud::ims::SecurityPreference;
use crate::cloud::{CloudError, ImsClient};
use crate::controller::budget::Calls;
use crate::controller::conditions::DesiredCondition;
use crate::controller::context::Context;
use crate::controller::error::ReconcileError;
use crate::controller::plan::{FieldChange, Plan, shown};
use crate::controller::reconciler::Kind;
use crate::controller::restore;
use crate::controller::state::RamAccountKey;
use crate::controller::state::claims::{self, Claim, Claimant};
use crate::controller::status::StatusWriter;
use crate::controller::tenancy::Identity;
use crate::controller::writable::{Converged, Writable, sync_writable};

/// What every claim of a RAM kind names as its "directory": an account has one RAM.
pub const RAM: &str = "ram";

/// The preference fields the spec names, as SetSecurityPreference takes them (None: not named).
fn desired(spec: &RamSecurityPreferenceSpec) -> SecurityPreference {
    SecurityPreference {
        mfa_operation_for_login: Some(spec.mfa_operation_for_login.as_str().to_string()),
        operation_for_risk_login: spec
            .operation_for_risk_login
            .map(|operation| operation.as_str().to_string()),
        enable_save_mfa_ticket: spec.enable_save_mfa_ticket,
        allow_user_to_manage_mfa_devices: spec.allow_user_to_manage_mfa_devices,
    }
}

fn shown_bool(value: Option<bool>) -> String {
    value.map_or_else(|| shown(None), |value| value.to_string())
}

/// What differs between the spec and the account's preference, and the write of only the named
/// fields that differ (None under Observe or when nothing does).
pub fn plan_preference(
    spec: &RamSecurityPreferenceSpec,
    observed: &SecurityPreference,
) -> Plan<SecurityPreference> {
    let want = desired(spec);
    let mut changes = Vec::new();
    let mut write = SecurityPreference::default();
    let mut text = |field, want: &Option<String>, have: &Option<String>, slot: &mut Option<_>| {
        if let Some(value) = want.as_ref().filter(|value| Some(*value) != have.as_ref()) {
            changes.push(FieldChange {
                field,
                from: shown(have.as_deref()),
                to: value.clone(),
            });
            *slot = Some(value.clone());
        }
    };
    text(
        "mfaOperationForLogin",
        &want.mfa_operation_for_login,
        &observed.mfa_operation_for_login,
        &mut write.mfa_operation_for_login,
    );
    text(
        "operationForRiskLogin",
        &want.operation_for_risk_login,
        &observed.operation_for_risk_login,
        &mut write.operation_for_risk_login,
    );
    let mut flag = |field, want: Option<bool>, have: Option<bool>, slot: &mut Option<bool>| {
        if let Some(value) = want.filter(|value| Some(*value) != have) {
            changes.push(FieldChange {
                field,
                from: shown_bool(have),
                to: value.to_string(),
            });
            *slot = Some(value);
        }
    };
    flag(
        "enableSaveMfaTicket",
        want.enable_save_mfa_ticket,
        observed.enable_save_mfa_ticket,
        &mut write.enable_save_mfa_ticket,
    );
    flag(
        "allowUserToManageMfaDevices",
        want.allow_user_to_manage_mfa_devices,
        observed.allow_user_to_manage_mfa_devices,
        &mut write.allow_user_to_manage_mfa_devices,
    );
    let write = (spec.management_policy == ManagementPolicy::Enforce && !changes.is_empty())
        .then_some(write);
    Plan { changes, write }
}

/// The write that puts back, of the fields the spec names, what the cloud had before this
/// resource first changed them; None when there is nothing to put back.
pub fn plan_restore(
    spec: &RamSecurityPreferenceSpec,
    restore_to: &ObservedRamSecurityPreference,
) -> Option<SecurityPreference> {
    let named = desired(spec);
    let write = SecurityPreference {
        mfa_operation_for_login: restore_to.mfa_operation_for_login.clone(),
        operation_for_risk_login: named
            .operation_for_risk_login
            .and(restore_to.operation_for_risk_login.clone()),
        enable_save_mfa_ticket: named
            .enable_save_mfa_ticket
            .and(restore_to.enable_save_mfa_ticket),
        allow_user_to_manage_mfa_devices: named
            .allow_user_to_manage_mfa_devices
            .and(restore_to.allow_user_to_manage_mfa_devices),
    };
    (write != SecurityPreference::default()).then_some(write)
}

pub fn observed_of(preference: &SecurityPreference) -> ObservedRamSecurityPreference {
    ObservedRamSecurityPreference {
        mfa_operation_for_login: preference.mfa_operation_for_login.clone(),
        operation_for_risk_login: preference.operation_for_risk_login.clone(),
        enable_save_mfa_ticket: preference.enable_save_mfa_ticket,
        allow_user_to_manage_mfa_devices: preference.allow_user_to_manage_mfa_devices,
    }
}

/// The account a pass works on, and the other preferences that name it.
pub struct Target {
    client: ImsClient,
    contenders: Vec<String>,
    identity: Identity,
}

impl Claimant for RamSecurityPreference {
    fn directory_id(&self) -> &str {
        RAM
    }
    fn recorded_claim(&self) -> Option<Claim> {
        Claim::from_status(&self.status.as_ref()?.common, RAM, None)
    }
}

/// The RAM of the account `identity` reaches.
fn claim_of(identity: &Identity) -> Claim {
    Claim {
        account_id: identity.account_id.clone(),
        endpoint: identity.endpoint.clone(),
        directory_id: RAM.to_string(),
        user_id: None,
    }
}

fn cloud_error(error: CloudError) -> ReconcileError {
    ReconcileError::from_cloud(error, "RAM", None)
}

impl Kind for RamSecurityPreference {
    type Synced = Converged<RamSecurityPreference>;
    const FINALIZES: bool = true;

    fn calls(&self) -> Calls {
        Calls::Single
    }

    async fn sync(
        &self,
        ctx: &Context,
        status: &mut Self::Status,
        writer: &StatusWriter<Self>,
    ) -> Result<(Vec<DesiredCondition>, Self::Synced), ReconcileError> {
        let converged = sync_writable(self, ctx, status, writer).await?;
        Ok((converged.conditions.clone(), converged))
    }

    /// Shares the preference (RAM users' Effective follows it) and wakes the account's RAM
    /// users when their Effective may have changed.
    async fn publish(&self, ctx: &Context, converged: &mut Self::Synced) {
        let account = RamAccountKey::of(&converged.target.identity);
        ctx.state
            .ram_preferences
            .record(&account, converged.observed.clone());
        let before = self
            .status
            .as_ref()
            .and_then(|status| status.observed.as_ref())
            .and_then(|observed| observed.mfa_operation_for_login.as_deref());
        if before != converged.observed.mfa_operation_for_login.as_deref() {
            ctx.wakers.ram_users.wake_where(|user| {
                let common = user.status.as_ref().map(|status| &status.common);
                common.is_none_or(|common| {
                    common.account_id.as_deref() == Some(account.account_id.as_str())
                        && common.endpoint.as_deref() == Some(account.endpoint.as_str())
                })
            });
        }
    }

    fn project(&self, converged: Self::Synced, status: &mut Self::Status) {
        status.observed = Some(observed_of(&converged.observed));
        status.restore_to = converged.restore_to;
        status.contenders = converged.target.contenders;
        converged.target.identity.record(&mut status.common);
    }

    async fn cleanup(&self, ctx: &Context) -> Result<Action, ReconcileError> {
        let (wakers, registry) = (
            &ctx.wakers.ram_preferences,
            &ctx.state.ram_preference_claims,
        );
        claims::wake_sharing(wakers, self, registry);
        ctx.budget
            .release(&crate::controller::keys::counter_key(self));
        let status = self.status.clone().unwrap_or_default();
        let restore = status
            .restore_to
            .as_ref()
            .and_then(|restore_to| plan_restore(&self.spec, restore_to));
        let wanted =
            self.spec.deletion_policy == DeletionPolicy::Restore && claims::owned(&status.common);
        let outcome = match restore.filter(|_| wanted) {
            None => Ok(Action::await_change()),
            Some(write) => self.restore(ctx, write).await,
        };
        if outcome.is_ok() {
            registry.forget(self);
        }
        outcome
    }
}

impl RamSecurityPreference {
    /// Writes back `restoreTo` on delete, only while this resource still owns the account's
    /// preference, through the same account and endpoint (re-checked from the live store).
    async fn restore(
        &self,
        ctx: &Context,
        write: SecurityPreference,
    ) -> Result<Action, ReconcileError> {
        let (client, identity) =
            match restore::skip_unless_routed(ctx, self, ctx.ims_of(self).await).await? {
                Ok(route) => route,
                Err(skipped) => return Ok(skipped),
            };
        let (wakers, registry) = (
            &ctx.wakers.ram_preferences,
            &ctx.state.ram_preference_claims,
        );
        if let Err(why) = claims::may_restore(self, &claim_of(&identity), wakers, registry) {
            return Ok(restore::skip(ctx, self, Reason::Conflict, why).await);
        }
        let restored = format!(
            "the RAM security preference of account {} set back to {}",
            identity.account_id,
            describe_preference(&write)
        );
        let written = client.set_security_preference(&write).await.map(|_| ());
        restore::finish(ctx, self, written, "RAM", None, restored).await
    }
}

/// `mfaOperationForLogin=…, …`: the fields a write names.
fn describe_preference(preference: &SecurityPreference) -> String {
    let text = |name: &str, value: &Option<String>| value.as_ref().map(|v| format!("{name}={v}"));
    let flag = |name: &str, value: Option<bool>| value.map(|v| format!("{name}={v}"));
    [
        text("mfaOperationForLogin", &preference.mfa_operation_for_login),
        text(
            "operationForRiskLogin",
            &preference.operation_for_risk_login,
        ),
        flag("enableSaveMfaTicket", preference.enable_save_mfa_ticket),
        flag(
            "allowUserToManageMfaDevices",
            preference.allow_user_to_manage_mfa_devices,
        ),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(", ")
}

impl Writable for RamSecurityPreference {
    type Target = Target;
    type Observed = SecurityPreference;
    type Write = SecurityPreference;
    type RestorePoint = ObservedRamSecurityPreference;

    fn management_policy(&self) -> ManagementPolicy {
        self.spec.management_policy
    }

    /// The account's preference, read only once this resource owns it (a loser costs no call).
    async fn observe(&self, ctx: &Context) -> Result<(Target, SecurityPreference), ReconcileError> {
        let (client, identity) = ctx.ims_of(self).await?;
        let (wakers, registry) = (
            &ctx.wakers.ram_preferences,
            &ctx.state.ram_preference_claims,
        );
        let contenders = claims::settle(self, &claim_of(&identity), wakers, registry)?;
        let observed = client
            .get_security_preference()
            .await
            .map_err(cloud_error)?;
        let target = Target {
            client,
            contenders,
            identity,
        };
        Ok((target, observed))
    }

    fn moved(&self, target: &Target) -> bool {
        self.recorded_claim()
            .is_some_and(|recorded| recorded != claim_of(&target.identity))
    }

    fn plan(&self, observed: &SecurityPreference) -> Plan<SecurityPreference> {
        plan_preference(&self.spec, observed)
    }

    /// SetSecurityPreference answers with the preference it now holds: no second read.
    async fn act(
        &self,
        _ctx: &Context,
        target: &Target,
        write: &SecurityPreference,
    ) -> Result<SecurityPreference, ReconcileError> {
        target
            .client
            .set_security_preference(write)
            .await
            .map_err(cloud_error)
    }

    fn subject(&self, target: &Target) -> String {
        format!(
            "the RAM security preference of account {}",
            target.identity.account_id
        )
    }

    fn ready_message(&self, target: &Target, mode: ManagementPolicy) -> String {
        let what = match mode {
            ManagementPolicy::Enforce => "has the declared MFA preferences",
            ManagementPolicy::Observe => "matches the spec (Observe)",
        };
        claims::with_contenders(
            format!("{} {what}", self.subject(target)),
            &target.contenders,
        )
    }

    fn restore_to(status: &Self::Status) -> Option<ObservedRamSecurityPreference> {
        status.restore_to.clone()
    }

    fn restore_point(observed: &SecurityPreference) -> ObservedRamSecurityPreference {
        observed_of(observed)
    }

    fn set_restore_to(
        status: &mut Self::Status,
        restore_to: Option<ObservedRamSecurityPreference>,
    ) {
        status.restore_to = restore_to;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{MfaOperationForLogin, RamOperationForRiskLogin};
    use crate::controller::plan::describe;

    fn spec(mode: ManagementPolicy) -> RamSecurityPreferenceSpec {
        RamSecurityPreferenceSpec {
            mfa_operation_for_login: MfaOperationForLogin::Mandatory,
            operation_for_risk_login: None,
            enable_save_mfa_ticket: None,
            allow_user_to_manage_mfa_devices: Some(false),
            region: None,
            endpoint: None,
            credentials_secret_ref: None,
            account_ref: None,
            management_policy: mode,
            deletion_policy: DeletionPolicy::Restore,
        }
    }

    fn cloud(operation: &str, manage: bool) -> SecurityPreference {
        SecurityPreference {
            mfa_operation_for_login: Some(operation.into()),
            operation_for_risk_login: Some("autonomous".into()),
            enable_save_mfa_ticket: Some(false),
            allow_user_to_manage_mfa_devices: Some(manage),
        }
    }

    #[test]
    fn only_the_named_fields_that_differ_are_written() {
        let plan = plan_preference(
            &spec(ManagementPolicy::Enforce),
            &cloud("independent", true),
        );
        assert_eq!(
            describe(&plan.changes),
            "mfaOperationForLogin from independent to mandatory, allowUserToManageMfaDevices from true to false"
        );
        let write = plan.write.unwrap();
        assert_eq!(write.mfa_operation_for_login.as_deref(), Some("mandatory"));
        assert_eq!(write.allow_user_to_manage_mfa_devices, Some(false));
        // Not named in the spec: never written, whatever the cloud has.
        assert_eq!(write.operation_for_risk_login, None);
        assert_eq!(write.enable_save_mfa_ticket, None);
        let mut named = spec(ManagementPolicy::Enforce);
        named.operation_for_risk_login = Some(RamOperationForRiskLogin::EnforceVerify);
        let write = plan_preference(&named, &cloud("mandatory", false))
            .write
            .unwrap();
        assert_eq!(
            write,
            SecurityPreference {
                operation_for_risk_login: Some("enforceVerify".into()),
                ..SecurityPreference::default()
            }
        );
    }

    #[test]
    fn a_matching_cloud_or_observe_writes_nothing() {
        let plan = plan_preference(&spec(ManagementPolicy::Enforce), &cloud("mandatory", false));
        assert!(plan.changes.is_empty() && plan.write.is_none());
        let plan = plan_preference(&spec(ManagementPolicy::Observe), &cloud("adaptive", false));
        assert_eq!(plan.changes.len(), 1);
        assert_eq!(plan.write, None);
    }

    #[test]
    fn restore_writes_back_only_the_named_fields() {
        let restore_to = observed_of(&cloud("independent", true));
        let write = plan_restore(&spec(ManagementPolicy::Enforce), &restore_to).unwrap();
        assert_eq!(
            write,
            SecurityPreference {
                mfa_operation_for_login: Some("independent".into()),
                allow_user_to_manage_mfa_devices: Some(true),
                ..SecurityPreference::default()
            }
        );
        assert_eq!(
            describe_preference(&write),
            "mfaOperationForLogin=independent, allowUserToManageMfaDevices=true"
        );
        let nothing = ObservedRamSecurityPreference::default();
        assert_eq!(
            plan_restore(&spec(ManagementPolicy::Enforce), &nothing),
            None
        );
    }
}
