//! Typed CloudSSO (2021-05-15) operations the operator and `audit` use.

use std::collections::BTreeMap;

use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::client::ApiClient;
use super::error::CloudError;

pub const VERSION: &str = "2021-05-15";

/// GetMFAAuthenticationSettingInfo's `MFAAuthenticationSettingInfo`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MfaSettingInfo {
    #[serde(default)]
    pub mfa_authentication_advance_settings: Option<String>,
    #[serde(default)]
    pub operation_for_risk_login: Option<String>,
    #[serde(default)]
    pub allowed_verification_types: Option<Vec<String>>,
}

/// The directory-wide setting to write (UpdateMFAAuthenticationSettings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MfaSettingUpdate {
    pub directory_id: String,
    pub mfa_authentication_settings: String,
    pub operation_for_risk_login: Option<String>,
    pub allowed_verification_types: Option<Vec<String>>,
}

/// A device from ListMFADevicesForUser.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MfaDevice {
    pub device_id: String,
    #[serde(default)]
    pub device_name: String,
    #[serde(default)]
    pub device_type: String,
    #[serde(default)]
    pub effective_time: Option<String>,
    #[serde(default)]
    pub last_use_time: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
}

/// A user as ListUsers and GetUser describe one (the fields the operator needs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct User {
    pub user_id: String,
    pub user_name: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
}

/// One page of ListUsers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UserPage {
    #[serde(default)]
    pub users: Vec<User>,
    #[serde(default)]
    pub next_token: Option<String>,
    #[serde(default)]
    pub is_truncated: bool,
    #[serde(default)]
    pub total_counts: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SettingInfoResponse {
    #[serde(rename = "MFAAuthenticationSettingInfo", default)]
    info: MfaSettingInfo,
}

#[derive(Deserialize)]
struct UserSettingResponse {
    #[serde(rename = "UserMFAAuthenticationSettings", default)]
    setting: Option<String>,
}

#[derive(Deserialize)]
struct DevicesResponse {
    #[serde(rename = "MFADevices", default)]
    devices: Vec<MfaDevice>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UserResponse {
    user: User,
}

#[derive(Deserialize)]
struct Acknowledged {}

/// ListUsers' largest page.
pub const MAX_PAGE_SIZE: u32 = 100;

/// Users read at once by `list_users_with_mfa`; the client's rate limit still applies.
const CONCURRENT_USERS: usize = 8;

/// One user with its own MFA setting and the devices it has bound.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserMfa {
    pub user: User,
    pub setting: Option<String>,
    pub devices: Vec<MfaDevice>,
}

#[derive(Debug, Clone)]
pub struct CloudSsoClient {
    api: ApiClient,
}

fn params<const N: usize>(pairs: [(&str, &str); N]) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

impl CloudSsoClient {
    pub fn new(api: ApiClient) -> Self {
        Self { api }
    }

    pub async fn get_mfa_setting_info(
        &self,
        directory_id: &str,
    ) -> Result<MfaSettingInfo, CloudError> {
        let response: SettingInfoResponse = self
            .api
            .call(
                "GetMFAAuthenticationSettingInfo",
                params([("DirectoryId", directory_id)]),
            )
            .await?;
        Ok(response.info)
    }

    pub async fn update_mfa_settings(&self, update: &MfaSettingUpdate) -> Result<(), CloudError> {
        let mut query = params([
            ("DirectoryId", update.directory_id.as_str()),
            (
                "MFAAuthenticationSettings",
                update.mfa_authentication_settings.as_str(),
            ),
        ]);
        if let Some(operation) = &update.operation_for_risk_login {
            query.insert("OperationForRiskLogin".into(), operation.clone());
        }
        if let Some(types) = &update.allowed_verification_types {
            // The API takes the list as one JSON-array parameter.
            query.insert(
                "AllowedVerificationTypes".into(),
                serde_json::to_string(types).unwrap_or_else(|_| "[]".into()),
            );
        }
        let _: Acknowledged = self
            .api
            .call("UpdateMFAAuthenticationSettings", query)
            .await?;
        Ok(())
    }

    pub async fn get_user_mfa_setting(
        &self,
        directory_id: &str,
        user_id: &str,
    ) -> Result<Option<String>, CloudError> {
        let response: UserSettingResponse = self
            .api
            .call(
                "GetUserMFAAuthenticationSettings",
                params([("DirectoryId", directory_id), ("UserId", user_id)]),
            )
            .await?;
        Ok(response.setting)
    }

    pub async fn update_user_mfa_setting(
        &self,
        directory_id: &str,
        user_id: &str,
        setting: &str,
    ) -> Result<(), CloudError> {
        let _: Acknowledged = self
            .api
            .call(
                "UpdateUserMFAAuthenticationSettings",
                params([
                    ("DirectoryId", directory_id),
                    ("UserId", user_id),
                    ("UserMFAAuthenticationSettings", setting),
                ]),
            )
            .await?;
        Ok(())
    }

    pub async fn list_mfa_devices(
        &self,
        directory_id: &str,
        user_id: &str,
    ) -> Result<Vec<MfaDevice>, CloudError> {
        let response: DevicesResponse = self
            .api
            .call(
                "ListMFADevicesForUser",
                params([("DirectoryId", directory_id), ("UserId", user_id)]),
            )
            .await?;
        Ok(response.devices)
    }

    /// One page of ListUsers; `filter` is e.g. `UserName eq alice` or `UserName sw al`.
    pub async fn list_users_page(
        &self,
        directory_id: &str,
        filter: Option<&str>,
        max_results: u32,
        next_token: Option<&str>,
    ) -> Result<UserPage, CloudError> {
        let mut query = params([("DirectoryId", directory_id)]);
        query.insert(
            "MaxResults".into(),
            max_results.clamp(1, MAX_PAGE_SIZE).to_string(),
        );
        if let Some(filter) = filter {
            query.insert("Filter".into(), filter.to_string());
        }
        if let Some(token) = next_token {
            query.insert("NextToken".into(), token.to_string());
        }
        self.api.call("ListUsers", query).await
    }

    /// Every user matching `filter`, following NextToken.
    pub async fn list_all_users(
        &self,
        directory_id: &str,
        filter: Option<&str>,
    ) -> Result<Vec<User>, CloudError> {
        let mut users = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            let page = self
                .list_users_page(directory_id, filter, MAX_PAGE_SIZE, next_token.as_deref())
                .await?;
            users.extend(page.users);
            match page
                .next_token
                .filter(|token| page.is_truncated && !token.is_empty())
            {
                Some(token) => next_token = Some(token),
                None => return Ok(users),
            }
        }
    }

    /// Resolves a user name to the user (ListUsers with `UserName eq`, compared exactly).
    pub async fn find_user_by_name(
        &self,
        directory_id: &str,
        user_name: &str,
    ) -> Result<Option<User>, CloudError> {
        let filter = format!("UserName eq {user_name}");
        let users = self.list_all_users(directory_id, Some(&filter)).await?;
        // The filter is case-insensitive; user names are unique but compared as given first.
        let exact = users
            .iter()
            .find(|user| user.user_name == user_name)
            .cloned();
        Ok(exact.or_else(|| {
            users
                .into_iter()
                .find(|user| user.user_name.eq_ignore_ascii_case(user_name))
        }))
    }

    pub async fn get_user(&self, directory_id: &str, user_id: &str) -> Result<User, CloudError> {
        let response: UserResponse = self
            .api
            .call(
                "GetUser",
                params([("DirectoryId", directory_id), ("UserId", user_id)]),
            )
            .await?;
        Ok(response.user)
    }

    /// Every user of the directory with its MFA setting and devices, sorted by name: ListUsers,
    /// then GetUserMFAAuthenticationSettings and ListMFADevicesForUser per user.
    pub async fn list_users_with_mfa(
        &self,
        directory_id: &str,
    ) -> Result<Vec<UserMfa>, CloudError> {
        let users = self.list_all_users(directory_id, None).await?;
        let mut read: Vec<UserMfa> = futures::stream::iter(users)
            .map(|user| async move {
                let (setting, devices) = tokio::try_join!(
                    self.get_user_mfa_setting(directory_id, &user.user_id),
                    self.list_mfa_devices(directory_id, &user.user_id),
                )?;
                Ok::<_, CloudError>(UserMfa {
                    user,
                    setting,
                    devices,
                })
            })
            .buffer_unordered(CONCURRENT_USERS)
            .try_collect()
            .await?;
        read.sort_by(|a, b| a.user.user_name.cmp(&b.user.user_name));
        Ok(read)
    }
}
