//! The emulator's seed file (and the shape of `/_emulator/state`): JSON, strictly validated.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

/// Most MFA devices CloudSSO lets one user bind.
pub const MAX_DEVICES_PER_USER: usize = 2;

const DIRECTORY_SETTINGS: [&str; 4] = ["Enabled", "Byuser", "Disabled", "OnlyRiskyLogin"];
const RISK_LOGIN_OPERATIONS: [&str; 2] = ["Autonomous", "EnforceVerify"];
const USER_SETTINGS: [&str; 2] = ["Enabled", "Disabled"];
pub const DEVICE_TYPES: [&str; 3] = ["TOTP", "CrossPlatformPasskey", "PlatformPasskey"];
const RAM_DEVICE_TYPES: [&str; 2] = ["VMFA", "U2F"];

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Seed {
    #[serde(default)]
    pub access_keys: Vec<SeedAccessKey>,
    #[serde(default)]
    pub directories: Vec<SeedDirectory>,
    #[serde(default)]
    pub ram_users: Vec<SeedRamUser>,
    /// The RAM account's security preference (IMS Get/SetSecurityPreference); the documented
    /// defaults when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ram_security_preference: Option<SeedRamSecurityPreference>,
    /// Whether the account's own (root) logon has an MFA device (IMS GetAccountMFAInfo).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub account_mfa_enabled: bool,
}

/// The account a key without `accountId` belongs to: one for all of them, so a seed that names no
/// account behaves as a single account.
pub const DEFAULT_ACCOUNT_ID: &str = "1000000000000001";

#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedAccessKey {
    pub access_key_id: String,
    pub access_key_secret: String,
    /// The Alibaba Cloud account (digits) the key belongs to, as STS GetCallerIdentity tells;
    /// `DEFAULT_ACCOUNT_ID` when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// The RAM user the key is of; left out, the key is the account's own (identity `Account`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
}

impl SeedAccessKey {
    pub fn account_id(&self) -> &str {
        self.account_id.as_deref().unwrap_or(DEFAULT_ACCOUNT_ID)
    }
}

impl std::fmt::Debug for SeedAccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SeedAccessKey({}, ***)", self.access_key_id)
    }
}

/// An Alibaba Cloud account id: digits only (the real ones have 16), at most 32.
pub fn valid_account_id(value: &str) -> bool {
    (1..=32).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_digit())
}

/// A RAM user name as RAM allows one: 1 to 64 letters, digits, `.`, `_` or `-`.
fn valid_ram_user_name(value: &str) -> bool {
    (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedDirectory {
    pub directory_id: String,
    /// Shown by GetDirectory; empty when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory_name: Option<String>,
    pub mfa_authentication_settings: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_for_risk_login: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_verification_types: Option<Vec<String>>,
    #[serde(default)]
    pub users: Vec<SeedUser>,
    /// CloudSSO groups of the directory (ListGroups, GetGroup, ListGroupMembers,
    /// ListJoinedGroupsForUser).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<SeedGroup>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedGroup {
    pub group_id: String,
    pub group_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// User ids of the directory, in the order they joined.
    #[serde(default)]
    pub members: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedUser {
    pub user_id: String,
    pub user_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    pub user_mfa_authentication_settings: String,
    #[serde(default)]
    pub mfa_devices: Vec<SeedDevice>,
    /// The identity of a user synchronized by SCIM from an external IdP (GetUserId looks it up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<SeedExternalId>,
    /// Shown by GetUser and written by UpdateUser; empty when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedExternalId {
    pub id: String,
    pub issuer: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedDevice {
    pub device_id: String,
    pub device_name: String,
    pub device_type: String,
    pub effective_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_use_time: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedRamUser {
    pub user_principal_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa_device: Option<SeedRamDevice>,
    /// The user's console logon (IMS Get/UpdateLoginProfile); absent: no console logon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_profile: Option<SeedLoginProfile>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedLoginProfile {
    #[serde(default)]
    pub mfa_bind_required: bool,
    #[serde(default)]
    pub password_reset_required: bool,
    /// `Active` (console logon on, the default) or `Inactive`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// The RAM account's security preference. The four MFA fields are always held (their documented
/// defaults when left out); the others only once a seed or SetSecurityPreference names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedRamSecurityPreference {
    #[serde(default = "default_mfa_operation_for_login")]
    pub mfa_operation_for_login: String,
    #[serde(default = "default_ram_operation_for_risk_login")]
    pub operation_for_risk_login: String,
    #[serde(default)]
    pub enable_save_mfa_ticket: bool,
    #[serde(default = "yes")]
    pub allow_user_to_manage_mfa_devices: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_user_to_change_password: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_user_to_login_with_passkey: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_user_to_manage_access_keys: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_user_to_manage_personal_ding_talk: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_user_to_manage_service_credentials: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_session_duration: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_network_masks: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_idle_days_for_access_keys: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_idle_days_for_users: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_types: Option<Vec<String>>,
}

fn default_mfa_operation_for_login() -> String {
    "independent".into()
}

fn default_ram_operation_for_risk_login() -> String {
    "autonomous".into()
}

fn yes() -> bool {
    true
}

impl Default for SeedRamSecurityPreference {
    fn default() -> Self {
        Self {
            mfa_operation_for_login: default_mfa_operation_for_login(),
            operation_for_risk_login: default_ram_operation_for_risk_login(),
            enable_save_mfa_ticket: false,
            allow_user_to_manage_mfa_devices: true,
            allow_user_to_change_password: None,
            allow_user_to_login_with_passkey: None,
            allow_user_to_manage_access_keys: None,
            allow_user_to_manage_personal_ding_talk: None,
            allow_user_to_manage_service_credentials: None,
            login_session_duration: None,
            login_network_masks: None,
            max_idle_days_for_access_keys: None,
            max_idle_days_for_users: None,
            verification_types: None,
        }
    }
}

/// IMS SetSecurityPreference's MFAOperationForLogin.
pub const MFA_OPERATIONS_FOR_LOGIN: [&str; 3] = ["mandatory", "independent", "adaptive"];
/// IMS SetSecurityPreference's OperationForRiskLogin (lower camel case, unlike CloudSSO's).
pub const RAM_RISK_LOGIN_OPERATIONS: [&str; 2] = ["autonomous", "enforceVerify"];
/// IMS LoginProfile Status.
pub const LOGIN_PROFILE_STATUSES: [&str; 2] = ["Active", "Inactive"];
/// Valid LoginSessionDuration hours, and the idle periods MaxIdleDays* accept.
pub const LOGIN_SESSION_HOURS: std::ops::RangeInclusive<u32> = 1..=24;
pub const MAX_IDLE_DAYS: [u32; 4] = [90, 180, 365, 730];

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedRamDevice {
    pub serial_number: String,
    #[serde(rename = "type")]
    pub device_type: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("cannot read seed file {path}: {detail}")]
    Read { path: String, detail: String },
    #[error("seed {origin}: invalid JSON: {detail}")]
    Json { origin: String, detail: String },
    #[error("seed {origin}: {location}: {detail}")]
    Invalid {
        origin: String,
        location: String,
        detail: String,
    },
}

fn one_of(value: &str, allowed: &[&str], what: &str) -> Result<(), String> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "{what} '{value}' is not one of {}",
            allowed.join(", ")
        ))
    }
}

fn prefixed_id(value: &str, prefix: &str, what: &str) -> Result<(), String> {
    let valid = value.strip_prefix(prefix).is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{what} '{value}' must be '{prefix}' followed by lowercase letters and digits"
        ))
    }
}

fn rfc3339(value: &str, what: &str) -> Result<(), String> {
    value
        .parse::<jiff::Timestamp>()
        .map(|_| ())
        .map_err(|error| format!("{what} '{value}' is not an RFC 3339 time: {error}"))
}

impl Seed {
    /// Parses and validates; `origin` names the source in messages (a path, or "PUT /_emulator/state").
    pub fn parse(text: &str, origin: &str) -> Result<Self, SeedError> {
        let seed: Seed = serde_json::from_str(text).map_err(|error| SeedError::Json {
            origin: origin.to_string(),
            detail: error.to_string(),
        })?;
        seed.validate()
            .map_err(|(location, detail)| SeedError::Invalid {
                origin: origin.to_string(),
                location,
                detail,
            })?;
        Ok(seed)
    }

    pub fn load(path: &str) -> Result<Self, SeedError> {
        let text = std::fs::read_to_string(path).map_err(|error| SeedError::Read {
            path: path.to_string(),
            detail: error.to_string(),
        })?;
        Self::parse(&text, path)
    }

    /// Checks every value; the error names where (e.g. `directories[0].users[1]`) and what.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let mut key_ids = HashSet::new();
        for (index, key) in self.access_keys.iter().enumerate() {
            let at = format!("accessKeys[{index}]");
            if key.access_key_id.trim().is_empty() || key.access_key_secret.is_empty() {
                return Err((
                    at,
                    "accessKeyId and accessKeySecret must not be empty".into(),
                ));
            }
            if !key_ids.insert(&key.access_key_id) {
                return Err((at, format!("duplicate accessKeyId '{}'", key.access_key_id)));
            }
            if let Some(account_id) = &key.account_id
                && !valid_account_id(account_id)
            {
                return Err((
                    at,
                    format!(
                        "accountId '{account_id}' must be 1 to 32 digits, e.g. {DEFAULT_ACCOUNT_ID}"
                    ),
                ));
            }
            if let Some(user_name) = &key.user_name
                && !valid_ram_user_name(user_name)
            {
                return Err((
                    at,
                    format!(
                        "userName '{user_name}' must be 1 to 64 letters, digits, '.', '_' or '-'"
                    ),
                ));
            }
        }
        let mut directory_ids = HashSet::new();
        let mut user_ids = HashSet::new();
        let mut device_ids = HashSet::new();
        let mut group_ids = HashSet::new();
        for (d, directory) in self.directories.iter().enumerate() {
            let at = format!("directories[{d}]");
            prefixed_id(&directory.directory_id, "d-", "directoryId")
                .map_err(|e| (at.clone(), e))?;
            if !directory_ids.insert(&directory.directory_id) {
                return Err((
                    at,
                    format!("duplicate directoryId '{}'", directory.directory_id),
                ));
            }
            one_of(
                &directory.mfa_authentication_settings,
                &DIRECTORY_SETTINGS,
                "mfaAuthenticationSettings",
            )
            .map_err(|e| (at.clone(), e))?;
            if let Some(operation) = &directory.operation_for_risk_login {
                one_of(operation, &RISK_LOGIN_OPERATIONS, "operationForRiskLogin")
                    .map_err(|e| (at.clone(), e))?;
            }
            let mut user_names = HashSet::new();
            let mut external_ids = HashSet::new();
            for (u, user) in directory.users.iter().enumerate() {
                let at = format!("{at}.users[{u}]");
                prefixed_id(&user.user_id, "u-", "userId").map_err(|e| (at.clone(), e))?;
                if !user_ids.insert(&user.user_id) {
                    return Err((at, format!("duplicate userId '{}'", user.user_id)));
                }
                if user.user_name.trim().is_empty() {
                    return Err((at, "userName must not be empty".into()));
                }
                if !user_names.insert(user.user_name.to_ascii_lowercase()) {
                    return Err((
                        at,
                        format!("duplicate userName '{}' in the directory", user.user_name),
                    ));
                }
                one_of(
                    &user.user_mfa_authentication_settings,
                    &USER_SETTINGS,
                    "userMfaAuthenticationSettings",
                )
                .map_err(|e| (at.clone(), e))?;
                if let Some(external) = &user.external_id {
                    if external.id.trim().is_empty() || external.issuer.trim().is_empty() {
                        return Err((
                            at,
                            "externalId.id and externalId.issuer must not be empty".into(),
                        ));
                    }
                    if !external_ids.insert((&external.issuer, &external.id)) {
                        return Err((
                            at,
                            format!(
                                "duplicate externalId '{}' of issuer '{}' in the directory",
                                external.id, external.issuer
                            ),
                        ));
                    }
                }
                if user.mfa_devices.len() > MAX_DEVICES_PER_USER {
                    return Err((
                        at,
                        format!(
                            "{} MFA devices, but a user can bind at most {MAX_DEVICES_PER_USER}",
                            user.mfa_devices.len()
                        ),
                    ));
                }
                for (m, device) in user.mfa_devices.iter().enumerate() {
                    let at = format!("{at}.mfaDevices[{m}]");
                    if device.device_id.trim().is_empty() {
                        return Err((at, "deviceId must not be empty".into()));
                    }
                    if !device_ids.insert(&device.device_id) {
                        return Err((at, format!("duplicate deviceId '{}'", device.device_id)));
                    }
                    one_of(&device.device_type, &DEVICE_TYPES, "deviceType")
                        .map_err(|e| (at.clone(), e))?;
                    rfc3339(&device.effective_time, "effectiveTime")
                        .map_err(|e| (at.clone(), e))?;
                    if let Some(last_use) = &device.last_use_time {
                        rfc3339(last_use, "lastUseTime").map_err(|e| (at.clone(), e))?;
                    }
                }
            }
            validate_groups(directory, &at, &mut group_ids)?;
        }
        let mut principals = HashSet::new();
        for (r, ram_user) in self.ram_users.iter().enumerate() {
            let at = format!("ramUsers[{r}]");
            if !ram_user.user_principal_name.contains('@') {
                return Err((
                    at,
                    format!(
                        "userPrincipalName '{}' must look like name@domain",
                        ram_user.user_principal_name
                    ),
                ));
            }
            if !principals.insert(ram_user.user_principal_name.to_ascii_lowercase()) {
                return Err((
                    at,
                    format!(
                        "duplicate userPrincipalName '{}'",
                        ram_user.user_principal_name
                    ),
                ));
            }
            if let Some(device) = &ram_user.mfa_device {
                if device.serial_number.trim().is_empty() {
                    return Err((at, "mfaDevice.serialNumber must not be empty".into()));
                }
                one_of(&device.device_type, &RAM_DEVICE_TYPES, "mfaDevice.type")
                    .map_err(|e| (at.clone(), e))?;
            }
            if let Some(status) = ram_user
                .login_profile
                .as_ref()
                .and_then(|profile| profile.status.as_deref())
            {
                one_of(status, &LOGIN_PROFILE_STATUSES, "loginProfile.status")
                    .map_err(|e| (at.clone(), e))?;
            }
        }
        if let Some(preference) = &self.ram_security_preference {
            preference
                .validate()
                .map_err(|e| ("ramSecurityPreference".to_string(), e))?;
        }
        Ok(())
    }

    /// The account's security preference: the seeded one, or the documented defaults.
    pub fn security_preference(&self) -> SeedRamSecurityPreference {
        self.ram_security_preference.clone().unwrap_or_default()
    }
}

impl SeedRamSecurityPreference {
    /// Checks the values IMS SetSecurityPreference would refuse.
    pub fn validate(&self) -> Result<(), String> {
        one_of(
            &self.mfa_operation_for_login,
            &MFA_OPERATIONS_FOR_LOGIN,
            "mfaOperationForLogin",
        )?;
        one_of(
            &self.operation_for_risk_login,
            &RAM_RISK_LOGIN_OPERATIONS,
            "operationForRiskLogin",
        )?;
        if let Some(hours) = self.login_session_duration
            && !LOGIN_SESSION_HOURS.contains(&hours)
        {
            return Err(format!(
                "loginSessionDuration {hours} is not from 1 to 24 (hours)"
            ));
        }
        for (name, days) in [
            (
                "maxIdleDaysForAccessKeys",
                self.max_idle_days_for_access_keys,
            ),
            ("maxIdleDaysForUsers", self.max_idle_days_for_users),
        ] {
            if let Some(days) = days
                && !MAX_IDLE_DAYS.contains(&days)
            {
                return Err(format!("{name} {days} is not one of 90, 180, 365, 730"));
            }
        }
        Ok(())
    }
}

/// A directory's groups: `g-` ids unique across the seed, names unique in the directory (case
/// aside), members that are users of the same directory, each once.
fn validate_groups<'a>(
    directory: &'a SeedDirectory,
    at: &str,
    group_ids: &mut HashSet<&'a str>,
) -> Result<(), (String, String)> {
    let user_ids: HashSet<&str> = directory.users.iter().map(|u| u.user_id.as_str()).collect();
    let mut names = HashSet::new();
    for (g, group) in directory.groups.iter().enumerate() {
        let at = format!("{at}.groups[{g}]");
        prefixed_id(&group.group_id, "g-", "groupId").map_err(|e| (at.clone(), e))?;
        if !group_ids.insert(&group.group_id) {
            return Err((at, format!("duplicate groupId '{}'", group.group_id)));
        }
        if group.group_name.trim().is_empty() {
            return Err((at, "groupName must not be empty".into()));
        }
        if !names.insert(group.group_name.to_ascii_lowercase()) {
            return Err((
                at,
                format!(
                    "duplicate groupName '{}' in the directory",
                    group.group_name
                ),
            ));
        }
        let mut members = HashSet::new();
        for member in &group.members {
            if !user_ids.contains(member.as_str()) {
                return Err((
                    at,
                    format!("member '{member}' is not a user of the directory"),
                ));
            }
            if !members.insert(member) {
                return Err((at, format!("member '{member}' is listed twice")));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{
      "accessKeys": [{"accessKeyId": "AK1", "accessKeySecret": "S1"}],
      "directories": [{"directoryId": "d-00fc2p61abcd", "mfaAuthenticationSettings": "Byuser",
        "operationForRiskLogin": "Autonomous",
        "users": [{"userId": "u-00q8wbq42wiltcrk0001", "userName": "alice",
          "userMfaAuthenticationSettings": "Enabled",
          "mfaDevices": [{"deviceId": "mfa-1", "deviceName": "Alice-MFA1", "deviceType": "TOTP",
                          "effectiveTime": "2021-10-29T09:14:06Z"}]}]}],
      "ramUsers": [{"userPrincipalName": "bob@example.onaliyun.com",
                    "mfaDevice": {"serialNumber": "acs:ram::1234:mfa/bob", "type": "VMFA"}}]
    }"#;

    #[test]
    fn the_contract_example_parses() {
        let seed = Seed::parse(GOOD, "test").unwrap();
        assert_eq!(seed.directories[0].users[0].mfa_devices.len(), 1);
    }

    #[test]
    fn bad_seeds_say_where_and_what() {
        let cases = [
            (
                GOOD.replace("\"Byuser\"", "\"Sometimes\""),
                "directories[0]",
                "Sometimes",
            ),
            (
                GOOD.replace("\"ramUsers\"", "\"ramUsrs\""),
                "unknown field",
                "ramUsrs",
            ),
            (
                GOOD.replace("d-00fc2p61abcd", "x-1"),
                "directories[0]",
                "directoryId",
            ),
            (
                GOOD.replace("2021-10-29T09:14:06Z", "yesterday"),
                "mfaDevices[0]",
                "effectiveTime",
            ),
            (
                GOOD.replace("\"TOTP\"", "\"SMS\""),
                "mfaDevices[0]",
                "deviceType",
            ),
            (
                GOOD.replace(
                    "\"userName\": \"alice\",",
                    "\"userName\": \"alice\", \"externalId\": {\"id\": \"\", \"issuer\": \"idp\"},",
                ),
                "users[0]",
                "externalId.id",
            ),
            (
                GOOD.replace(
                    "\"accessKeys\": [",
                    "\"accessKeys\": [{\"accessKeyId\": \"AK1\", \"accessKeySecret\": \"x\"},",
                ),
                "accessKeys[1]",
                "duplicate",
            ),
            (
                GOOD.replace("\"S1\"}", "\"S1\", \"accountId\": \"12ab\"}"),
                "accessKeys[0]",
                "accountId '12ab'",
            ),
            (
                GOOD.replace("\"S1\"}", "\"S1\", \"accountId\": \"\"}"),
                "accessKeys[0]",
                "accountId ''",
            ),
            (
                GOOD.replace("\"S1\"}", "\"S1\", \"accountId\": 1234}"),
                "invalid JSON",
                "expected a string",
            ),
            (
                GOOD.replace("\"S1\"}", "\"S1\", \"userName\": \"a b\"}"),
                "accessKeys[0]",
                "userName 'a b'",
            ),
        ];
        for (text, location, detail) in cases {
            let error = Seed::parse(&text, "seed.json").unwrap_err().to_string();
            assert!(
                error.contains(location) && error.contains(detail),
                "{error}"
            );
        }
    }

    #[test]
    fn keys_belong_to_their_seeded_account_or_to_the_default_one() {
        let text = GOOD.replace(
            "\"accessKeys\": [",
            "\"accessKeys\": [{\"accessKeyId\": \"AK2\", \"accessKeySecret\": \"S2\", \"accountId\": \"5012345678901234\"},",
        );
        let seed = Seed::parse(&text, "seed.json").unwrap();
        let accounts: Vec<&str> = seed.access_keys.iter().map(|k| k.account_id()).collect();
        assert_eq!(accounts, ["5012345678901234", DEFAULT_ACCOUNT_ID]);
        // A key without an account id keeps none in the state it serves back.
        let state = serde_json::to_value(&seed).unwrap();
        assert!(state["accessKeys"][1].get("accountId").is_none(), "{state}");
        assert_eq!(state["accessKeys"][0]["accountId"], "5012345678901234");
    }

    #[test]
    fn groups_login_profiles_and_the_preference_are_checked() {
        let with = |directory_extra: &str, ram_extra: &str, top_extra: &str| {
            GOOD.replace(
                "\"operationForRiskLogin\": \"Autonomous\",",
                &format!("\"operationForRiskLogin\": \"Autonomous\", {directory_extra}"),
            )
            .replace(
                "\"type\": \"VMFA\"}",
                &format!("\"type\": \"VMFA\"}}{ram_extra}"),
            )
            .replacen("{", &format!("{{{top_extra}"), 1)
        };
        let good = with(
            r#""groups": [{"groupId": "g-eng1", "groupName": "eng", "members": ["u-00q8wbq42wiltcrk0001"]}],"#,
            r#", "loginProfile": {"mfaBindRequired": true}"#,
            r#""ramSecurityPreference": {"mfaOperationForLogin": "mandatory"},"#,
        );
        let seed = Seed::parse(&good, "seed.json").unwrap();
        assert_eq!(seed.directories[0].groups[0].members.len(), 1);
        let preference = seed.security_preference();
        assert_eq!(preference.mfa_operation_for_login, "mandatory");
        assert_eq!(preference.operation_for_risk_login, "autonomous");
        assert!(preference.allow_user_to_manage_mfa_devices);
        assert!(!preference.enable_save_mfa_ticket);
        let profile = seed.ram_users[0].login_profile.clone().unwrap();
        assert!(profile.mfa_bind_required && !profile.password_reset_required);
        assert_eq!(
            Seed::default().security_preference(),
            SeedRamSecurityPreference::default()
        );

        let cases = [
            (
                with(
                    r#""groups": [{"groupId": "grp-1", "groupName": "eng"}],"#,
                    "",
                    "",
                ),
                "groups[0]",
                "groupId 'grp-1'",
            ),
            (
                with(
                    r#""groups": [{"groupId": "g-1", "groupName": "eng", "members": ["u-nobody"]}],"#,
                    "",
                    "",
                ),
                "groups[0]",
                "'u-nobody' is not a user",
            ),
            (
                with(
                    r#""groups": [{"groupId": "g-1", "groupName": "eng"}, {"groupId": "g-2", "groupName": "ENG"}],"#,
                    "",
                    "",
                ),
                "groups[1]",
                "duplicate groupName",
            ),
            (
                with("", r#", "loginProfile": {"status": "Frozen"}"#, ""),
                "ramUsers[0]",
                "loginProfile.status 'Frozen'",
            ),
            (
                with("", r#", "loginProfile": {"mfaBindRequired": "yes"}"#, ""),
                "invalid JSON",
                "expected a boolean",
            ),
            (
                with(
                    "",
                    "",
                    r#""ramSecurityPreference": {"mfaOperationForLogin": "always"},"#,
                ),
                "ramSecurityPreference",
                "mfaOperationForLogin 'always'",
            ),
            (
                with(
                    "",
                    "",
                    r#""ramSecurityPreference": {"operationForRiskLogin": "EnforceVerify"},"#,
                ),
                "ramSecurityPreference",
                "operationForRiskLogin 'EnforceVerify'",
            ),
            (
                with(
                    "",
                    "",
                    r#""ramSecurityPreference": {"loginSessionDuration": 48},"#,
                ),
                "ramSecurityPreference",
                "loginSessionDuration 48",
            ),
            (
                with("", "", r#""ramSecurityPreference": {"mfa": true},"#),
                "unknown field",
                "mfa",
            ),
        ];
        for (text, location, detail) in cases {
            let error = Seed::parse(&text, "seed.json").unwrap_err().to_string();
            assert!(
                error.contains(location) && error.contains(detail),
                "{error}"
            );
        }
    }

    /// What GET /_emulator/state sends back parses as a seed again, unchanged (the new fields
    /// included), and a seed without them sends none of them.
    #[test]
    fn the_state_round_trips() {
        let text = GOOD
            .replace(
                "\"users\": [",
                r#""groups": [{"groupId": "g-1", "groupName": "eng", "members": ["u-00q8wbq42wiltcrk0001"]}], "users": ["#,
            )
            .replace(
                "\"type\": \"VMFA\"}",
                r#""type": "VMFA"}, "loginProfile": {"passwordResetRequired": true}"#,
            )
            .replacen(
                "{",
                r#"{"ramSecurityPreference": {"enableSaveMfaTicket": true, "loginSessionDuration": 12}, "accountMfaEnabled": true,"#,
                1,
            );
        let seed = Seed::parse(&text, "seed.json").unwrap();
        let state = serde_json::to_string(&seed).unwrap();
        assert_eq!(Seed::parse(&state, "state").unwrap(), seed);
        let value: serde_json::Value = serde_json::from_str(&state).unwrap();
        assert_eq!(
            value["ramSecurityPreference"]["mfaOperationForLogin"],
            "independent"
        );
        assert_eq!(value["ramSecurityPreference"]["loginSessionDuration"], 12);
        assert_eq!(
            value["ramUsers"][0]["loginProfile"]["mfaBindRequired"],
            false
        );
        let plain: serde_json::Value =
            serde_json::to_value(Seed::parse(GOOD, "seed.json").unwrap()).unwrap();
        for absent in ["ramSecurityPreference", "accountMfaEnabled"] {
            assert!(plain.get(absent).is_none(), "{plain}");
        }
        assert!(plain["directories"][0].get("groups").is_none(), "{plain}");
        assert!(
            plain["ramUsers"][0].get("loginProfile").is_none(),
            "{plain}"
        );
    }

    #[test]
    fn a_third_device_is_rejected() {
        let device = r#"{"deviceId": "mfa-X", "deviceName": "n", "deviceType": "TOTP", "effectiveTime": "2021-10-29T09:14:06Z"}"#;
        let text = GOOD.replace(
            "\"effectiveTime\": \"2021-10-29T09:14:06Z\"}]",
            &format!(
                "\"effectiveTime\": \"2021-10-29T09:14:06Z\"}}, {}, {}]",
                device,
                device.replace("mfa-X", "mfa-Y")
            ),
        );
        let error = Seed::parse(&text, "seed.json").unwrap_err().to_string();
        assert!(error.contains("at most 2"), "{error}");
    }
}
