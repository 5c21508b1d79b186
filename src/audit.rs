//! `audit`: read a directory's MFA posture straight from the cloud (no cluster) and print it.

use serde::Serialize;

use crate::cloud::cloudsso::{CloudSsoClient, MfaDevice};
use crate::cloud::error::CloudError;
use crate::cloud::text::escape_for_terminal;

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryReport {
    pub directory_id: String,
    pub mfa_authentication_settings: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_for_risk_login: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_verification_types: Option<Vec<String>>,
    pub users: Vec<UserReport>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UserReport {
    pub user_name: String,
    pub user_id: String,
    pub user_mfa_authentication_settings: Option<String>,
    pub bound_device_count: usize,
    pub devices: Vec<DeviceReport>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeviceReport {
    pub device_id: String,
    pub device_name: String,
    pub device_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective_time: Option<String>,
}

impl From<MfaDevice> for DeviceReport {
    fn from(device: MfaDevice) -> Self {
        Self {
            device_id: device.device_id,
            device_name: device.device_name,
            device_type: device.device_type,
            effective_time: device.effective_time,
        }
    }
}

pub async fn collect(
    client: &CloudSsoClient,
    directory_id: &str,
) -> Result<DirectoryReport, CloudError> {
    let setting = client.get_mfa_setting_info(directory_id).await?;
    let users = collect_users(client, directory_id).await?;
    Ok(DirectoryReport {
        directory_id: directory_id.to_string(),
        mfa_authentication_settings: setting.mfa_authentication_advance_settings,
        operation_for_risk_login: setting.operation_for_risk_login,
        allowed_verification_types: setting.allowed_verification_types,
        users,
    })
}

/// Every user of the directory with their MFA setting and devices, sorted by name.
pub async fn collect_users(
    client: &CloudSsoClient,
    directory_id: &str,
) -> Result<Vec<UserReport>, CloudError> {
    let users = client.list_users_with_mfa(directory_id).await?;
    Ok(users
        .into_iter()
        .map(|read| UserReport {
            user_name: read.user.user_name,
            user_id: read.user.user_id,
            user_mfa_authentication_settings: read.settings.user_mfa_authentication_settings,
            bound_device_count: read.devices.len(),
            devices: read.devices.into_iter().map(DeviceReport::from).collect(),
        })
        .collect())
}

/// The human-readable report: a directory line, then one row per user. Every cloud string is
/// escaped (names are the users' own choice), so no terminal control byte reaches the screen.
pub fn render_table(report: &DirectoryReport) -> String {
    let dash = || "-".to_string();
    let mut out = format!(
        "Directory {}: MFA {}",
        escape_for_terminal(&report.directory_id),
        escape_for_terminal(
            &report
                .mfa_authentication_settings
                .clone()
                .unwrap_or_else(dash)
        )
    );
    if let Some(operation) = &report.operation_for_risk_login {
        out.push_str(&format!(
            ", risky logons: {}",
            escape_for_terminal(operation)
        ));
    }
    if let Some(types) = &report.allowed_verification_types {
        out.push_str(&format!(
            ", verification types: {}",
            escape_for_terminal(&types.join(","))
        ));
    }
    out.push_str(&format!("\n{} users\n\n", report.users.len()));
    let header = ["USER", "USER ID", "MFA", "DEVICES", "DEVICE NAMES"].map(String::from);
    let rows: Vec<[String; 5]> = report
        .users
        .iter()
        .map(|user| {
            let names: Vec<&str> = user
                .devices
                .iter()
                .map(|d| d.device_name.as_str())
                .collect();
            [
                user.user_name.clone(),
                user.user_id.clone(),
                user.user_mfa_authentication_settings
                    .clone()
                    .unwrap_or_else(dash),
                user.bound_device_count.to_string(),
                if names.is_empty() {
                    dash()
                } else {
                    names.join(",")
                },
            ]
            .map(|cell| escape_for_terminal(&cell))
        })
        .collect();
    let widths: Vec<usize> = (0..5)
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .chain([header[column].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in std::iter::once(&header).chain(rows.iter()) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lists_every_user_with_counts() {
        let report = DirectoryReport {
            directory_id: "d-1".into(),
            mfa_authentication_settings: Some("Byuser".into()),
            operation_for_risk_login: Some("Autonomous".into()),
            allowed_verification_types: None,
            users: vec![UserReport {
                user_name: "alice".into(),
                user_id: "u-1".into(),
                user_mfa_authentication_settings: Some("Enabled".into()),
                bound_device_count: 1,
                devices: vec![DeviceReport {
                    device_id: "mfa-1".into(),
                    device_name: "Alice-MFA1".into(),
                    device_type: "TOTP".into(),
                    effective_time: None,
                }],
            }],
        };
        let table = render_table(&report);
        assert!(table.starts_with("Directory d-1: MFA Byuser, risky logons: Autonomous\n1 users"));
        assert!(
            table.contains("alice  u-1      Enabled  1        Alice-MFA1"),
            "{table}"
        );
    }

    #[test]
    fn table_escapes_terminal_control_characters() {
        let report = DirectoryReport {
            directory_id: "d-1".into(),
            mfa_authentication_settings: Some("Byuser\u{7}".into()),
            operation_for_risk_login: None,
            allowed_verification_types: Some(vec!["TOTP\r".into()]),
            users: vec![UserReport {
                user_name: "mallory\u{1b}]0;owned\u{7}".into(),
                user_id: "u-1".into(),
                user_mfa_authentication_settings: None,
                bound_device_count: 1,
                devices: vec![DeviceReport {
                    device_id: "mfa-1".into(),
                    device_name: "\u{1b}[31mred\r\u{9b}".into(),
                    device_type: "TOTP".into(),
                    effective_time: None,
                }],
            }],
        };
        let table = render_table(&report);
        assert!(
            !table.chars().any(|c| c.is_control() && c != '\n'),
            "{table:?}"
        );
        assert!(table.contains("\\u{1b}[31mred\\u{d}\\u{9b}"), "{table}");
        assert!(table.contains("mallory\\u{1b}]0;owned\\u{7}"), "{table}");
    }
}
