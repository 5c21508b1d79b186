//! Helpers shared by the in-process integration tests: an emulator on a free loopback port.
#![allow(dead_code)]

use cloudsso_mfa_operator::emulator::{self, Seed, SharedState};

pub const ACCESS_KEY_ID: &str = "LTAI5tTestKey";
pub const ACCESS_KEY_SECRET: &str = "test-secret";
pub const DIRECTORY: &str = "d-00fc2p61abcd";

pub fn seed() -> Seed {
    Seed::parse(
        &format!(
            r#"{{
      "accessKeys": [{{"accessKeyId": "{ACCESS_KEY_ID}", "accessKeySecret": "{ACCESS_KEY_SECRET}"}}],
      "directories": [{{"directoryId": "{DIRECTORY}", "mfaAuthenticationSettings": "Byuser",
        "operationForRiskLogin": "Autonomous",
        "users": [
          {{"userId": "u-00q8wbq42wiltcrk0001", "userName": "alice", "userMfaAuthenticationSettings": "Enabled",
            "mfaDevices": [
              {{"deviceId": "mfa-a1", "deviceName": "Alice-MFA1", "deviceType": "TOTP", "effectiveTime": "2021-10-29T09:14:06Z"}},
              {{"deviceId": "mfa-a2", "deviceName": "Alice-Passkey", "deviceType": "PlatformPasskey", "effectiveTime": "2024-01-02T03:04:05Z"}}]}},
          {{"userId": "u-00q8wbq42wiltcrk0002", "userName": "bob", "userMfaAuthenticationSettings": "Disabled"}},
          {{"userId": "u-00q8wbq42wiltcrk0003", "userName": "carol", "userMfaAuthenticationSettings": "Enabled",
            "mfaDevices": [{{"deviceId": "mfa-c1", "deviceName": "Carol-Key", "deviceType": "CrossPlatformPasskey", "effectiveTime": "2025-05-05T05:05:05Z"}}]}}
        ]}}],
      "ramUsers": [{{"userPrincipalName": "bob@example.onaliyun.com", "mfaDevice": {{"serialNumber": "acs:ram::1234:mfa/bob", "type": "VMFA"}}}}]
    }}"#
        ),
        "test seed",
    )
    .expect("test seed is valid")
}

/// Starts an emulator; returns its base URL and state.
pub async fn start_emulator() -> (String, SharedState) {
    start_emulator_with(seed()).await
}

/// Every call the emulator counted, whatever the action and outcome.
pub async fn every_call(url: &str) -> u64 {
    let body = reqwest_get(&format!("{url}/_emulator/calls")).await;
    body.as_object()
        .into_iter()
        .flat_map(|actions| actions.values())
        .flat_map(|outcomes| outcomes.as_object().into_iter().flat_map(|o| o.values()))
        .filter_map(serde_json::Value::as_u64)
        .sum()
}

/// Calls counted by the emulator for `action` with `outcome`.
pub async fn calls(url: &str, action: &str, outcome: &str) -> u64 {
    let body: serde_json::Value = reqwest_get(&format!("{url}/_emulator/calls")).await;
    body[action][outcome].as_u64().unwrap_or(0)
}

pub async fn reqwest_get(url: &str) -> serde_json::Value {
    cloudsso_mfa_operator::cloud::http_client()
        .unwrap()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub async fn put_json(url: &str, body: serde_json::Value) -> u16 {
    cloudsso_mfa_operator::cloud::http_client()
        .unwrap()
        .put(url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Sets the emulator's faults (`{}` clears them).
pub async fn set_faults(url: &str, faults: serde_json::Value) {
    assert_eq!(
        put_json(&format!("{url}/_emulator/faults"), faults).await,
        200
    );
}

/// Reads the emulator's state, lets `change` edit it, and writes it back (a console change).
pub async fn change_state(url: &str, change: impl FnOnce(&mut serde_json::Value)) {
    let mut state = reqwest_get(&format!("{url}/_emulator/state")).await;
    change(&mut state);
    assert_eq!(
        put_json(&format!("{url}/_emulator/state"), state).await,
        200
    );
}

pub async fn state(url: &str) -> serde_json::Value {
    reqwest_get(&format!("{url}/_emulator/state")).await
}

/// Total calls of `action`, any outcome.
pub async fn all_calls(url: &str, action: &str) -> u64 {
    let body = reqwest_get(&format!("{url}/_emulator/calls")).await;
    body[action]
        .as_object()
        .map(|outcomes| outcomes.values().filter_map(|v| v.as_u64()).sum())
        .unwrap_or(0)
}

/// Calls of any action whose name starts with `Update`.
pub async fn write_calls(url: &str) -> u64 {
    let body = reqwest_get(&format!("{url}/_emulator/calls")).await;
    body.as_object()
        .map(|actions| {
            actions
                .iter()
                .filter(|(action, _)| action.starts_with("Update") || action.starts_with("Set"))
                .flat_map(|(_, outcomes)| outcomes.as_object().into_iter().flat_map(|o| o.values()))
                .filter_map(|v| v.as_u64())
                .sum()
        })
        .unwrap_or(0)
}

/// The directory's MFA setting in an emulator state.
pub fn directory_setting(state: &serde_json::Value) -> String {
    state["directories"][0]["mfaAuthenticationSettings"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A user's own MFA setting in an emulator state.
pub fn cloud_user_setting(state: &serde_json::Value, user_id: &str) -> String {
    state["directories"][0]["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["userId"] == user_id)
        .map(|u| {
            u["userMfaAuthenticationSettings"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .unwrap_or_default()
}

/// A seed whose directory has `users` users (`user0`, `user1`, ...: ids `u-large<i>`, every
/// third Disabled, every other one with a device), for the cost tests.
pub fn large_seed(users: usize) -> Seed {
    let users: Vec<serde_json::Value> = (0..users)
        .map(|i| {
            let devices: Vec<serde_json::Value> = (i % 2 == 1)
                .then(|| serde_json::json!({"deviceId": format!("mfa-large{i}"), "deviceName": format!("user{i}-totp"),
                    "deviceType": "TOTP", "effectiveTime": "2025-01-01T00:00:00Z"}))
                .into_iter()
                .collect();
            serde_json::json!({"userId": format!("u-large{i}"), "userName": format!("user{i}"),
                "userMfaAuthenticationSettings": if i % 3 == 0 { "Disabled" } else { "Enabled" },
                "mfaDevices": devices})
        })
        .collect();
    let seed = serde_json::json!({
        "accessKeys": [{"accessKeyId": ACCESS_KEY_ID, "accessKeySecret": ACCESS_KEY_SECRET}],
        "directories": [{"directoryId": DIRECTORY, "mfaAuthenticationSettings": "Byuser", "users": users}]});
    Seed::parse(&seed.to_string(), "large test seed").expect("large seed is valid")
}

/// Starts an emulator with `seed`; returns its base URL and state.
pub async fn start_emulator_with(seed: Seed) -> (String, SharedState) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (url, emulator::spawn(listener, seed))
}
