//! UserMfaSetting: enforce or observe one user's MFA setting, report the bound devices, and say
//! whether the setting is in effect (only while the directory is `Byuser`).

use std::sync::Arc;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Resource, ResourceExt};

use super::census::{self, UserState};
use super::conditions::{self, DesiredCondition, EFFECTIVE, READY, SYNCED};
use super::context::{Context, FINALIZER, key_of};
use super::directory::{FieldChange, describe};
use super::error::ReconcileError;
use super::status::{apply_status, write_synced};
use crate::api::{
    BoundMfaDevice, CommonStatus, DeletionPolicy, ManagementPolicy, ObservedUserMfa,
    UserMfaSetting, UserMfaSettingSpec, UserMfaSettingStatus,
};
use crate::cloud::cloudsso::{CloudSsoClient, MfaDevice};
use crate::cloud::{CloudError, Endpoint};

/// What reconciling a user should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPlan {
    pub change: Option<FieldChange>,
    /// The setting to write; None under Observe or when it already matches.
    pub write: Option<&'static str>,
}

pub fn plan_user(spec: &UserMfaSettingSpec, observed: Option<&str>) -> UserPlan {
    let desired = spec.user_mfa_authentication_settings.as_str();
    let change = (observed != Some(desired)).then(|| FieldChange {
        field: "userMfaAuthenticationSettings",
        from: observed.unwrap_or("(unset)").into(),
        to: desired.into(),
    });
    let write = (change.is_some() && spec.management_policy == ManagementPolicy::Enforce)
        .then_some(desired);
    UserPlan { change, write }
}

/// Whether a per-user setting takes effect under the directory's setting.
pub fn effective(directory_setting: Option<&str>, directory_id: &str) -> DesiredCondition {
    match directory_setting {
        Some("Byuser") => DesiredCondition::new(
            EFFECTIVE,
            true,
            "DirectoryByUser",
            format!("directory {directory_id} applies per-user settings (Byuser)"),
        ),
        Some(other) => DesiredCondition::new(
            EFFECTIVE,
            false,
            "DirectorySettingOverrides",
            format!(
                "directory {directory_id} is {other}, so this per-user setting has no effect until the directory is Byuser"
            ),
        ),
        None => DesiredCondition::new(
            EFFECTIVE,
            false,
            "DirectorySettingUnknown",
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

pub async fn reconcile(
    setting: Arc<UserMfaSetting>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let namespace = setting.namespace().unwrap_or_default();
    let api: Api<UserMfaSetting> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, FINALIZER, setting, |event| async {
        match event {
            FinalizerEvent::Apply(setting) => apply(setting, &ctx, &api).await,
            FinalizerEvent::Cleanup(setting) => cleanup(setting, &ctx).await,
        }
    })
    .await
    .map_err(|error| match error {
        kube::runtime::finalizer::Error::ApplyFailed(error)
        | kube::runtime::finalizer::Error::CleanupFailed(error) => error,
        other => ReconcileError::Finalizer(other.to_string()),
    })
}

struct Target {
    endpoint: Endpoint,
    client: CloudSsoClient,
}

async fn target(setting: &UserMfaSetting, ctx: &Context) -> Result<Target, ReconcileError> {
    let spec = &setting.spec;
    let (endpoint, client) = ctx
        .cloudsso_for(
            &setting.namespace().unwrap_or_default(),
            spec.endpoint.as_deref(),
            &spec.region,
            spec.credentials_secret_ref.as_ref(),
        )
        .await?;
    Ok(Target { endpoint, client })
}

/// The user id: given, or resolved from the name (cached until it stops resolving).
async fn resolve_user_id(
    spec: &UserMfaSettingSpec,
    target: &Target,
    ctx: &Context,
) -> Result<String, ReconcileError> {
    if let Some(user_id) = &spec.user_id {
        return Ok(user_id.clone());
    }
    let user_name = spec.user_name.clone().unwrap_or_default();
    let cache_key = (
        target.endpoint.url(),
        spec.directory_id.clone(),
        user_name.clone(),
    );
    if let Some(user_id) = ctx
        .user_ids
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&cache_key)
    {
        return Ok(user_id.clone());
    }
    let user = target
        .client
        .find_user_by_name(&spec.directory_id, &user_name)
        .await
        .map_err(|error| ReconcileError::from_cloud(error, &spec.directory_id, Some(&user_name)))?
        .ok_or_else(|| ReconcileError::UserNotFound {
            user: format!("named '{user_name}'"),
            directory_id: spec.directory_id.clone(),
            detail: " (ListUsers found no such user name)".into(),
        })?;
    ctx.user_ids
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(cache_key, user.user_id.clone());
    Ok(user.user_id)
}

fn forget_user_id(spec: &UserMfaSettingSpec, target: &Target, ctx: &Context) -> bool {
    let Some(user_name) = &spec.user_name else {
        return false;
    };
    ctx.user_ids
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&(
            target.endpoint.url(),
            spec.directory_id.clone(),
            user_name.clone(),
        ))
        .is_some()
}

struct Observation {
    target: Target,
    user_id: String,
    observed: Option<String>,
    devices: Vec<BoundMfaDevice>,
    conditions: Vec<DesiredCondition>,
    restore_to: Option<ObservedUserMfa>,
}

async fn apply(
    setting: Arc<UserMfaSetting>,
    ctx: &Context,
    api: &Api<UserMfaSetting>,
) -> Result<Action, ReconcileError> {
    let name = setting.name_any();
    let previous = setting.status.clone().unwrap_or_default();
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now());
    match enforce(&setting, ctx, api).await {
        Ok(observation) => {
            ctx.failures.clear(&key_of(setting.as_ref()));
            // The directory's compliance gauges count this user too, as just observed.
            let (endpoint, directory_id) =
                (&observation.target.endpoint, &setting.spec.directory_id);
            ctx.census.refresh(
                &observation.target.client,
                endpoint,
                directory_id,
                &census::counter_key(setting.as_ref()),
                None,
            );
            ctx.census.observe_user(
                endpoint,
                directory_id,
                &observation.user_id,
                UserState {
                    setting: observation.observed.clone(),
                    devices: observation.devices.len(),
                },
            );
            let status = UserMfaSettingStatus {
                common: CommonStatus {
                    conditions: conditions::merge(
                        &previous.common.conditions,
                        &observation.conditions,
                        setting.meta().generation,
                        &now,
                    ),
                    observed_generation: setting.meta().generation,
                    last_sync_time: previous.common.last_sync_time.clone(),
                },
                user_id: Some(observation.user_id),
                observed: Some(ObservedUserMfa {
                    user_mfa_authentication_settings: observation.observed,
                }),
                bound_device_count: Some(observation.devices.len() as u32),
                devices: Some(observation.devices),
                restore_to: observation.restore_to,
            };
            write_synced(api, &name, &previous, status, ctx.settings.resync_interval).await?;
            Ok(Action::requeue(ctx.settings.jittered_resync()))
        }
        Err(error) => {
            let mut status = previous.clone();
            status.common.conditions = conditions::merge(
                &previous.common.conditions,
                &conditions::failed(&error),
                setting.meta().generation,
                &now,
            );
            status.common.observed_generation = setting.meta().generation;
            if matches!(error, ReconcileError::UserNotFound { .. }) {
                // A user that does not exist has no id, setting or devices to report.
                status.user_id = None;
                status.observed = None;
                status.bound_device_count = None;
                status.devices = None;
            }
            ctx.report_failure(setting.as_ref(), &previous.common.conditions, &error)
                .await;
            if status != previous {
                apply_status(api, &name, &status).await?;
            }
            Err(error)
        }
    }
}

async fn enforce(
    setting: &UserMfaSetting,
    ctx: &Context,
    api: &Api<UserMfaSetting>,
) -> Result<Observation, ReconcileError> {
    let spec = &setting.spec;
    let directory_id = spec.directory_id.as_str();
    let target = target(setting, ctx).await?;
    let mut user_id = resolve_user_id(spec, &target, ctx).await?;
    let read = |user_id: String| {
        let client = target.client.clone();
        async move { client.get_user_mfa_setting(directory_id, &user_id).await }
    };
    let mut observed = match read(user_id.clone()).await {
        // A user resolved by name may have been deleted and re-created under a new id.
        Err(error) if is_user_gone(&error) && forget_user_id(spec, &target, ctx) => {
            user_id = resolve_user_id(spec, &target, ctx).await?;
            read(user_id.clone()).await
        }
        other => other,
    }
    .map_err(|error| ReconcileError::from_cloud(error, directory_id, Some(&user_id)))?;

    let cloud_error = |error| ReconcileError::from_cloud(error, directory_id, Some(&user_id));
    let plan = plan_user(spec, observed.as_deref());
    let previous = setting.status.clone().unwrap_or_default();
    let mut restore_to = previous.restore_to.clone();
    let mut conditions = Vec::new();
    if let Some(desired) = plan.write {
        if restore_to.is_none() {
            restore_to = Some(ObservedUserMfa {
                user_mfa_authentication_settings: observed.clone(),
            });
            let status = UserMfaSettingStatus {
                restore_to: restore_to.clone(),
                ..previous.clone()
            };
            apply_status(api, &setting.name_any(), &status).await?;
        }
        target
            .client
            .update_user_mfa_setting(directory_id, &user_id, desired)
            .await
            .map_err(cloud_error)?;
        observed = target
            .client
            .get_user_mfa_setting(directory_id, &user_id)
            .await
            .map_err(cloud_error)?;
        if observed.as_deref() != Some(desired) {
            return Err(ReconcileError::Cloud(format!(
                "the cloud did not keep userMfaAuthenticationSettings={desired}"
            )));
        }
        let change = plan
            .change
            .clone()
            .map(|c| c.to_string())
            .unwrap_or_default();
        let drift = conditions::is_true(&previous.common.conditions, SYNCED)
            && previous.common.observed_generation == setting.meta().generation;
        let (reason, note) = if drift {
            (
                "DriftRepaired",
                format!("user {user_id} was changed outside Kubernetes; set back: {change}"),
            )
        } else {
            ("Updated", format!("user {user_id}: {change}"))
        };
        ctx.event(setting, false, reason, "Update", note).await;
        conditions.push(DesiredCondition::new(
            READY,
            true,
            "Enforced",
            format!("user {user_id} has the declared MFA setting"),
        ));
        conditions.push(DesiredCondition::new(
            SYNCED,
            true,
            reason,
            format!("set {change}"),
        ));
    } else if let Some(change) = &plan.change {
        let message = format!(
            "the cloud differs from the spec (Observe: not written): {}",
            describe(std::slice::from_ref(change))
        );
        if !conditions::find(&previous.common.conditions, SYNCED)
            .is_some_and(|c| c.reason == "Drifted" && c.message == message)
        {
            ctx.event(setting, true, "Drifted", "Observe", message.clone())
                .await;
        }
        conditions.push(DesiredCondition::new(
            READY,
            false,
            "Drifted",
            message.clone(),
        ));
        conditions.push(DesiredCondition::new(SYNCED, false, "Drifted", message));
    } else {
        let reason = match spec.management_policy {
            ManagementPolicy::Enforce => "Enforced",
            ManagementPolicy::Observe => "Observed",
        };
        conditions.push(DesiredCondition::new(
            READY,
            true,
            reason,
            format!("user {user_id} has the declared MFA setting"),
        ));
        conditions.push(DesiredCondition::new(
            SYNCED,
            true,
            "InSync",
            "the cloud matches the spec",
        ));
    }

    let devices = target
        .client
        .list_mfa_devices(directory_id, &user_id)
        .await
        .map_err(cloud_error)?;
    let directory = ctx
        .directories
        .get_or_fetch(
            &target.endpoint,
            directory_id,
            ctx.settings.resync_interval,
            || target.client.get_mfa_setting_info(directory_id),
        )
        .await;
    conditions.push(match directory {
        Ok(info) => effective(
            info.mfa_authentication_advance_settings.as_deref(),
            directory_id,
        ),
        Err(error) => {
            tracing::warn!(%error, directory_id, "could not read the directory's setting");
            effective(None, directory_id)
        }
    });
    Ok(Observation {
        target,
        user_id,
        observed,
        devices: devices_of(devices),
        conditions,
        restore_to,
    })
}

fn is_user_gone(error: &CloudError) -> bool {
    error
        .code()
        .is_some_and(|code| code == "EntityNotExists.User")
}

async fn cleanup(setting: Arc<UserMfaSetting>, ctx: &Context) -> Result<Action, ReconcileError> {
    let spec = &setting.spec;
    ctx.census.release(&census::counter_key(setting.as_ref()));
    let status = setting.status.clone().unwrap_or_default();
    let (Some(restore), Some(user_id), DeletionPolicy::Restore) = (
        status
            .restore_to
            .as_ref()
            .and_then(|r| r.user_mfa_authentication_settings.clone()),
        status.user_id.clone(),
        spec.deletion_policy,
    ) else {
        return Ok(Action::await_change());
    };
    let target = target(&setting, ctx).await?;
    let written = target
        .client
        .update_user_mfa_setting(&spec.directory_id, &user_id, &restore)
        .await;
    let restored = format!("user {user_id} set back to {restore}");
    ctx.finish_restore(
        setting.as_ref(),
        written,
        &spec.directory_id,
        Some(&user_id),
        restored,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::UserMfaAuthenticationSettings;

    fn spec(setting: UserMfaAuthenticationSettings, mode: ManagementPolicy) -> UserMfaSettingSpec {
        UserMfaSettingSpec {
            directory_id: "d-1".into(),
            user_id: Some("u-1".into()),
            user_name: None,
            user_mfa_authentication_settings: setting,
            region: "cn-shanghai".into(),
            endpoint: None,
            credentials_secret_ref: None,
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
            UserPlan {
                change: None,
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
            plan.change.unwrap().to_string(),
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
        assert!(plan.change.is_some());
        assert_eq!(plan.write, None);
    }

    #[test]
    fn effective_only_under_byuser() {
        assert!(effective(Some("Byuser"), "d-1").status);
        let enabled = effective(Some("Enabled"), "d-1");
        assert!(!enabled.status);
        assert_eq!(enabled.reason, "DirectorySettingOverrides");
        assert!(enabled.message.contains("is Enabled"));
        assert!(!effective(None, "d-1").status);
    }
}
