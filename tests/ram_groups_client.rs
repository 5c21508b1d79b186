//! The typed operations a RamSecurityPreference, a RamUserMfaSetting and a UserMfaPolicy read
//! and write, over real HTTP against the in-process emulator: the security preference written
//! field by field, login profiles and their two distinct errors, the RAM user list across
//! Marker pages, groups by name, members across pages of 100, users by name prefix, and what
//! each write leaves in the emulator's writes log.

mod common;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use cloudsso_mfa_operator::cloud::groups::GroupsClient;
use cloudsso_mfa_operator::cloud::ims::{LoginProfileUpdate, MissingLogin, SecurityPreference};
use cloudsso_mfa_operator::cloud::{
    self, ApiClient, ApiErrorKind, ClientConfig, CloudSsoClient, CredentialSource, Credentials,
    Endpoint, ImsClient, cloudsso, ims,
};
use cloudsso_mfa_operator::emulator::Seed;
use common::*;
use serde_json::{Value, json};

fn api(url: &str, version: &'static str) -> ApiClient {
    let config = ClientConfig {
        qps: NonZeroU32::new(100).unwrap(),
        max_attempts: 2,
        base_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(100),
        timeout: Duration::from_secs(5),
    };
    ApiClient::new(
        cloud::http_client().unwrap(),
        Endpoint::parse(url).unwrap(),
        version,
        Arc::new(CredentialSource::Static(
            Credentials::new(ACCESS_KEY_ID, ACCESS_KEY_SECRET, None).unwrap(),
        )),
        cloud::rate_limiter(config.qps),
        config,
    )
}

fn ims_client(url: &str) -> ImsClient {
    ImsClient::new(api(url, ims::VERSION))
}

fn groups_client(url: &str) -> GroupsClient {
    CloudSsoClient::new(api(url, cloudsso::VERSION)).groups()
}

/// 230 users (`eng0`.. `eng119`, `ops0`.. `ops109`), a group of every engineer and a small one;
/// three RAM users: one with a console logon that must bind MFA, one without, one plain.
fn seed() -> Seed {
    let mut users: Vec<Value> = Vec::new();
    for (prefix, count) in [("eng", 120), ("ops", 110)] {
        for i in 0..count {
            users.push(
                json!({"userId": format!("u-{prefix}{i}"), "userName": format!("{prefix}{i}"),
                              "userMfaAuthenticationSettings": "Enabled"}),
            );
        }
    }
    let engineers: Vec<String> = (0..120).map(|i| format!("u-eng{i}")).collect();
    let text = json!({
        "accessKeys": [{"accessKeyId": ACCESS_KEY_ID, "accessKeySecret": ACCESS_KEY_SECRET}],
        "directories": [{"directoryId": DIRECTORY, "mfaAuthenticationSettings": "Byuser",
            "users": users,
            "groups": [
                {"groupId": "g-engineering", "groupName": "Engineering", "members": engineers},
                {"groupId": "g-oncall", "groupName": "oncall", "members": ["u-ops1", "u-eng7"]}]}],
        "ramUsers": [
            {"userPrincipalName": "bob@example.onaliyun.com",
             "mfaDevice": {"serialNumber": "acs:ram::1234:mfa/bob", "type": "VMFA"},
             "loginProfile": {"mfaBindRequired": true}},
            {"userPrincipalName": "carol@example.onaliyun.com"},
            {"userPrincipalName": "dave@example.onaliyun.com", "loginProfile": {}}],
    });
    Seed::parse(&text.to_string(), "test").unwrap()
}

async fn writes(url: &str) -> Vec<Value> {
    reqwest_get(&format!("{url}/_emulator/writes"))
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn the_security_preference_is_written_field_by_field() {
    let (url, _state) = start_emulator_with(seed()).await;
    let ims = ims_client(&url);
    let before = ims.get_security_preference().await.unwrap();
    assert_eq!(
        before,
        SecurityPreference {
            mfa_operation_for_login: Some("independent".into()),
            operation_for_risk_login: Some("autonomous".into()),
            enable_save_mfa_ticket: Some(false),
            allow_user_to_manage_mfa_devices: Some(true),
        }
    );
    let after = ims
        .set_security_preference(&SecurityPreference {
            mfa_operation_for_login: Some("mandatory".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(after.mfa_operation_for_login.as_deref(), Some("mandatory"));
    assert_eq!(
        after.allow_user_to_manage_mfa_devices,
        Some(true),
        "left as it was"
    );
    let sent = writes(&url).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["action"], "SetSecurityPreference");
    let state = state(&url).await;
    assert_eq!(
        state["ramSecurityPreference"]["mfaOperationForLogin"],
        "mandatory"
    );

    // Nothing to write: a read, not a write.
    ims.set_security_preference(&SecurityPreference::default())
        .await
        .unwrap();
    assert_eq!(writes(&url).await.len(), 1);

    let error = ims
        .set_security_preference(&SecurityPreference {
            operation_for_risk_login: Some("EnforceVerify".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some("InvalidParameter.OperationForRiskLogin"));
    assert_eq!(error.api_kind(), Some(ApiErrorKind::InvalidParameter));
    assert_eq!(
        ims.get_security_preference().await.unwrap(),
        after,
        "a refused write changes nothing"
    );
    assert!(!ims.get_account_mfa_enabled().await.unwrap());
}

#[tokio::test]
async fn login_profiles_tell_no_console_logon_from_no_such_user() {
    let (url, _state) = start_emulator_with(seed()).await;
    let ims = ims_client(&url);
    let bob = ims
        .get_login_profile("bob@example.onaliyun.com")
        .await
        .unwrap();
    assert!(bob.mfa_bind_required && !bob.password_reset_required);
    assert_eq!(bob.status.as_deref(), Some("Active"));

    let dave = ims
        .update_login_profile(
            "dave@example.onaliyun.com",
            &LoginProfileUpdate {
                mfa_bind_required: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(dave.mfa_bind_required);
    assert_eq!(dave.user_principal_name, "dave@example.onaliyun.com");
    let state = state(&url).await;
    assert_eq!(
        state["ramUsers"][2]["loginProfile"]["mfaBindRequired"],
        true
    );
    let sent = writes(&url).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["action"], "UpdateLoginProfile");
    assert_eq!(sent[0]["userPrincipalName"], "dave@example.onaliyun.com");

    let none = ims
        .get_login_profile("carol@example.onaliyun.com")
        .await
        .unwrap_err();
    assert_eq!(MissingLogin::of(&none), Some(MissingLogin::NoLoginProfile));
    assert!(!none.is_retryable());
    let update_none = ims
        .update_login_profile(
            "carol@example.onaliyun.com",
            &LoginProfileUpdate {
                mfa_bind_required: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(
        MissingLogin::of(&update_none),
        Some(MissingLogin::NoLoginProfile)
    );
    let nobody = ims
        .get_login_profile("nobody@example.onaliyun.com")
        .await
        .unwrap_err();
    assert_eq!(MissingLogin::of(&nobody), Some(MissingLogin::NoSuchUser));
    assert_eq!(nobody.api_kind(), Some(ApiErrorKind::NotFound));
    let throttled = cloudsso_mfa_operator::cloud::CloudError::Transport {
        action: "GetLoginProfile".into(),
        endpoint: url.clone(),
        detail: "reset".into(),
        timeout: false,
    };
    assert_eq!(MissingLogin::of(&throttled), None);
    // The calls that name a RAM user count for that user, as CloudSSO's count by UserId.
    let by_user = reqwest_get(&format!("{url}/_emulator/calls/users")).await;
    assert_eq!(by_user["GetLoginProfile"]["bob@example.onaliyun.com"], 1);
    assert_eq!(
        by_user["UpdateLoginProfile"]["carol@example.onaliyun.com"],
        1
    );
}

#[tokio::test]
async fn ram_users_are_listed_across_marker_pages() {
    let (url, _state) = start_emulator_with(seed()).await;
    change_state(&url, |state| {
        let users: Vec<Value> = (0..1005)
            .map(|i| json!({"userPrincipalName": format!("user{i:04}@example.onaliyun.com")}))
            .collect();
        state["ramUsers"] = json!(users);
    })
    .await;
    let users = ims_client(&url).list_users().await.unwrap();
    assert_eq!(users.len(), 1005);
    assert_eq!(
        users[1004].user_principal_name,
        "user1004@example.onaliyun.com"
    );
    assert_eq!(users[0].display_name.as_deref(), Some("user0000"));
    assert_eq!(calls(&url, "ListUsers", "ok").await, 2, "1000 a page");
}

#[tokio::test]
async fn groups_members_and_prefixes_read_every_page() {
    let (url, _state) = start_emulator_with(seed()).await;
    let groups = groups_client(&url);
    let engineering = groups
        .find_group_by_name(DIRECTORY, "engineering")
        .await
        .unwrap()
        .expect("found without case");
    assert_eq!(engineering.group_id, "g-engineering");
    assert_eq!(engineering.provision_type.as_deref(), Some("Manual"));
    assert!(
        groups
            .find_group_by_name(DIRECTORY, "nobody")
            .await
            .unwrap()
            .is_none()
    );
    let all = groups.list_groups(DIRECTORY, None).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(
        groups
            .get_group(DIRECTORY, "g-oncall")
            .await
            .unwrap()
            .group_name,
        "oncall"
    );

    let members = groups
        .list_group_members(DIRECTORY, "g-engineering")
        .await
        .unwrap();
    assert_eq!(members.len(), 120);
    assert_eq!(members[119].user_name, "eng119");
    assert_eq!(calls(&url, "ListGroupMembers", "ok").await, 2, "100 a page");
    let joined = groups
        .list_joined_groups(DIRECTORY, "u-eng7")
        .await
        .unwrap();
    let joined: Vec<&str> = joined.iter().map(|g| g.group_id.as_str()).collect();
    assert_eq!(joined, ["g-engineering", "g-oncall"]);

    let ops = groups.list_users_by_prefix(DIRECTORY, "OPS").await.unwrap();
    assert_eq!(ops.len(), 110);
    assert!(ops.iter().all(|user| user.user_name.starts_with("ops")));
    assert_eq!(
        groups
            .list_users_by_prefix(DIRECTORY, "eng11")
            .await
            .unwrap()
            .len(),
        11,
        "eng11 and eng110..eng119"
    );

    for error in [
        groups
            .list_group_members(DIRECTORY, "g-gone")
            .await
            .unwrap_err(),
        groups.get_group(DIRECTORY, "g-gone").await.unwrap_err(),
    ] {
        assert_eq!(error.code(), Some("EntityNotExists.Group"));
        assert_eq!(error.api_kind(), Some(ApiErrorKind::NotFound));
    }
    let error = groups
        .list_joined_groups(DIRECTORY, "u-gone")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some("EntityNotExists.User"));
    let error = groups.list_groups("d-gone", None).await.unwrap_err();
    assert_eq!(error.code(), Some("EntityNotExists.Directory"));
    assert!(writes(&url).await.is_empty(), "reads write nothing");
}

#[tokio::test]
async fn membership_changes_show_at_the_next_read() {
    let (url, _state) = start_emulator_with(seed()).await;
    let groups = groups_client(&url);
    let before = groups
        .list_group_members(DIRECTORY, "g-oncall")
        .await
        .unwrap();
    assert_eq!(before.len(), 2);
    change_state(&url, |state| {
        state["directories"][0]["groups"][1]["members"] = json!(["u-ops2"]);
    })
    .await;
    let after = groups
        .list_group_members(DIRECTORY, "g-oncall")
        .await
        .unwrap();
    let names: Vec<&str> = after.iter().map(|m| m.user_name.as_str()).collect();
    assert_eq!(names, ["ops2"]);
    // A state that names a member the directory lacks is refused, as a seed would be.
    let mut bad = state(&url).await;
    bad["directories"][0]["groups"][1]["members"] = json!(["u-nobody"]);
    assert_eq!(put_json(&format!("{url}/_emulator/state"), bad).await, 400);
}
