//! CloudSSO (2021-05-15) groups of a directory: ListGroups (Filter `GroupName eq|sw`), GetGroup,
//! ListGroupMembers and ListJoinedGroupsForUser, paged as the real API pages (MaxResults 1 to
//! 100, NextToken), with the official SDK's field names (alibabacloud_cloudsso20210515 models).

use serde_json::{Value, json};

use super::api::{
    ApiFault, CLOUDSSO_VERSION, Params, USER_CREATE_TIME, directory_mut, filter_matches, page_of,
    paging, parse_filter, provision_type, required, user_mut,
};
use super::seed::{Seed, SeedGroup, SeedUser};

/// Answers the group actions; None for any other.
pub fn dispatch(
    seed: &mut Seed,
    version: &str,
    action: &str,
    params: &Params,
) -> Option<Result<Value, ApiFault>> {
    if version != CLOUDSSO_VERSION {
        return None;
    }
    Some(match action {
        "ListGroups" => list_groups(seed, params),
        "GetGroup" => get_group(seed, params),
        "ListGroupMembers" => list_group_members(seed, params),
        "ListJoinedGroupsForUser" => list_joined_groups(seed, params),
        _ => return None,
    })
}

fn group_not_found() -> ApiFault {
    ApiFault::new(
        404,
        "EntityNotExists.Group",
        "The specified group does not exist.",
    )
}

fn group_json(group: &SeedGroup) -> Value {
    json!({
        "GroupId": group.group_id,
        "GroupName": group.group_name,
        "Description": group.description.clone().unwrap_or_default(),
        // Groups come from the seed, so by hand; SCIM-made groups would be Synchronized.
        "ProvisionType": "Manual",
        "CreateTime": USER_CREATE_TIME,
        "UpdateTime": USER_CREATE_TIME,
    })
}

fn list_groups(seed: &mut Seed, params: &Params) -> Result<Value, ApiFault> {
    let (max_results, offset) = paging(params)?;
    let filter = match params.get("Filter").filter(|v| !v.is_empty()) {
        Some(raw) => Some(parse_filter(raw, "GroupName")?),
        None => None,
    };
    let provision = params.get("ProvisionType").filter(|v| !v.is_empty());
    if let Some(provision) = provision
        && !["Manual", "Synchronized"].contains(&provision.as_str())
    {
        return Err(ApiFault::invalid(
            "ProvisionType",
            "Valid values: Manual, Synchronized.",
        ));
    }
    let only_synchronized = provision.is_some_and(|p| p == "Synchronized");
    let directory = directory_mut(seed, params)?;
    let groups = directory
        .groups
        .iter()
        .filter(|_| !only_synchronized)
        .filter(|group| filter_matches(filter.as_ref(), &group.group_name))
        .map(group_json)
        .collect();
    Ok(page_of("Groups", groups, max_results, offset))
}

fn group_of<'a>(seed: &'a mut Seed, params: &Params) -> Result<&'a SeedGroup, ApiFault> {
    let group_id = required(params, "GroupId")?.to_string();
    let directory = directory_mut(seed, params)?;
    directory
        .groups
        .iter()
        .find(|group| group.group_id == group_id)
        .ok_or_else(group_not_found)
}

fn get_group(seed: &mut Seed, params: &Params) -> Result<Value, ApiFault> {
    Ok(json!({ "Group": group_json(group_of(seed, params)?) }))
}

fn member_json(group: &SeedGroup, user: &SeedUser) -> Value {
    json!({
        "GroupId": group.group_id,
        "UserId": user.user_id,
        "UserName": user.user_name,
        "DisplayName": user.display_name.clone().unwrap_or_else(|| user.user_name.clone()),
        "Description": user.description.clone().unwrap_or_default(),
        "Email": user.email.clone().unwrap_or_default(),
        "Status": "Enabled",
        "ProvisionType": provision_type(user),
        "JoinTime": USER_CREATE_TIME,
    })
}

fn list_group_members(seed: &mut Seed, params: &Params) -> Result<Value, ApiFault> {
    let (max_results, offset) = paging(params)?;
    let group = group_of(seed, params)?.clone();
    let directory = directory_mut(seed, params)?;
    // Seed validation keeps every member a user of the directory; a state PUT is validated too.
    let members = group
        .members
        .iter()
        .filter_map(|id| directory.users.iter().find(|user| &user.user_id == id))
        .map(|user| member_json(&group, user))
        .collect();
    Ok(page_of("GroupMembers", members, max_results, offset))
}

fn list_joined_groups(seed: &mut Seed, params: &Params) -> Result<Value, ApiFault> {
    let (max_results, offset) = paging(params)?;
    let directory = directory_mut(seed, params)?;
    let user_id = user_mut(directory, params)?.user_id.clone();
    let joined = directory
        .groups
        .iter()
        .filter(|group| group.members.contains(&user_id))
        .map(|group| {
            let mut entry = group_json(group);
            if let Value::Object(fields) = &mut entry {
                fields.remove("CreateTime");
                fields.remove("UpdateTime");
                fields.insert("UserId".into(), json!(user_id));
                fields.insert("JoinTime".into(), json!(USER_CREATE_TIME));
            }
            entry
        })
        .collect();
    Ok(page_of("JoinedGroups", joined, max_results, offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> Seed {
        let users: Vec<Value> = (0..150)
            .map(|i| {
                json!({"userId": format!("u-{i}"), "userName": format!("user{i}"),
                            "userMfaAuthenticationSettings": "Enabled"})
            })
            .collect();
        let everyone: Vec<String> = (0..150).map(|i| format!("u-{i}")).collect();
        Seed::parse(
            &json!({"directories": [{"directoryId": "d-1", "mfaAuthenticationSettings": "Byuser",
                "users": users,
                "groups": [
                    {"groupId": "g-all", "groupName": "everyone", "members": everyone},
                    {"groupId": "g-eng", "groupName": "eng", "description": "Engineers",
                     "members": ["u-1", "u-2"]},
                    {"groupId": "g-ops", "groupName": "Engineering-Ops", "members": ["u-2"]}]}]})
            .to_string(),
            "test",
        )
        .unwrap()
    }

    fn call(seed: &mut Seed, action: &str, pairs: &[(&str, &str)]) -> Result<Value, ApiFault> {
        let params = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        dispatch(seed, CLOUDSSO_VERSION, action, &params).expect("an action of this file")
    }

    fn names(answer: &Value, field: &str, name: &str) -> Vec<String> {
        answer[field]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item[name].as_str().unwrap_or_default().to_string())
            .collect()
    }

    #[test]
    fn list_groups_filters_by_name() {
        let mut seed = seed();
        let eng = call(
            &mut seed,
            "ListGroups",
            &[("DirectoryId", "d-1"), ("Filter", "GroupName eq ENG")],
        )
        .unwrap();
        assert_eq!(names(&eng, "Groups", "GroupName"), ["eng"]);
        assert_eq!(eng["Groups"][0]["Description"], "Engineers");
        let starts = call(
            &mut seed,
            "ListGroups",
            &[("DirectoryId", "d-1"), ("Filter", "groupname sw eng")],
        )
        .unwrap();
        assert_eq!(names(&starts, "Groups", "GroupId"), ["g-eng", "g-ops"]);
        assert_eq!(starts["TotalCounts"], 2);
        let bad = call(
            &mut seed,
            "ListGroups",
            &[("DirectoryId", "d-1"), ("Filter", "UserName eq x")],
        )
        .unwrap_err();
        assert_eq!(bad.code, "InvalidParameter.Filter");
        let group = call(
            &mut seed,
            "GetGroup",
            &[("DirectoryId", "d-1"), ("GroupId", "g-ops")],
        )
        .unwrap();
        assert_eq!(group["Group"]["GroupName"], "Engineering-Ops");
    }

    #[test]
    fn members_page_at_most_a_hundred() {
        let mut seed = seed();
        let first = call(
            &mut seed,
            "ListGroupMembers",
            &[
                ("DirectoryId", "d-1"),
                ("GroupId", "g-all"),
                ("MaxResults", "100"),
            ],
        )
        .unwrap();
        assert_eq!(first["GroupMembers"].as_array().unwrap().len(), 100);
        assert_eq!(first["IsTruncated"], true);
        let token = first["NextToken"].as_str().unwrap().to_string();
        let rest = call(
            &mut seed,
            "ListGroupMembers",
            &[
                ("DirectoryId", "d-1"),
                ("GroupId", "g-all"),
                ("MaxResults", "100"),
                ("NextToken", &token),
            ],
        )
        .unwrap();
        assert_eq!(rest["GroupMembers"].as_array().unwrap().len(), 50);
        assert_eq!(rest["GroupMembers"][49]["UserName"], "user149");
        assert_eq!(rest["IsTruncated"], false);
        let fault = call(
            &mut seed,
            "ListGroupMembers",
            &[
                ("DirectoryId", "d-1"),
                ("GroupId", "g-all"),
                ("MaxResults", "101"),
            ],
        )
        .unwrap_err();
        assert_eq!(fault.code, "InvalidParameter.MaxResults");
        let joined = call(
            &mut seed,
            "ListJoinedGroupsForUser",
            &[("DirectoryId", "d-1"), ("UserId", "u-2")],
        )
        .unwrap();
        assert_eq!(
            names(&joined, "JoinedGroups", "GroupId"),
            ["g-all", "g-eng", "g-ops"]
        );
        assert_eq!(joined["JoinedGroups"][0]["UserId"], "u-2");
    }

    #[test]
    fn unknown_groups_users_and_directories_get_404s() {
        let mut seed = seed();
        for (action, pairs, code) in [
            (
                "GetGroup",
                vec![("DirectoryId", "d-1"), ("GroupId", "g-none")],
                "EntityNotExists.Group",
            ),
            (
                "ListGroupMembers",
                vec![("DirectoryId", "d-1"), ("GroupId", "g-none")],
                "EntityNotExists.Group",
            ),
            (
                "ListGroups",
                vec![("DirectoryId", "d-9")],
                "EntityNotExists.Directory",
            ),
            (
                "ListJoinedGroupsForUser",
                vec![("DirectoryId", "d-1"), ("UserId", "u-none")],
                "EntityNotExists.User",
            ),
        ] {
            let fault = call(&mut seed, action, &pairs).unwrap_err();
            assert_eq!((fault.status, fault.code.as_str()), (404, code), "{action}");
        }
        let missing = call(&mut seed, "GetGroup", &[("DirectoryId", "d-1")]).unwrap_err();
        assert_eq!(missing.code, "MissingParameter");
    }
}
