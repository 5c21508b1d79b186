//! Typed CloudSSO (2021-05-15) operations the operator and `audit` use.

use std::collections::BTreeMap;

use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::client::ApiClient;
use super::error::CloudError;
use super::text;

pub const VERSION: &str = "2021-05-15";

/// GetMFAAuthenticationSettingInfo's `MFAAuthenticationSettingInfo`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MfaSettingInfo {
    #[serde(default, deserialize_with = "text::de::option")]
    pub mfa_authentication_advance_settings: Option<String>,
    #[serde(default, deserialize_with = "text::de::option")]
    pub operation_for_risk_login: Option<String>,
    #[serde(default, deserialize_with = "text::de::list")]
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
    #[serde(default, deserialize_with = "text::de::string")]
    pub device_type: String,
    #[serde(default)]
    pub effective_time: Option<String>,
    #[serde(default)]
    pub last_use_time: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
}

/// A user's own MFA setting, as GetUserMFAAuthenticationSettings reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct UserMfaSettings {
    #[serde(
        rename = "UserMFAAuthenticationSettings",
        default,
        deserialize_with = "text::de::option"
    )]
    pub user_mfa_authentication_settings: Option<String>,
}

/// A user's own setting to write (UpdateUserMFAAuthenticationSettings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserMfaUpdate {
    pub directory_id: String,
    pub user_id: String,
    pub user_mfa_authentication_settings: String,
}

/// The user named `name` among `users`: the exact name first, else the only one that differs
/// in case alone (the API's name filter ignores case; names are unique).
pub fn pick_by_name<'a>(users: impl IntoIterator<Item = &'a User>, name: &str) -> Option<&'a User> {
    let mut folded = None;
    for user in users {
        if user.user_name == name {
            return Some(user);
        }
        if folded.is_none() && user.user_name.eq_ignore_ascii_case(name) {
            folded = Some(user);
        }
    }
    folded
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

impl User {
    /// The bytes its fields hold, for a listing's bound.
    fn size(&self) -> usize {
        self.user_id.len()
            + self.user_name.len()
            + self.display_name.as_ref().map_or(0, String::len)
            + self.status.as_ref().map_or(0, String::len)
    }
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

/// The most pages one listing follows. A 100,000-user directory is 1,000 pages of 100; twice
/// that leaves room to grow, and ends a NextToken that never ends after 2,000 calls (under two
/// minutes at the default 20 calls/s) instead of never.
pub const MAX_PAGES: usize = 2_000;

/// The most bytes of user fields one listing keeps. A real 100,000-user directory keeps ~15 MB
/// (ids, names of at most 64 and display names of at most 256 characters); the page cap alone
/// would still let 2,000 pages of 1 MiB names through.
pub const MAX_LISTED_BYTES: usize = 64 << 20;

/// Counts one listing's pages and remembers its tokens, so an endpoint that sends NextToken
/// forever, or a token it sent before, ends the listing with an error instead of a loop.
#[derive(Debug)]
pub struct Pages {
    action: &'static str,
    fetched: usize,
    /// Hashes, not the tokens: a token may be as long as a page.
    tokens: std::collections::HashSet<u64>,
    hasher: std::hash::RandomState,
}

impl Pages {
    pub fn new(action: &'static str) -> Self {
        Self {
            action,
            fetched: 0,
            tokens: Default::default(),
            hasher: Default::default(),
        }
    }

    /// Whether to fetch the page `next_token` names: always the first, then while there is a
    /// token; an error past `MAX_PAGES` or on a token seen before.
    pub fn more(&mut self, next_token: Option<&str>) -> Result<bool, CloudError> {
        use std::hash::BuildHasher;
        let refuse = |detail: String| CloudError::Refused {
            action: self.action.into(),
            what: "too_many_pages",
            detail,
        };
        if self.fetched > 0 {
            let Some(token) = next_token else {
                return Ok(false);
            };
            if !self.tokens.insert(self.hasher.hash_one(token)) {
                return Err(refuse(format!(
                    "the endpoint sent a NextToken it had sent before, after {} pages; stopped",
                    self.fetched
                )));
            }
        }
        if self.fetched >= MAX_PAGES {
            return Err(refuse(format!(
                "the listing did not end after {MAX_PAGES} pages; stopped"
            )));
        }
        self.fetched += 1;
        Ok(true)
    }
}

/// Users read at once by `list_users_with_mfa`; the client's rate limit still applies.
const CONCURRENT_USERS: usize = 8;

/// One user with its own MFA setting and the devices it has bound.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserMfa {
    pub user: User,
    pub settings: UserMfaSettings,
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

    /// The group operations over the same endpoint, credential and rate limit.
    pub fn groups(&self) -> super::groups::GroupsClient {
        super::groups::GroupsClient::new(self.api.clone())
    }

    pub async fn get_mfa_setting_info(
        &self,
        directory_id: &str,
    ) -> Result<MfaSettingInfo, CloudError> {
        let response: SettingInfoResponse = self
            .api
            .read(
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
            .write("UpdateMFAAuthenticationSettings", query)
            .await?;
        Ok(())
    }

    pub async fn get_user_mfa_setting(
        &self,
        directory_id: &str,
        user_id: &str,
    ) -> Result<UserMfaSettings, CloudError> {
        self.api
            .read(
                "GetUserMFAAuthenticationSettings",
                params([("DirectoryId", directory_id), ("UserId", user_id)]),
            )
            .await
    }

    pub async fn update_user_mfa_setting(&self, update: &UserMfaUpdate) -> Result<(), CloudError> {
        let _: Acknowledged = self
            .api
            .write(
                "UpdateUserMFAAuthenticationSettings",
                params([
                    ("DirectoryId", update.directory_id.as_str()),
                    ("UserId", update.user_id.as_str()),
                    (
                        "UserMFAAuthenticationSettings",
                        update.user_mfa_authentication_settings.as_str(),
                    ),
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
            .read(
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
        self.api.read("ListUsers", query).await
    }

    /// Every user matching `filter`, following NextToken (at most `MAX_PAGES` pages and
    /// `MAX_LISTED_BYTES` of users).
    pub async fn list_all_users(
        &self,
        directory_id: &str,
        filter: Option<&str>,
    ) -> Result<Vec<User>, CloudError> {
        self.list_all_users_as(directory_id, filter, |user| user)
            .await
    }

    /// `list_all_users`, keeping of each user only what `keep` makes of it, page by page (a
    /// listing of 100,000 users then never holds every field of every user at once).
    pub async fn list_all_users_as<T>(
        &self,
        directory_id: &str,
        filter: Option<&str>,
        mut keep: impl FnMut(User) -> T,
    ) -> Result<Vec<T>, CloudError> {
        let mut users = Vec::new();
        let mut kept = 0usize;
        let mut pages = Pages::new("ListUsers");
        let mut next_token: Option<String> = None;
        while pages.more(next_token.as_deref())? {
            let page = self
                .list_users_page(directory_id, filter, MAX_PAGE_SIZE, next_token.as_deref())
                .await?;
            kept += page.users.iter().map(User::size).sum::<usize>();
            if kept > MAX_LISTED_BYTES {
                return Err(CloudError::Refused {
                    action: "ListUsers".into(),
                    what: "listing_too_large",
                    detail: format!(
                        "the listing passed {} MiB of users after {} users; stopped",
                        MAX_LISTED_BYTES >> 20,
                        users.len()
                    ),
                });
            }
            users.extend(page.users.into_iter().map(&mut keep));
            next_token = page
                .next_token
                .filter(|token| page.is_truncated && !token.is_empty());
        }
        Ok(users)
    }

    /// Resolves a user name to the user (ListUsers with `UserName eq`, compared exactly).
    pub async fn find_user_by_name(
        &self,
        directory_id: &str,
        user_name: &str,
    ) -> Result<Option<User>, CloudError> {
        let filter = format!("UserName eq {user_name}");
        let users = self.list_all_users(directory_id, Some(&filter)).await?;
        Ok(pick_by_name(&users, user_name).cloned())
    }

    pub async fn get_user(&self, directory_id: &str, user_id: &str) -> Result<User, CloudError> {
        let response: UserResponse = self
            .api
            .read(
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
                let (settings, devices) = tokio::try_join!(
                    self.get_user_mfa_setting(directory_id, &user.user_id),
                    self.list_mfa_devices(directory_id, &user.user_id),
                )?;
                Ok::<_, CloudError>(UserMfa {
                    user,
                    settings,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_end_at_the_last_token_and_at_the_cap() {
        let mut pages = Pages::new("ListUsers");
        assert!(
            pages.more(None).unwrap(),
            "the first page is always fetched"
        );
        assert!(pages.more(Some("t1")).unwrap());
        assert!(!pages.more(None).unwrap(), "no token: the listing is done");

        let mut forever = Pages::new("ListUsers");
        let mut fetched = 0;
        let error = loop {
            let token = format!("t{fetched}");
            match forever.more((fetched > 0).then_some(token.as_str())) {
                Ok(true) => fetched += 1,
                Ok(false) => panic!("a listing with a token always goes on"),
                Err(error) => break error,
            }
        };
        assert_eq!(fetched, MAX_PAGES);
        assert!(
            error.to_string().contains("did not end after 2000 pages"),
            "{error}"
        );
    }

    #[test]
    fn a_token_sent_again_ends_the_listing() {
        let mut pages = Pages::new("ListUsers");
        assert!(pages.more(None).unwrap());
        assert!(pages.more(Some("a")).unwrap());
        assert!(pages.more(Some("b")).unwrap());
        let error = pages.more(Some("a")).unwrap_err();
        assert!(error.to_string().contains("sent before"), "{error}");
        assert!(!error.is_retryable());
    }
}
