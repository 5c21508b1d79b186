//! Which users a UserMfaPolicy's selector finds in the cloud, each pass afresh (so users who join
//! or leave a group or the directory move in or out at the next pass): every user (ListUsers), a
//! name prefix (ListUsers `UserName sw`), group members (ListGroups to resolve each name, then
//! ListGroupMembers), or names (through the shared name resolver, batched into a listing when
//! many are pending). What cannot be found (a group, a name) is reported, not fatal: the users
//! that are found are still enforced.

use std::collections::{BTreeMap, HashSet};

use super::evaluate::Member;
use crate::api::{Reason, UserSelector};
use crate::cloud::{CloudError, CloudSsoClient};
use crate::controller::keys::DirectoryKey;
use crate::controller::state::NameResolver;

/// Something the selector names that the directory does not have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Missing {
    pub reason: Reason,
    /// How results and messages name it: `group 'eng'`, `user 'bob'`.
    pub subject: String,
}

/// What the selector found: the users (each once, by id) and what it names that is not there.
#[derive(Debug, Default)]
pub struct Selected {
    pub members: Vec<Member>,
    pub missing: Vec<Missing>,
}

/// Every user `selector` names in `directory`, sorted by name.
pub async fn select(
    selector: &UserSelector,
    client: &CloudSsoClient,
    directory: &DirectoryKey,
    names: &NameResolver,
) -> Result<Selected, CloudError> {
    let directory_id = directory.directory_id.as_str();
    let member = |user: crate::cloud::cloudsso::User| Member {
        user_id: user.user_id.into(),
        user_name: user.user_name.into(),
    };
    let mut missing = Vec::new();
    let mut members: Vec<Member> = if selector.all == Some(true) {
        // Each user's id and name only, page by page: every user of a large directory.
        client.list_all_users_as(directory_id, None, member).await?
    } else if let Some(prefix) = &selector.user_name_prefix {
        let users = client
            .groups()
            .list_users_by_prefix(directory_id, prefix)
            .await?;
        users.into_iter().map(member).collect()
    } else {
        // Groups and names may name one user twice: each once, by id.
        let mut found = BTreeMap::new();
        if let Some(groups) = &selector.group_names {
            missing = members_of_groups(client, directory_id, groups, &mut found).await?;
        } else if let Some(wanted) = &selector.user_names {
            missing = resolve_names(client, directory, names, wanted, &mut found).await?;
        }
        found
            .into_iter()
            .map(|(user_id, user_name)| Member {
                user_id: user_id.into(),
                user_name: user_name.into(),
            })
            .collect()
    };
    members.sort_by(|a, b| {
        a.user_name
            .cmp(&b.user_name)
            .then(a.user_id.cmp(&b.user_id))
    });
    Ok(Selected { members, missing })
}

/// The members of each group into `found`; the groups the directory does not have.
async fn members_of_groups(
    client: &CloudSsoClient,
    directory_id: &str,
    groups: &[String],
    found: &mut BTreeMap<String, String>,
) -> Result<Vec<Missing>, CloudError> {
    let api = client.groups();
    let mut missing = Vec::new();
    for name in groups {
        let Some(group) = api.find_group_by_name(directory_id, name).await? else {
            missing.push(Missing {
                reason: Reason::GroupNotFound,
                subject: format!("group '{name}'"),
            });
            continue;
        };
        for member in api
            .list_group_members(directory_id, &group.group_id)
            .await?
        {
            found.insert(member.user_id, member.user_name);
        }
    }
    Ok(missing)
}

/// Each name's user into `found`; the names the directory does not have.
async fn resolve_names(
    client: &CloudSsoClient,
    directory: &DirectoryKey,
    names: &NameResolver,
    wanted: &[String],
    found: &mut BTreeMap<String, String>,
) -> Result<Vec<Missing>, CloudError> {
    let mut missing = Vec::new();
    for name in wanted {
        let pending = || -> HashSet<String> {
            wanted
                .iter()
                .filter(|other| names.known(directory, other).is_none())
                .cloned()
                .collect()
        };
        match names.resolve(client, directory, name, pending).await? {
            Some(user_id) => {
                found.insert(user_id, name.clone());
            }
            None => missing.push(Missing {
                reason: Reason::UserNotFound,
                subject: format!("user '{name}'"),
            }),
        }
    }
    Ok(missing)
}
