//! RamUserMfaStatus: an observe-only report of a RAM user's MFA (IMS GetUserMFAInfo). Never
//! writes, so it holds no finalizer and has no plan.

use crate::api::{RamMfaDevice, RamUserMfaStatus, Reason};
use crate::cloud::ims::UserMfaInfo;
use crate::controller::budget::Calls;
use crate::controller::conditions::{DesiredCondition, READY, SYNCED};
use crate::controller::context::Context;
use crate::controller::error::ReconcileError;
use crate::controller::reconciler::Kind;
use crate::controller::status::StatusWriter;
use crate::controller::tenancy::Identity;

/// The report a RAM user's MFA info makes.
pub fn report(info: &UserMfaInfo) -> (bool, Option<RamMfaDevice>) {
    let device = info.mfa_device.as_ref().map(|device| RamMfaDevice {
        serial_number: device.serial_number.clone(),
        device_type: device.device_type.clone(),
    });
    (info.is_mfa_enable, device)
}

/// What Ready says about the user's MFA.
fn message(principal: &str, enabled: bool, device: Option<&RamMfaDevice>) -> String {
    match device {
        Some(device) => format!(
            "{principal}: MFA enabled with {} device {}",
            device.device_type, device.serial_number
        ),
        None if enabled => format!("{principal}: MFA enabled"),
        None => format!("{principal}: no MFA device bound"),
    }
}

impl RamUserMfaStatus {
    /// GetUserMFAInfo for the user, with RAM's "no device" answer read as no device.
    async fn read(&self, ctx: &Context) -> Result<(UserMfaInfo, Identity), ReconcileError> {
        let principal = self.spec.user_principal_name.as_str();
        let (client, identity) = ctx.ims_of(self).await?;
        match client.get_user_mfa_info(principal).await {
            Ok(info) => Ok((info, identity)),
            // RAM answers this when the user exists but has no device bound.
            Err(error) if error.is_no_mfa_device() => Ok((UserMfaInfo::default(), identity)),
            Err(error) if error.is_entity_gone() => Err(ReconcileError::UserNotFound {
                user: principal.to_string(),
                directory_id: "RAM".into(),
                detail: format!(": {error}"),
            }),
            Err(error) => Err(ReconcileError::from_cloud(error, "RAM", Some(principal))),
        }
    }
}

impl Kind for RamUserMfaStatus {
    type Synced = (bool, Option<RamMfaDevice>, Identity);
    const FINALIZES: bool = false;

    fn calls(&self) -> Calls {
        Calls::Single
    }

    async fn sync(
        &self,
        ctx: &Context,
        _status: &mut Self::Status,
        _writer: &StatusWriter<Self>,
    ) -> Result<(Vec<DesiredCondition>, Self::Synced), ReconcileError> {
        let (info, identity) = self.read(ctx).await?;
        let (enabled, device) = report(&info);
        let principal = self.spec.user_principal_name.as_str();
        let conditions = vec![
            DesiredCondition::new(
                READY,
                true,
                Reason::Observed,
                message(principal, enabled, device.as_ref()),
            ),
            DesiredCondition::new(
                SYNCED,
                true,
                Reason::Observed,
                "read from RAM (observe-only)",
            ),
        ];
        Ok((conditions, (enabled, device, identity)))
    }

    fn project(&self, synced: Self::Synced, status: &mut Self::Status) {
        let (enabled, device, identity) = synced;
        identity.record(&mut status.common);
        status.mfa_enabled = Some(enabled);
        status.device = device;
    }

    fn forget(status: &mut Self::Status, error: &ReconcileError) {
        if matches!(error, ReconcileError::UserNotFound { .. }) {
            status.mfa_enabled = None;
            status.device = None;
        }
    }
}
