//! The pure planners of a UserMfaSetting: what differs from the user's setting and the write
//! that fixes it, and whether a per-user setting takes effect under the directory's setting.

use crate::api::{ManagementPolicy, Reason, UserMfaSettingSpec};
use crate::cloud::cloudsso::{UserMfaSettings, UserMfaUpdate};
use crate::controller::conditions::{DesiredCondition, EFFECTIVE};
use crate::controller::plan::{FieldChange, Plan, shown};

/// What differs between the spec and the user's setting, and the write that fixes it (for the
/// user `user_id`; None under Observe).
pub fn plan_user(
    spec: &UserMfaSettingSpec,
    user_id: &str,
    observed: &UserMfaSettings,
) -> Plan<UserMfaUpdate> {
    let desired = spec.user_mfa_authentication_settings.as_str();
    let observed = observed.user_mfa_authentication_settings.as_deref();
    let changes: Vec<FieldChange> = (observed != Some(desired))
        .then(|| FieldChange {
            field: "userMfaAuthenticationSettings",
            from: shown(observed),
            to: desired.into(),
        })
        .into_iter()
        .collect();
    let write =
        (!changes.is_empty() && spec.management_policy == ManagementPolicy::Enforce).then(|| {
            UserMfaUpdate {
                directory_id: spec.directory_id.clone(),
                user_id: user_id.to_string(),
                user_mfa_authentication_settings: desired.to_string(),
            }
        });
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{DeletionPolicy, UserMfaAuthenticationSettings};
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

    fn observed(setting: &str) -> UserMfaSettings {
        UserMfaSettings {
            user_mfa_authentication_settings: Some(setting.into()),
        }
    }

    #[test]
    fn enforce_writes_only_a_difference() {
        let enforce = spec(
            UserMfaAuthenticationSettings::Enabled,
            ManagementPolicy::Enforce,
        );
        assert_eq!(
            plan_user(&enforce, "u-1", &observed("Enabled")),
            Plan {
                changes: vec![],
                write: None
            }
        );
        let plan = plan_user(&enforce, "u-1", &observed("Disabled"));
        let write = plan.write.clone().unwrap();
        assert_eq!(
            (
                write.user_id.as_str(),
                write.user_mfa_authentication_settings.as_str()
            ),
            ("u-1", "Enabled")
        );
        assert_eq!(
            describe(&plan.changes),
            "userMfaAuthenticationSettings from Disabled to Enabled"
        );
    }

    #[test]
    fn observe_never_writes() {
        let observe = spec(
            UserMfaAuthenticationSettings::Disabled,
            ManagementPolicy::Observe,
        );
        let plan = plan_user(&observe, "u-1", &observed("Enabled"));
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
