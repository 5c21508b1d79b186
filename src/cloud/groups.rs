//! Typed CloudSSO (2021-05-15) group operations, and users by name prefix: what a policy over
//! many users reads to know whom it selects (ListGroups, GetGroup, ListGroupMembers,
//! ListJoinedGroupsForUser, ListUsers with `UserName sw`). Every listing follows NextToken to
//! its end within the same caps as ListUsers (`cloudsso::MAX_PAGES`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::client::ApiClient;
use super::cloudsso::{CloudSsoClient, MAX_PAGE_SIZE, Pages, User};
use super::error::CloudError;
use super::text;

/// A group as ListGroups and GetGroup describe one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Group {
    pub group_id: String,
    pub group_name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// `Manual` or `Synchronized` (from an external IdP through SCIM).
    #[serde(default, deserialize_with = "text::de::option")]
    pub provision_type: Option<String>,
}

/// A member as ListGroupMembers describes one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GroupMember {
    pub user_id: String,
    pub user_name: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default, deserialize_with = "text::de::option")]
    pub status: Option<String>,
}

/// A group a user belongs to, as ListJoinedGroupsForUser describes one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct JoinedGroup {
    pub group_id: String,
    pub group_name: String,
}

/// One page of a CloudSSO listing whose items are under `field`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Page<T> {
    #[serde(default = "Vec::new")]
    #[serde(alias = "Groups", alias = "GroupMembers", alias = "JoinedGroups")]
    items: Vec<T>,
    #[serde(default)]
    next_token: Option<String>,
    #[serde(default)]
    is_truncated: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GroupResponse {
    group: Group,
}

/// The group operations over one CloudSSO endpoint and credential.
#[derive(Debug, Clone)]
pub struct GroupsClient {
    api: ApiClient,
}

impl GroupsClient {
    /// `api` is a CloudSSO (2021-05-15) client, the same one a `CloudSsoClient` is built on.
    pub fn new(api: ApiClient) -> Self {
        Self { api }
    }

    /// Every item of `action`'s listing, page by page at the largest page size.
    async fn all_pages<T: serde::de::DeserializeOwned>(
        &self,
        action: &'static str,
        base: BTreeMap<String, String>,
    ) -> Result<Vec<T>, CloudError> {
        let mut items = Vec::new();
        let mut pages = Pages::new(action);
        let mut next_token: Option<String> = None;
        while pages.more(next_token.as_deref())? {
            let mut params = base.clone();
            params.insert("MaxResults".into(), MAX_PAGE_SIZE.to_string());
            if let Some(token) = &next_token {
                params.insert("NextToken".into(), token.clone());
            }
            let page: Page<T> = self.api.read(action, params).await?;
            items.extend(page.items);
            next_token = page
                .next_token
                .filter(|token| page.is_truncated && !token.is_empty());
        }
        Ok(items)
    }

    /// Every group of the directory whose name matches `filter` (`GroupName eq eng`,
    /// `GroupName sw eng`), or every group with none.
    pub async fn list_groups(
        &self,
        directory_id: &str,
        filter: Option<&str>,
    ) -> Result<Vec<Group>, CloudError> {
        let mut params = BTreeMap::from([("DirectoryId".to_string(), directory_id.to_string())]);
        if let Some(filter) = filter {
            params.insert("Filter".into(), filter.to_string());
        }
        self.all_pages("ListGroups", params).await
    }

    /// The group named `group_name` (ListGroups with `GroupName eq`), compared exactly first and
    /// then without case, as the filter compares.
    pub async fn find_group_by_name(
        &self,
        directory_id: &str,
        group_name: &str,
    ) -> Result<Option<Group>, CloudError> {
        let filter = format!("GroupName eq {group_name}");
        let groups = self.list_groups(directory_id, Some(&filter)).await?;
        let exact = groups.iter().find(|g| g.group_name == group_name).cloned();
        Ok(exact.or_else(|| {
            groups
                .into_iter()
                .find(|g| g.group_name.eq_ignore_ascii_case(group_name))
        }))
    }

    pub async fn get_group(&self, directory_id: &str, group_id: &str) -> Result<Group, CloudError> {
        let params = BTreeMap::from([
            ("DirectoryId".to_string(), directory_id.to_string()),
            ("GroupId".to_string(), group_id.to_string()),
        ]);
        let response: GroupResponse = self.api.read("GetGroup", params).await?;
        Ok(response.group)
    }

    /// Every member of the group, 100 a page.
    pub async fn list_group_members(
        &self,
        directory_id: &str,
        group_id: &str,
    ) -> Result<Vec<GroupMember>, CloudError> {
        let params = BTreeMap::from([
            ("DirectoryId".to_string(), directory_id.to_string()),
            ("GroupId".to_string(), group_id.to_string()),
        ]);
        self.all_pages("ListGroupMembers", params).await
    }

    /// Every group the user belongs to.
    pub async fn list_joined_groups(
        &self,
        directory_id: &str,
        user_id: &str,
    ) -> Result<Vec<JoinedGroup>, CloudError> {
        let params = BTreeMap::from([
            ("DirectoryId".to_string(), directory_id.to_string()),
            ("UserId".to_string(), user_id.to_string()),
        ]);
        self.all_pages("ListJoinedGroupsForUser", params).await
    }

    /// Every user whose name starts with `prefix` (ListUsers `UserName sw`, every page, through
    /// `CloudSsoClient::list_all_users` and its caps), kept only when the name does start with
    /// it, without case, as the filter compares.
    pub async fn list_users_by_prefix(
        &self,
        directory_id: &str,
        prefix: &str,
    ) -> Result<Vec<User>, CloudError> {
        let filter = format!("UserName sw {prefix}");
        let users = CloudSsoClient::new(self.api.clone())
            .list_all_users(directory_id, Some(&filter))
            .await?;
        let prefix = prefix.to_lowercase();
        Ok(users
            .into_iter()
            .filter(|user| user.user_name.to_lowercase().starts_with(&prefix))
            .collect())
    }
}
