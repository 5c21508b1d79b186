//! RamUserMfaSetting: enforce or observe whether one RAM user must bind an MFA device (the login
//! profile's MFABindRequired; IMS Get/UpdateLoginProfile), report the bound device
//! (GetUserMFAInfo), and say whether it is in effect (only while the account's
//! mfaOperationForLogin is `independent`). One owner per RAM user, like a CloudSSO user.

use kube::Resource;
use kube::runtime::controller::Action;

use super::ram::report;
use super::ram_preference::RAM;
use crate::api::{
    CloudSpec, DeletionPolicy, ManagementPolicy, ObservedRamLogin, RamMfaDevice, RamUserMfaSetting,
    RamUserMfaSettingSpec, Reason,
};
use crate::cloud::ims::{LoginProfile, LoginProfileUpdate, MissingLogin, UserMfaInfo};
use crate::cloud::{CloudError, ImsClient};
use crate::controller::budget::Calls;
use crate::controller::conditions::{DesiredCondition, EFFECTIVE};
use crate::controller::context::Context;
use crate::controller::error::ReconcileError;
use crate::controller::plan::{FieldChange, Plan};
use crate::controller::reconciler::Kind;
use crate::controller::restore;
use crate::controller::state::RamAccountKey;
use crate::controller::state::claims::{self, Claim, Claimant};
use crate::controller::status::StatusWriter;
use crate::controller::tenancy::Identity;
use crate::controller::writable::{Converged, Writable, sync_writable};

/// What differs between the spec and the user's login profile, and the write that fixes it
/// (None under Observe).
pub fn plan_login(
    spec: &RamUserMfaSettingSpec,
    observed: &LoginProfile,
) -> Plan<LoginProfileUpdate> {
    let changes: Vec<FieldChange> = (observed.mfa_bind_required != spec.mfa_bind_required)
        .then(|| FieldChange {
            field: "mfaBindRequired",
            from: observed.mfa_bind_required.to_string(),
            to: spec.mfa_bind_required.to_string(),
        })
        .into_iter()
        .collect();
    let enforce = !changes.is_empty() && spec.management_policy == ManagementPolicy::Enforce;
    let write = enforce.then_some(LoginProfileUpdate {
        mfa_bind_required: Some(spec.mfa_bind_required),
        password_reset_required: None,
    });
    Plan { changes, write }
}

/// Whether a user's mfaBindRequired takes effect under the account's mfaOperationForLogin.
pub fn effective(mfa_operation_for_login: Option<&str>, account_id: &str) -> DesiredCondition {
    match mfa_operation_for_login {
        Some("independent") => DesiredCondition::new(
            EFFECTIVE,
            true,
            Reason::RamPreferenceIndependent,
            format!(
                "RAM account {account_id} lets each user's login profile decide (mfaOperationForLogin independent)"
            ),
        ),
        Some(other) => DesiredCondition::new(
            EFFECTIVE,
            false,
            Reason::RamPreferenceOverrides,
            format!(
                "RAM account {account_id} has mfaOperationForLogin {other}, so this user's mfaBindRequired has no effect until it is independent"
            ),
        ),
        None => DesiredCondition::new(
            EFFECTIVE,
            false,
            Reason::RamPreferenceUnknown,
            format!("the security preference of RAM account {account_id} could not be read"),
        ),
    }
}

/// RAM principal names compare without case (RAM answers for any case).
fn principal_of(spec: &RamUserMfaSettingSpec) -> String {
    spec.user_principal_name.to_ascii_lowercase()
}

/// The user a pass works on.
pub struct Target {
    client: ImsClient,
    identity: Identity,
}

impl Claimant for RamUserMfaSetting {
    fn directory_id(&self) -> &str {
        RAM
    }
    fn recorded_claim(&self) -> Option<Claim> {
        let common = &self.status.as_ref()?.common;
        Claim::from_status(common, RAM, Some(principal_of(&self.spec)))
    }
    fn may_claim(&self, claim: &Claim) -> bool {
        claim
            .user_id
            .as_deref()
            .is_some_and(|user| user.eq_ignore_ascii_case(&self.spec.user_principal_name))
    }
}

/// The RAM user `identity` reaches.
fn claim_of(identity: &Identity, spec: &RamUserMfaSettingSpec) -> Claim {
    Claim {
        account_id: identity.account_id.clone(),
        endpoint: identity.endpoint.clone(),
        directory_id: RAM.to_string(),
        user_id: Some(principal_of(spec)),
    }
}

/// A failed login profile call: no such user, no console logon, or what the cloud said.
fn login_error(principal: &str) -> impl Fn(CloudError) -> ReconcileError + '_ {
    move |error| match MissingLogin::of(&error) {
        Some(MissingLogin::NoLoginProfile) => ReconcileError::NoLoginProfile {
            user: principal.to_string(),
        },
        Some(MissingLogin::NoSuchUser) => ReconcileError::UserNotFound {
            user: principal.to_string(),
            directory_id: "RAM".into(),
            detail: format!(": {error}"),
        },
        None => ReconcileError::from_cloud(error, "RAM", Some(principal)),
    }
}

/// The budget's name for the account a RamUserMfaSetting reaches (the credentials it names):
/// its RAM users share one preference read per resync.
fn account_of(object: &RamUserMfaSetting) -> String {
    let spec = &object.spec;
    match (spec.credentials_secret_ref(), spec.account_ref()) {
        (Some(secret), _) => format!(
            "secret {}/{} {}",
            object.meta().namespace.as_deref().unwrap_or_default(),
            secret.name,
            spec.endpoint().unwrap_or_default()
        ),
        (None, Some(account)) => format!("account {}", account.name),
        (None, None) => "account default".to_string(),
    }
}

/// A successful pass: the login profile as written or found, the device, and Effective.
pub struct Synced {
    converged: Converged<RamUserMfaSetting>,
    device: Option<RamMfaDevice>,
}

impl Kind for RamUserMfaSetting {
    type Synced = Synced;
    const FINALIZES: bool = true;

    fn calls(&self) -> Calls {
        Calls::RamUser {
            account: account_of(self),
        }
    }

    /// Converges the login profile, then reads the device and whether the account lets it apply.
    async fn sync(
        &self,
        ctx: &Context,
        status: &mut Self::Status,
        writer: &StatusWriter<Self>,
    ) -> Result<(Vec<DesiredCondition>, Synced), ReconcileError> {
        let mut converged = sync_writable(self, ctx, status, writer).await?;
        let device = self.device(&converged.target).await?;
        converged
            .conditions
            .push(self.effective(ctx, &converged.target).await);
        let conditions = converged.conditions.clone();
        Ok((conditions, Synced { converged, device }))
    }

    fn project(&self, synced: Synced, status: &mut Self::Status) {
        let Synced { converged, device } = synced;
        converged.target.identity.record(&mut status.common);
        status.observed = Some(ObservedRamLogin {
            mfa_bind_required: Some(converged.observed.mfa_bind_required),
        });
        status.device = device;
        status.restore_to = converged.restore_to;
    }

    fn forget(status: &mut Self::Status, error: &ReconcileError) {
        if matches!(
            error,
            ReconcileError::UserNotFound { .. } | ReconcileError::NoLoginProfile { .. }
        ) {
            // No user, or no console logon: no setting to report (a user may still have a device).
            status.observed = None;
            if matches!(error, ReconcileError::UserNotFound { .. }) {
                status.device = None;
            }
        }
    }

    async fn cleanup(&self, ctx: &Context) -> Result<Action, ReconcileError> {
        ctx.budget
            .release(&crate::controller::keys::counter_key(self));
        let (wakers, registry) = (&ctx.wakers.ram_users, &ctx.state.ram_user_claims);
        claims::wake_sharing(wakers, self, registry);
        let status = self.status.clone().unwrap_or_default();
        let restore = status.restore_to.as_ref().and_then(|r| r.mfa_bind_required);
        let outcome = match (restore, self.spec.deletion_policy) {
            (Some(restore), DeletionPolicy::Restore) if claims::owned(&status.common) => {
                self.restore(ctx, restore).await
            }
            _ => Ok(Action::await_change()),
        };
        if outcome.is_ok() {
            registry.forget(self);
        }
        outcome
    }
}

impl RamUserMfaSetting {
    /// The bound device (GetUserMFAInfo), RAM's "no device" answer read as none.
    async fn device(&self, target: &Target) -> Result<Option<RamMfaDevice>, ReconcileError> {
        let principal = self.spec.user_principal_name.as_str();
        let info = match target.client.get_user_mfa_info(principal).await {
            Ok(info) => info,
            Err(error) if error.is_no_mfa_device() => UserMfaInfo::default(),
            Err(error) => return Err(login_error(principal)(error)),
        };
        Ok(report(&info).1)
    }

    /// Whether the account lets a user's login profile decide (its preference, read once per
    /// resync for all its users, or as its RamSecurityPreference last saw it).
    async fn effective(&self, ctx: &Context, target: &Target) -> DesiredCondition {
        let account_id = target.identity.account_id.as_str();
        let account = RamAccountKey::of(&target.identity);
        let preference = ctx
            .state
            .ram_preferences
            .preference(&target.client, &account, ctx.budget.effective())
            .await;
        match preference {
            Ok(preference) => effective(preference.mfa_operation_for_login.as_deref(), account_id),
            Err(error) => {
                tracing::warn!(%error, account_id, "could not read the RAM security preference");
                effective(None, account_id)
            }
        }
    }

    /// Writes back `restoreTo` on delete, only while this resource still owns the user it
    /// changed, through the same account and endpoint (re-checked from the live store).
    async fn restore(&self, ctx: &Context, restore: bool) -> Result<Action, ReconcileError> {
        let principal = self.spec.user_principal_name.as_str();
        let route = ctx.ims_of(self).await;
        let (client, identity) = match restore::skip_unless_routed(ctx, self, route).await? {
            Ok(route) => route,
            Err(skipped) => return Ok(skipped),
        };
        let (wakers, registry) = (&ctx.wakers.ram_users, &ctx.state.ram_user_claims);
        let claim = claim_of(&identity, &self.spec);
        if let Err(why) = claims::may_restore(self, &claim, wakers, registry) {
            return Ok(restore::skip(ctx, self, Reason::Conflict, why).await);
        }
        let update = LoginProfileUpdate {
            mfa_bind_required: Some(restore),
            password_reset_required: None,
        };
        let written = client.update_login_profile(principal, &update).await;
        let restored = format!("RAM user {principal} set back to mfaBindRequired={restore}");
        let written = written.map(|_| ());
        restore::finish(ctx, self, written, "RAM", Some(principal), restored).await
    }
}

impl Writable for RamUserMfaSetting {
    type Target = Target;
    type Observed = LoginProfile;
    type Write = LoginProfileUpdate;
    type RestorePoint = ObservedRamLogin;

    fn management_policy(&self) -> ManagementPolicy {
        self.spec.management_policy
    }

    /// The user's login profile, read only once this resource owns the user.
    async fn observe(&self, ctx: &Context) -> Result<(Target, LoginProfile), ReconcileError> {
        let principal = self.spec.user_principal_name.as_str();
        let (client, identity) = ctx.ims_of(self).await?;
        let (wakers, registry) = (&ctx.wakers.ram_users, &ctx.state.ram_user_claims);
        claims::settle(self, &claim_of(&identity, &self.spec), wakers, registry)?;
        let observed = client
            .get_login_profile(principal)
            .await
            .map_err(login_error(principal))?;
        Ok((Target { client, identity }, observed))
    }

    fn moved(&self, target: &Target) -> bool {
        self.recorded_claim()
            .is_some_and(|recorded| recorded != claim_of(&target.identity, &self.spec))
    }

    fn plan(&self, observed: &LoginProfile) -> Plan<LoginProfileUpdate> {
        plan_login(&self.spec, observed)
    }

    /// UpdateLoginProfile answers with the profile it now holds: no second read.
    async fn act(
        &self,
        _ctx: &Context,
        target: &Target,
        write: &LoginProfileUpdate,
    ) -> Result<LoginProfile, ReconcileError> {
        let principal = self.spec.user_principal_name.as_str();
        target
            .client
            .update_login_profile(principal, write)
            .await
            .map_err(login_error(principal))
    }

    fn subject(&self, _target: &Target) -> String {
        format!("RAM user {}", self.spec.user_principal_name)
    }

    fn not_kept(&self, _still: &[FieldChange]) -> String {
        format!(
            "the cloud did not keep mfaBindRequired={}",
            self.spec.mfa_bind_required
        )
    }

    fn restore_to(status: &Self::Status) -> Option<ObservedRamLogin> {
        status.restore_to.clone()
    }

    fn restore_point(observed: &LoginProfile) -> ObservedRamLogin {
        ObservedRamLogin {
            mfa_bind_required: Some(observed.mfa_bind_required),
        }
    }

    fn set_restore_to(status: &mut Self::Status, restore_to: Option<ObservedRamLogin>) {
        status.restore_to = restore_to;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::plan::describe;

    fn spec(required: bool, mode: ManagementPolicy) -> RamUserMfaSettingSpec {
        RamUserMfaSettingSpec {
            user_principal_name: "Bob@example.onaliyun.com".into(),
            mfa_bind_required: required,
            region: None,
            endpoint: None,
            credentials_secret_ref: None,
            account_ref: None,
            management_policy: mode,
            deletion_policy: DeletionPolicy::Orphan,
        }
    }

    fn profile(required: bool) -> LoginProfile {
        LoginProfile {
            mfa_bind_required: required,
            ..LoginProfile::default()
        }
    }

    #[test]
    fn enforce_writes_only_mfa_bind_required_and_only_a_difference() {
        let enforce = spec(true, ManagementPolicy::Enforce);
        assert_eq!(
            plan_login(&enforce, &profile(true)),
            Plan {
                changes: vec![],
                write: None
            }
        );
        let plan = plan_login(&enforce, &profile(false));
        assert_eq!(
            describe(&plan.changes),
            "mfaBindRequired from false to true"
        );
        assert_eq!(
            plan.write,
            Some(LoginProfileUpdate {
                mfa_bind_required: Some(true),
                password_reset_required: None
            })
        );
    }

    #[test]
    fn observe_never_writes() {
        let plan = plan_login(&spec(false, ManagementPolicy::Observe), &profile(true));
        assert_eq!(plan.changes.len(), 1);
        assert_eq!(plan.write, None);
    }

    #[test]
    fn effective_only_while_the_account_is_independent() {
        assert!(effective(Some("independent"), "1").status);
        let mandatory = effective(Some("mandatory"), "1");
        assert!(!mandatory.status);
        assert_eq!(mandatory.reason, Reason::RamPreferenceOverrides);
        assert!(
            mandatory.message.contains("mandatory"),
            "{}",
            mandatory.message
        );
        assert!(!effective(Some("adaptive"), "1").status);
        assert_eq!(effective(None, "1").reason, Reason::RamPreferenceUnknown);
    }

    #[test]
    fn a_user_is_claimed_whatever_the_case_of_its_name() {
        let identity = Identity {
            account_id: "1".into(),
            endpoint: "https://ims.aliyuncs.com/".into(),
            cloud_account: None,
        };
        let claim = claim_of(&identity, &spec(true, ManagementPolicy::Enforce));
        assert_eq!(claim.user_id.as_deref(), Some("bob@example.onaliyun.com"));
        let object = RamUserMfaSetting::new("bob", spec(true, ManagementPolicy::Enforce));
        assert!(object.may_claim(&claim));
    }

    #[test]
    fn a_missing_login_profile_is_terminal_and_no_missing_user() {
        use crate::cloud::error::api_error_for_test as api;
        let principal = "bob@example.onaliyun.com";
        let error = login_error(principal)(api("EntityNotExist.User.LoginProfile", 404));
        assert_eq!(error.reason(), Reason::NoLoginProfile);
        assert!(!error.is_retryable());
        let error = login_error(principal)(api("EntityNotExist.User", 404));
        assert_eq!(error.reason(), Reason::UserNotFound);
    }
}
