//! `audit`: read a directory's MFA posture (or, with `--ram`, the RAM account's) straight from
//! the cloud (no cluster) and print it.

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::cloud::cloudsso::{CloudSsoClient, MfaDevice};
use crate::cloud::error::CloudError;
use crate::cloud::ims::{ImsClient, MissingLogin, RamUser, SecurityPreference};
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
    let header = ["USER", "USER ID", "MFA", "DEVICES", "DEVICE NAMES"];
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
    push_columns(&mut out, header, &rows);
    out
}

/// Appends `header` and `rows` (already escaped) as left-aligned columns two spaces apart.
fn push_columns<const N: usize>(out: &mut String, header: [&str; N], rows: &[[String; N]]) {
    let header = header.map(String::from);
    let widths: Vec<usize> = (0..N)
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
}

/// The RAM account's MFA posture: its security preference and every RAM user.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RamReport {
    pub security_preference: SecurityPreference,
    pub users: Vec<RamUserReport>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RamUserReport {
    pub user_principal_name: String,
    pub user_id: String,
    /// False when the user has no login profile (no console logon).
    pub console_logon: bool,
    /// The login profile's MFABindRequired; absent without console logon.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mfa_bind_required: Option<bool>,
    /// Whether every console logon of the user asks for MFA: the account's `mandatory`, or
    /// the user's own MFABindRequired while the account is `independent` or `adaptive`.
    pub mfa_required_at_logon: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<RamDeviceReport>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RamDeviceReport {
    pub serial_number: String,
    #[serde(rename = "type")]
    pub device_type: String,
}

/// RAM users read at once; the client's rate limit still applies.
const CONCURRENT_RAM_USERS: usize = 8;

/// GetSecurityPreference, ListUsers, then GetLoginProfile and GetUserMFAInfo per user; sorted
/// by logon name.
pub async fn collect_ram(client: &ImsClient) -> Result<RamReport, CloudError> {
    let security_preference = client.get_security_preference().await?;
    let mandatory = security_preference.mfa_operation_for_login.as_deref() == Some("mandatory");
    let users = client.list_users().await?;
    let mut users: Vec<RamUserReport> = futures::stream::iter(users)
        .map(|user| collect_ram_user(client, user, mandatory))
        .buffer_unordered(CONCURRENT_RAM_USERS)
        .try_collect()
        .await?;
    users.sort_by(|a, b| a.user_principal_name.cmp(&b.user_principal_name));
    Ok(RamReport {
        security_preference,
        users,
    })
}

async fn collect_ram_user(
    client: &ImsClient,
    user: RamUser,
    mandatory: bool,
) -> Result<RamUserReport, CloudError> {
    let principal = user.user_principal_name.as_str();
    let (profile, mfa) = tokio::join!(
        client.get_login_profile(principal),
        client.get_user_mfa_info(principal)
    );
    let profile = match profile {
        Ok(profile) => Some(profile),
        Err(error) if MissingLogin::of(&error) == Some(MissingLogin::NoLoginProfile) => None,
        Err(error) => return Err(error),
    };
    let mfa_bind_required = profile.as_ref().map(|p| p.mfa_bind_required);
    Ok(RamUserReport {
        console_logon: profile.is_some(),
        mfa_required_at_logon: profile.is_some() && (mandatory || mfa_bind_required == Some(true)),
        mfa_bind_required,
        device: mfa?.mfa_device.map(|device| RamDeviceReport {
            serial_number: device.serial_number,
            device_type: device.device_type,
        }),
        user_id: user.user_id,
        user_principal_name: user.user_principal_name,
    })
}

/// What the MFA AT LOGON column says of a user.
fn logon_cell(user: &RamUserReport, preference: &SecurityPreference) -> &'static str {
    let operation = preference.mfa_operation_for_login.as_deref();
    match (user.console_logon, user.mfa_bind_required, operation) {
        (false, _, _) => "no console logon",
        (true, _, Some("mandatory")) => "required (account)",
        (true, Some(true), _) => "required",
        (true, _, Some("adaptive")) => "risky logons only",
        (true, _, _) => "not required",
    }
}

/// The RAM report for people: the account line, then one row per RAM user, every cloud
/// string escaped for the terminal.
pub fn render_ram_table(report: &RamReport) -> String {
    let preference = &report.security_preference;
    let text = |value: &Option<String>| escape_for_terminal(value.as_deref().unwrap_or("-"));
    let flag = |value: Option<bool>| match value {
        Some(true) => "yes",
        Some(false) => "no",
        None => "-",
    };
    let mut out = format!(
        "RAM account: MFA at logon {}, risky logons: {}, MFA remembered 7 days: {}, users manage MFA devices: {}\n{} RAM users\n\n",
        text(&preference.mfa_operation_for_login),
        text(&preference.operation_for_risk_login),
        flag(preference.enable_save_mfa_ticket),
        flag(preference.allow_user_to_manage_mfa_devices),
        report.users.len(),
    );
    let header = ["USER", "USER ID", "MFA AT LOGON", "DEVICE"];
    let rows: Vec<[String; 4]> = report
        .users
        .iter()
        .map(|user| {
            let device = user.device.as_ref().map_or_else(
                || "-".to_string(),
                |d| format!("{} {}", d.device_type, d.serial_number),
            );
            [
                user.user_principal_name.clone(),
                user.user_id.clone(),
                logon_cell(user, preference).to_string(),
                device,
            ]
            .map(|cell| escape_for_terminal(&cell))
        })
        .collect();
    push_columns(&mut out, header, &rows);
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
    fn the_ram_table_says_who_must_use_mfa_at_logon() {
        let user = |name: &str, console: bool, bind: Option<bool>| RamUserReport {
            user_principal_name: format!("{name}@x.onaliyun.com"),
            user_id: "2000000000000001".into(),
            console_logon: console,
            mfa_bind_required: bind,
            mfa_required_at_logon: false,
            device: None,
        };
        let mut report = RamReport {
            security_preference: SecurityPreference {
                mfa_operation_for_login: Some("independent".into()),
                operation_for_risk_login: Some("autonomous".into()),
                enable_save_mfa_ticket: Some(false),
                allow_user_to_manage_mfa_devices: Some(true),
            },
            users: vec![
                user("ann", true, Some(true)),
                user("ben", true, Some(false)),
                user("cid", false, None),
            ],
        };
        report.users[0].device = Some(RamDeviceReport {
            serial_number: "acs:ram::1:mfa/ann\u{1b}".into(),
            device_type: "VMFA".into(),
        });
        let table = render_ram_table(&report);
        assert!(
            table.starts_with(
                "RAM account: MFA at logon independent, risky logons: autonomous, MFA remembered 7 days: no, users manage MFA devices: yes\n3 RAM users"
            ),
            "{table}"
        );
        assert!(
            table.contains("required          VMFA acs:ram::1:mfa/ann\\u{1b}"),
            "{table}"
        );
        assert!(table.contains("not required      -"), "{table}");
        assert!(table.contains("no console logon  -"), "{table}");
        report.security_preference.mfa_operation_for_login = Some("mandatory".into());
        let table = render_ram_table(&report);
        assert!(
            table.contains("ben@x.onaliyun.com  2000000000000001  required (account)"),
            "{table}"
        );
        assert!(table.contains("no console logon"), "{table}");
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
