//! RAM's identity API (IMS, 2019-08-15): the MFA device of a RAM user, the account's security
//! preference, RAM users' login profiles and the user list.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::client::ApiClient;
use super::cloudsso::Pages;
use super::error::CloudError;
use super::text;

pub const VERSION: &str = "2019-08-15";

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RamMfaDevice {
    #[serde(deserialize_with = "text::de::string")]
    pub serial_number: String,
    #[serde(rename = "Type", default, deserialize_with = "text::de::string")]
    pub device_type: String,
}

/// GetUserMFAInfo's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct UserMfaInfo {
    #[serde(rename = "IsMFAEnable", default)]
    pub is_mfa_enable: bool,
    #[serde(rename = "MFADevice", default)]
    pub mfa_device: Option<RamMfaDevice>,
}

#[derive(Debug, Clone)]
pub struct ImsClient {
    api: ApiClient,
}

impl ImsClient {
    pub fn new(api: ApiClient) -> Self {
        Self { api }
    }

    pub async fn get_user_mfa_info(
        &self,
        user_principal_name: &str,
    ) -> Result<UserMfaInfo, CloudError> {
        let params = BTreeMap::from([(
            "UserPrincipalName".to_string(),
            user_principal_name.to_string(),
        )]);
        let mut info: UserMfaInfo = self.api.read("GetUserMFAInfo", params).await?;
        // An empty device object means none is bound.
        if info
            .mfa_device
            .as_ref()
            .is_some_and(|device| device.serial_number.is_empty())
        {
            info.mfa_device = None;
        }
        Ok(info)
    }
}

/// The account's MFA preferences for RAM users, as GetSecurityPreference reports them and as
/// SetSecurityPreference takes them: None is "not reported" on a read and "leave as it is" on a
/// write.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityPreference {
    /// `mandatory`, `independent` or `adaptive`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mfa_operation_for_login: Option<String>,
    /// `autonomous` or `enforceVerify`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_for_risk_login: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_save_mfa_ticket: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_user_to_manage_mfa_devices: Option<bool>,
}

impl SecurityPreference {
    /// SetSecurityPreference's parameters: only the fields that are Some.
    fn params(&self) -> BTreeMap<String, String> {
        let mut params = BTreeMap::new();
        let mut put = |name: &str, value: Option<String>| {
            if let Some(value) = value {
                params.insert(name.to_string(), value);
            }
        };
        put("MFAOperationForLogin", self.mfa_operation_for_login.clone());
        put(
            "OperationForRiskLogin",
            self.operation_for_risk_login.clone(),
        );
        put(
            "EnableSaveMFATicket",
            self.enable_save_mfa_ticket.map(|b| b.to_string()),
        );
        put(
            "AllowUserToManageMFADevices",
            self.allow_user_to_manage_mfa_devices.map(|b| b.to_string()),
        );
        params
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LoginProfilePreference {
    #[serde(
        rename = "MFAOperationForLogin",
        default,
        deserialize_with = "text::de::option"
    )]
    mfa_operation_for_login: Option<String>,
    #[serde(default, deserialize_with = "text::de::option")]
    operation_for_risk_login: Option<String>,
    #[serde(rename = "EnableSaveMFATicket", default)]
    enable_save_mfa_ticket: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
struct MfaPreference {
    #[serde(rename = "AllowUserToManageMFADevices", default)]
    allow_user_to_manage_mfa_devices: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SecurityPreferenceWire {
    #[serde(default)]
    login_profile_preference: LoginProfilePreference,
    #[serde(rename = "MFAPreference", default)]
    mfa_preference: MfaPreference,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SecurityPreferenceResponse {
    #[serde(default)]
    security_preference: SecurityPreferenceWire,
}

impl From<SecurityPreferenceResponse> for SecurityPreference {
    fn from(response: SecurityPreferenceResponse) -> Self {
        let wire = response.security_preference;
        Self {
            mfa_operation_for_login: wire.login_profile_preference.mfa_operation_for_login,
            operation_for_risk_login: wire.login_profile_preference.operation_for_risk_login,
            enable_save_mfa_ticket: wire.login_profile_preference.enable_save_mfa_ticket,
            allow_user_to_manage_mfa_devices: wire.mfa_preference.allow_user_to_manage_mfa_devices,
        }
    }
}

/// A RAM user's console logon (GetLoginProfile, UpdateLoginProfile).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LoginProfile {
    #[serde(default, deserialize_with = "text::de::string")]
    pub user_principal_name: String,
    #[serde(rename = "MFABindRequired", default)]
    pub mfa_bind_required: bool,
    #[serde(default)]
    pub password_reset_required: bool,
    /// `Active` or `Inactive` (console logon switched off).
    #[serde(default, deserialize_with = "text::de::option")]
    pub status: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LoginProfileResponse {
    login_profile: LoginProfile,
}

/// What UpdateLoginProfile changes; None leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoginProfileUpdate {
    pub mfa_bind_required: Option<bool>,
    pub password_reset_required: Option<bool>,
}

/// Why a RAM user's login profile could not be had, when the answer says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingLogin {
    /// `EntityNotExist.User`: no RAM user of that name.
    NoSuchUser,
    /// `EntityNotExist.User.LoginProfile`: the user has no console logon.
    NoLoginProfile,
}

/// RAM's code for a user without a login profile.
pub const NO_LOGIN_PROFILE: &str = "EntityNotExist.User.LoginProfile";
/// RAM's code for an unknown user.
pub const NO_SUCH_USER: &str = "EntityNotExist.User";

impl MissingLogin {
    /// Which of the two a failed Get/UpdateLoginProfile (or GetUserMFAInfo) was, if either.
    pub fn of(error: &CloudError) -> Option<Self> {
        match error.code()? {
            NO_LOGIN_PROFILE => Some(Self::NoLoginProfile),
            NO_SUCH_USER => Some(Self::NoSuchUser),
            _ => None,
        }
    }
}

/// A RAM user from IMS ListUsers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RamUser {
    pub user_principal_name: String,
    #[serde(default)]
    pub user_id: String,
    #[serde(default)]
    pub display_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UserList {
    #[serde(default)]
    user: Vec<RamUser>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UserListPage {
    #[serde(default)]
    users: Option<UserList>,
    #[serde(default)]
    is_truncated: bool,
    #[serde(default)]
    marker: Option<String>,
}

#[derive(Deserialize)]
struct AccountMfaResponse {
    #[serde(rename = "IsMFAEnable", default)]
    is_mfa_enable: bool,
}

/// IMS ListUsers' largest page.
pub const MAX_USERS_PAGE: u32 = 1000;

impl ImsClient {
    pub async fn get_security_preference(&self) -> Result<SecurityPreference, CloudError> {
        let response: SecurityPreferenceResponse = self
            .api
            .read("GetSecurityPreference", BTreeMap::new())
            .await?;
        Ok(response.into())
    }

    /// Writes the fields of `preference` that are Some, and nothing else; returns the preference
    /// as the answer reports it. With no field set it only reads (no write call is made).
    pub async fn set_security_preference(
        &self,
        preference: &SecurityPreference,
    ) -> Result<SecurityPreference, CloudError> {
        let params = preference.params();
        if params.is_empty() {
            return self.get_security_preference().await;
        }
        let response: SecurityPreferenceResponse =
            self.api.write("SetSecurityPreference", params).await?;
        Ok(response.into())
    }

    /// The user's login profile; see [`MissingLogin::of`] for a user without one.
    pub async fn get_login_profile(
        &self,
        user_principal_name: &str,
    ) -> Result<LoginProfile, CloudError> {
        let params = BTreeMap::from([(
            "UserPrincipalName".to_string(),
            user_principal_name.to_string(),
        )]);
        let response: LoginProfileResponse = self.api.read("GetLoginProfile", params).await?;
        Ok(response.login_profile)
    }

    /// Changes the fields of `update` that are Some; returns the profile as the answer reports it.
    pub async fn update_login_profile(
        &self,
        user_principal_name: &str,
        update: &LoginProfileUpdate,
    ) -> Result<LoginProfile, CloudError> {
        let mut params = BTreeMap::from([(
            "UserPrincipalName".to_string(),
            user_principal_name.to_string(),
        )]);
        for (name, value) in [
            ("MFABindRequired", update.mfa_bind_required),
            ("PasswordResetRequired", update.password_reset_required),
        ] {
            if let Some(value) = value {
                params.insert(name.to_string(), value.to_string());
            }
        }
        let response: LoginProfileResponse = self.api.write("UpdateLoginProfile", params).await?;
        Ok(response.login_profile)
    }

    /// Every RAM user of the account, following Marker (at most `cloudsso::MAX_PAGES` pages).
    pub async fn list_users(&self) -> Result<Vec<RamUser>, CloudError> {
        let mut users = Vec::new();
        let mut pages = Pages::new("ListUsers");
        let mut marker: Option<String> = None;
        while pages.more(marker.as_deref())? {
            let mut params = BTreeMap::from([("MaxItems".to_string(), MAX_USERS_PAGE.to_string())]);
            if let Some(marker) = &marker {
                params.insert("Marker".to_string(), marker.clone());
            }
            let page: UserListPage = self.api.read("ListUsers", params).await?;
            users.extend(page.users.map(|list| list.user).unwrap_or_default());
            marker = page
                .marker
                .filter(|marker| page.is_truncated && !marker.is_empty());
        }
        Ok(users)
    }

    /// Whether the account's own (root) logon has an MFA device bound (GetAccountMFAInfo).
    pub async fn get_account_mfa_enabled(&self) -> Result<bool, CloudError> {
        let response: AccountMfaResponse =
            self.api.read("GetAccountMFAInfo", BTreeMap::new()).await?;
        Ok(response.is_mfa_enable)
    }
}
