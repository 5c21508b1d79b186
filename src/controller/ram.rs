//! RamUserMfaStatus: an observe-only report of a RAM user's MFA (IMS GetUserMFAInfo). Never writes.

use std::sync::Arc;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::conditions::{self, DesiredCondition, READY, SYNCED};
use super::context::{Context, key_of};
use super::error::ReconcileError;
use super::status::{apply_status, write_synced};
use crate::api::{CommonStatus, RamMfaDevice, RamUserMfaStatus, RamUserMfaStatusStatus};
use crate::cloud::Endpoint;
use crate::cloud::ims::UserMfaInfo;

/// The report a RAM user's MFA info makes.
pub fn report(info: &UserMfaInfo) -> (bool, Option<RamMfaDevice>) {
    let device = info.mfa_device.as_ref().map(|device| RamMfaDevice {
        serial_number: device.serial_number.clone(),
        device_type: device.device_type.clone(),
    });
    (info.is_mfa_enable, device)
}

pub async fn reconcile(
    resource: Arc<RamUserMfaStatus>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let namespace = resource.namespace().unwrap_or_default();
    let api: Api<RamUserMfaStatus> = Api::namespaced(ctx.client.clone(), &namespace);
    let spec = &resource.spec;
    let previous = resource.status.clone().unwrap_or_default();
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now());
    let principal = spec.user_principal_name.as_str();
    let outcome = async {
        let endpoint = Endpoint::resolve(spec.endpoint.as_deref(), || Ok(Endpoint::ims()))
            .map_err(|error| ReconcileError::InvalidSpec(format!("endpoint: {error}")))?;
        let source = ctx
            .cloud
            .source(
                &ctx.client,
                &namespace,
                spec.credentials_secret_ref.as_ref(),
            )
            .await?;
        match ctx
            .cloud
            .ims(endpoint, source)
            .get_user_mfa_info(principal)
            .await
        {
            Ok(info) => Ok(info),
            // RAM answers this when the user exists but has no device bound.
            Err(error) if error.code() == Some("EntityNotExist.User.MFADevice") => {
                Ok(UserMfaInfo::default())
            }
            Err(error)
                if error
                    .code()
                    .is_some_and(|code| code.starts_with("EntityNotExist.User")) =>
            {
                Err(ReconcileError::UserNotFound {
                    user: principal.to_string(),
                    directory_id: "RAM".into(),
                    detail: format!(": {error}"),
                })
            }
            Err(error) => Err(ReconcileError::from_cloud(error, "RAM", Some(principal))),
        }
    }
    .await;
    let (desired, result) = match outcome {
        Ok(info) => {
            let (enabled, device) = report(&info);
            let message = match &device {
                Some(device) => format!(
                    "{principal}: MFA enabled with {} device {}",
                    device.device_type, device.serial_number
                ),
                None if enabled => format!("{principal}: MFA enabled"),
                None => format!("{principal}: no MFA device bound"),
            };
            let conditions = [
                DesiredCondition::new(READY, true, "Observed", message),
                DesiredCondition::new(SYNCED, true, "Observed", "read from RAM (observe-only)"),
            ];
            (conditions, Ok((enabled, device)))
        }
        Err(error) => (conditions::failed(&error), Err(error)),
    };
    let mut status = RamUserMfaStatusStatus {
        common: CommonStatus {
            conditions: conditions::merge(
                &previous.common.conditions,
                &desired,
                resource.meta().generation,
                &now,
            ),
            observed_generation: resource.meta().generation,
            last_sync_time: previous.common.last_sync_time.clone(),
        },
        ..previous.clone()
    };
    match result {
        Ok((enabled, device)) => {
            ctx.failures.clear(&key_of(resource.as_ref()));
            status.mfa_enabled = Some(enabled);
            status.device = device;
            write_synced(
                &api,
                &resource.name_any(),
                &previous,
                status,
                ctx.settings.resync_interval,
            )
            .await?;
            Ok(Action::requeue(ctx.settings.jittered_resync()))
        }
        Err(error) => {
            if matches!(error, ReconcileError::UserNotFound { .. }) {
                status.mfa_enabled = None;
                status.device = None;
            }
            ctx.report_failure(resource.as_ref(), &previous.common.conditions, &error)
                .await;
            if status != previous {
                apply_status(&api, &resource.name_any(), &status).await?;
            }
            Err(error)
        }
    }
}
