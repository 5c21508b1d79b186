//! DirectoryMfaPolicy: enforce or observe one directory's MFA setting, repair drift, restore on
//! delete, and resolve two resources naming the same directory (the older one owns it).

use std::sync::Arc;

use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use super::census;
use super::conditions::{self, DesiredCondition, READY, SYNCED};
use super::context::{Context, FINALIZER, key_of};
use super::error::ReconcileError;
use super::status::{apply_status, write_synced};
use crate::api::{
    CommonStatus, DeletionPolicy, DirectoryMfaPolicy, DirectoryMfaPolicySpec,
    DirectoryMfaPolicyStatus, ManagementPolicy, ObservedDirectoryMfa, UserMfaSetting,
};
use crate::cloud::cloudsso::{MfaSettingInfo, MfaSettingUpdate};
use crate::cloud::{CloudSsoClient, Endpoint};

/// One field whose cloud value differs from the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChange {
    pub field: &'static str,
    pub from: String,
    pub to: String,
}

impl std::fmt::Display for FieldChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} from {} to {}", self.field, self.from, self.to)
    }
}

pub fn describe(changes: &[FieldChange]) -> String {
    changes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What reconciling should do, decided from spec and observation alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryPlan {
    /// Where the cloud differs from the spec.
    pub changes: Vec<FieldChange>,
    /// The write that makes it match; None under Observe or when nothing differs.
    pub write: Option<MfaSettingUpdate>,
}

fn show(value: Option<&str>) -> String {
    value.unwrap_or("(unset)").to_string()
}

fn sorted(types: Option<&Vec<String>>) -> Vec<String> {
    let mut types = types.cloned().unwrap_or_default();
    types.sort();
    types.dedup();
    types
}

pub fn plan_directory(spec: &DirectoryMfaPolicySpec, observed: &MfaSettingInfo) -> DirectoryPlan {
    let mut changes = Vec::new();
    let desired_setting = spec.mfa_authentication_settings.as_str();
    if observed.mfa_authentication_advance_settings.as_deref() != Some(desired_setting) {
        changes.push(FieldChange {
            field: "mfaAuthenticationSettings",
            from: show(observed.mfa_authentication_advance_settings.as_deref()),
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
            from: show(observed.operation_for_risk_login.as_deref()),
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
    DirectoryPlan { changes, write }
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

/// Who owns a directory among the live resources naming it: the oldest, then by namespace/name.
pub fn claim_owner<'a>(
    claims: impl IntoIterator<Item = &'a DirectoryMfaPolicy>,
    directory_id: &str,
) -> Vec<&'a DirectoryMfaPolicy> {
    let mut claimants: Vec<&DirectoryMfaPolicy> = claims
        .into_iter()
        .filter(|p| p.spec.directory_id == directory_id && p.meta().deletion_timestamp.is_none())
        .collect();
    claimants.sort_by(|a, b| {
        let age = |p: &DirectoryMfaPolicy| p.meta().creation_timestamp.as_ref().map(|t| t.0);
        age(a)
            .cmp(&age(b))
            .then_with(|| a.namespace().cmp(&b.namespace()))
            .then_with(|| a.name_any().cmp(&b.name_any()))
    });
    claimants
}

fn observed_of(info: &MfaSettingInfo) -> ObservedDirectoryMfa {
    ObservedDirectoryMfa {
        mfa_authentication_settings: info.mfa_authentication_advance_settings.clone(),
        operation_for_risk_login: info.operation_for_risk_login.clone(),
        allowed_verification_types: info.allowed_verification_types.clone(),
    }
}

/// Shared with `run`: the policies the controller sees, and a way to wake some of them.
pub struct PolicyIndex {
    pub store: Store<DeserializeGuard<DirectoryMfaPolicy>>,
    pub wake:
        futures::channel::mpsc::UnboundedSender<ObjectRef<DeserializeGuard<DirectoryMfaPolicy>>>,
}

impl PolicyIndex {
    fn wake_claimants(&self, directory_id: &str, except: &str) {
        for guard in self.store.state() {
            if let Ok(policy) = &guard.0
                && policy.spec.directory_id == directory_id
                && key_of(policy) != except
            {
                let _ = self
                    .wake
                    .unbounded_send(ObjectRef::from_obj(guard.as_ref()));
            }
        }
    }
}

pub async fn reconcile(
    policy: Arc<DirectoryMfaPolicy>,
    ctx: Arc<DirectoryContext>,
) -> Result<Action, ReconcileError> {
    let namespace = policy.namespace().unwrap_or_default();
    let api: Api<DirectoryMfaPolicy> = Api::namespaced(ctx.base.client.clone(), &namespace);
    finalizer(&api, FINALIZER, policy, |event| async {
        match event {
            FinalizerEvent::Apply(policy) => apply(policy, &ctx, &api).await,
            FinalizerEvent::Cleanup(policy) => cleanup(policy, &ctx).await,
        }
    })
    .await
    .map_err(|error| match error {
        kube::runtime::finalizer::Error::ApplyFailed(error)
        | kube::runtime::finalizer::Error::CleanupFailed(error) => error,
        other => ReconcileError::Finalizer(other.to_string()),
    })
}

pub struct DirectoryContext {
    pub base: Arc<Context>,
    pub index: PolicyIndex,
    pub users: UserIndex,
}

impl AsRef<Context> for DirectoryContext {
    fn as_ref(&self) -> &Context {
        &self.base
    }
}

/// The UserMfaSettings the user controller sees, and a way to wake them: their Effective
/// condition follows the directory's setting.
pub struct UserIndex {
    pub store: Store<DeserializeGuard<UserMfaSetting>>,
    pub wake: futures::channel::mpsc::UnboundedSender<ObjectRef<DeserializeGuard<UserMfaSetting>>>,
}

impl UserIndex {
    fn wake_directory_users(&self, directory_id: &str) {
        for guard in self.store.state() {
            if guard
                .0
                .as_ref()
                .is_ok_and(|user| user.spec.directory_id == directory_id)
            {
                let _ = self
                    .wake
                    .unbounded_send(ObjectRef::from_obj(guard.as_ref()));
            }
        }
    }
}

struct Observation {
    endpoint: Endpoint,
    client: CloudSsoClient,
    observed: MfaSettingInfo,
    conditions: Vec<DesiredCondition>,
    restore_to: Option<ObservedDirectoryMfa>,
    contenders: Vec<String>,
}

async fn apply(
    policy: Arc<DirectoryMfaPolicy>,
    ctx: &DirectoryContext,
    api: &Api<DirectoryMfaPolicy>,
) -> Result<Action, ReconcileError> {
    let name = policy.name_any();
    let key = key_of(policy.as_ref());
    let previous = policy.status.clone().unwrap_or_default();
    match enforce(&policy, ctx, api).await {
        Ok(observation) => {
            ctx.base.failures.clear(&key);
            ctx.base
                .directories
                .store(
                    &observation.endpoint,
                    &policy.spec.directory_id,
                    observation.observed.clone(),
                )
                .await;
            let setting_before = previous
                .observed
                .as_ref()
                .and_then(|observed| observed.mfa_authentication_settings.as_deref());
            if setting_before
                != observation
                    .observed
                    .mfa_authentication_advance_settings
                    .as_deref()
            {
                ctx.users.wake_directory_users(&policy.spec.directory_id);
            }
            // When the directory's summary changes, this policy is woken to show it in status.users.
            let wake = ctx.index.wake.clone();
            let me = super::guarded_ref(policy.as_ref());
            let users = ctx.base.census.refresh(
                &observation.client,
                &observation.endpoint,
                &policy.spec.directory_id,
                &census::counter_key(policy.as_ref()),
                Some(Arc::new(move || {
                    let _ = wake.unbounded_send(me.clone());
                })),
            );
            let status = DirectoryMfaPolicyStatus {
                common: CommonStatus {
                    conditions: conditions::merge(
                        &previous.common.conditions,
                        &observation.conditions,
                        policy.meta().generation,
                        &now_time(),
                    ),
                    observed_generation: policy.meta().generation,
                    last_sync_time: previous.common.last_sync_time.clone(),
                },
                observed: Some(observed_of(&observation.observed)),
                restore_to: observation.restore_to,
                contenders: observation.contenders,
                users,
            };
            write_synced(
                api,
                &name,
                &previous,
                status,
                ctx.base.settings.resync_interval,
            )
            .await?;
            Ok(Action::requeue(ctx.base.settings.jittered_resync()))
        }
        Err(error) => {
            let status = DirectoryMfaPolicyStatus {
                common: CommonStatus {
                    conditions: conditions::merge(
                        &previous.common.conditions,
                        &conditions::failed(&error),
                        policy.meta().generation,
                        &now_time(),
                    ),
                    observed_generation: policy.meta().generation,
                    last_sync_time: previous.common.last_sync_time.clone(),
                },
                ..previous.clone()
            };
            ctx.base
                .report_failure(policy.as_ref(), &previous.common.conditions, &error)
                .await;
            if status != previous {
                apply_status(api, &name, &status).await?;
            }
            Err(error)
        }
    }
}

fn now_time() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now())
}

/// The CloudSSO endpoint and client the policy asks for.
async fn cloudsso_of(
    policy: &DirectoryMfaPolicy,
    ctx: &Context,
) -> Result<(Endpoint, CloudSsoClient), ReconcileError> {
    let spec = &policy.spec;
    ctx.cloudsso_for(
        &policy.namespace().unwrap_or_default(),
        spec.endpoint.as_deref(),
        &spec.region,
        spec.credentials_secret_ref.as_ref(),
    )
    .await
}

async fn enforce(
    policy: &DirectoryMfaPolicy,
    ctx: &DirectoryContext,
    api: &Api<DirectoryMfaPolicy>,
) -> Result<Observation, ReconcileError> {
    let spec = &policy.spec;
    let directory_id = spec.directory_id.as_str();
    let key = key_of(policy);
    let known = ctx.index.store.state();
    let claimants = claim_owner(known.iter().filter_map(|g| g.0.as_ref().ok()), directory_id);
    let owner = claimants.first().map(|p| key_of(*p));
    let contenders: Vec<String> = match &owner {
        Some(owner) if *owner != key => {
            return Err(ReconcileError::Conflict {
                directory_id: directory_id.into(),
                owner: owner.clone(),
            });
        }
        _ => claimants.iter().skip(1).map(|p| key_of(*p)).collect(),
    };
    if !contenders.is_empty() {
        // Losers learn of the owner at once, not at their next resync.
        ctx.index.wake_claimants(directory_id, &key);
    }

    let (endpoint, client) = cloudsso_of(policy, &ctx.base).await?;
    let cloud_error = |error| ReconcileError::from_cloud(error, directory_id, None);
    let mut observed = client
        .get_mfa_setting_info(directory_id)
        .await
        .map_err(cloud_error)?;
    let plan = plan_directory(spec, &observed);
    let previous = policy.status.clone().unwrap_or_default();
    let mut restore_to = previous.restore_to.clone();

    let in_sync = |changes: &[FieldChange]| changes.is_empty();
    let conditions = match (&plan.write, spec.management_policy) {
        (Some(update), _) => {
            if restore_to.is_none() {
                // Recorded before the first write, so a crash in between loses nothing.
                restore_to = Some(observed_of(&observed));
                let status = DirectoryMfaPolicyStatus {
                    restore_to: restore_to.clone(),
                    ..previous.clone()
                };
                apply_status(api, &policy.name_any(), &status).await?;
            }
            client
                .update_mfa_settings(update)
                .await
                .map_err(cloud_error)?;
            observed = client
                .get_mfa_setting_info(directory_id)
                .await
                .map_err(cloud_error)?;
            let after = plan_directory(spec, &observed);
            if !in_sync(&after.changes) {
                return Err(ReconcileError::Cloud(format!(
                    "the cloud did not keep the setting: {}",
                    describe(&after.changes)
                )));
            }
            let drift = conditions::is_true(&previous.common.conditions, SYNCED)
                && previous.common.observed_generation == policy.meta().generation;
            let (reason, note) = if drift {
                (
                    "DriftRepaired",
                    format!(
                        "directory {directory_id} was changed outside Kubernetes; set back: {}",
                        describe(&plan.changes)
                    ),
                )
            } else {
                (
                    "Updated",
                    format!("directory {directory_id}: {}", describe(&plan.changes)),
                )
            };
            ctx.base.event(policy, false, reason, "Update", note).await;
            vec![
                DesiredCondition::new(
                    READY,
                    true,
                    "Enforced",
                    format!("directory {directory_id} has the declared MFA setting"),
                ),
                DesiredCondition::new(
                    SYNCED,
                    true,
                    reason,
                    format!("set {}", describe(&plan.changes)),
                ),
            ]
        }
        (None, ManagementPolicy::Observe) if !plan.changes.is_empty() => {
            let message = format!(
                "the cloud differs from the spec (Observe: not written): {}",
                describe(&plan.changes)
            );
            if !conditions::find(&previous.common.conditions, SYNCED)
                .is_some_and(|c| c.reason == "Drifted" && c.message == message)
            {
                ctx.base
                    .event(policy, true, "Drifted", "Observe", message.clone())
                    .await;
            }
            vec![
                DesiredCondition::new(READY, false, "Drifted", message.clone()),
                DesiredCondition::new(SYNCED, false, "Drifted", message),
            ]
        }
        (None, mode) => {
            let (reason, what) = match mode {
                ManagementPolicy::Enforce => ("Enforced", "has the declared MFA setting"),
                ManagementPolicy::Observe => ("Observed", "matches the spec (Observe)"),
            };
            let mut ready_message = format!("directory {directory_id} {what}");
            if !contenders.is_empty() {
                ready_message.push_str(&format!(
                    "; also claimed by {} (not applied)",
                    contenders.join(", ")
                ));
            }
            vec![
                DesiredCondition::new(READY, true, reason, ready_message),
                DesiredCondition::new(SYNCED, true, "InSync", "the cloud matches the spec"),
            ]
        }
    };
    Ok(Observation {
        endpoint,
        client,
        observed,
        conditions,
        restore_to,
        contenders,
    })
}

async fn cleanup(
    policy: Arc<DirectoryMfaPolicy>,
    ctx: &DirectoryContext,
) -> Result<Action, ReconcileError> {
    let spec = &policy.spec;
    ctx.index
        .wake_claimants(&spec.directory_id, &key_of(policy.as_ref()));
    let status = policy.status.clone().unwrap_or_default();
    let is_owner =
        conditions::find(&status.common.conditions, READY).is_none_or(|c| c.reason != "Conflict");
    // Its share of the directory's gauges goes with it.
    ctx.base
        .census
        .release(&census::counter_key(policy.as_ref()));
    if spec.deletion_policy == DeletionPolicy::Orphan || !is_owner {
        return Ok(Action::await_change());
    }
    let Some(update) = status
        .restore_to
        .as_ref()
        .and_then(|restore| plan_restore(&spec.directory_id, restore))
    else {
        return Ok(Action::await_change());
    };
    let (_, client) = cloudsso_of(&policy, &ctx.base).await?;
    let restored = format!(
        "directory {} set back to {}",
        spec.directory_id, update.mfa_authentication_settings
    );
    let written = client.update_mfa_settings(&update).await;
    ctx.base
        .finish_restore(policy.as_ref(), written, &spec.directory_id, None, restored)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{MfaAuthenticationSettings, OperationForRiskLogin};

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
            region: "cn-shanghai".into(),
            endpoint: None,
            credentials_secret_ref: None,
            management_policy: mode,
            deletion_policy: DeletionPolicy::Orphan,
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
            DirectoryPlan {
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

    #[test]
    fn the_oldest_claimant_owns_the_directory() {
        let make = |name: &str, created: &str| {
            let mut policy = DirectoryMfaPolicy::new(
                name,
                spec(
                    MfaAuthenticationSettings::Enabled,
                    None,
                    ManagementPolicy::Enforce,
                ),
            );
            policy.metadata.namespace = Some("ns".into());
            policy.metadata.creation_timestamp = Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(created.parse().unwrap()),
            );
            policy
        };
        let young = make("a-young", "2026-01-02T00:00:00Z");
        let old = make("z-old", "2026-01-01T00:00:00Z");
        let twin = make("b-twin", "2026-01-01T00:00:00Z");
        let order: Vec<String> = claim_owner([&young, &old, &twin], "d-1")
            .iter()
            .map(|p| p.name_any())
            .collect();
        assert_eq!(order, ["b-twin", "z-old", "a-young"]);
    }
}
