//! The reconcile of the two RAM kinds that write (RamSecurityPreference, RamUserMfaSetting), in
//! process: real passes against the in-process emulator with the Kubernetes API faked in memory
//! (tests/fakekube), and the kinds' stores filled by hand where ownership needs them.

mod common;
mod fakekube;

use std::sync::Arc;

use cloudsso_mfa_operator::api::{RamSecurityPreference, RamUserMfaSetting};
use cloudsso_mfa_operator::controller::context::{Context, Stores};
use cloudsso_mfa_operator::controller::reconciler::{Kind, reconcile};
use cloudsso_mfa_operator::emulator::Seed;
use common::*;
use fakekube::{object, stored};
use kube::core::DeserializeGuard;
use kube::runtime::{reflector, watcher};
use serde_json::{Value, json};

const BOB: &str = "bob@example.onaliyun.com";
const CI: &str = "ci@example.onaliyun.com";

/// A seed with two RAM users: bob with a console logon (MFA not required) and a device, ci
/// without one; the account `independent`.
fn ram_seed() -> Seed {
    let seed = json!({
        "accessKeys": [{"accessKeyId": ACCESS_KEY_ID, "accessKeySecret": ACCESS_KEY_SECRET}],
        "directories": [],
        "ramUsers": [
            {"userPrincipalName": BOB, "mfaDevice": {"serialNumber": "acs:ram::1234:mfa/bob", "type": "VMFA"},
             "loginProfile": {"mfaBindRequired": false, "passwordResetRequired": false}},
            {"userPrincipalName": CI}],
        "ramSecurityPreference": {"mfaOperationForLogin": "independent", "operationForRiskLogin": "autonomous",
            "enableSaveMfaTicket": false, "allowUserToManageMfaDevices": true}});
    Seed::parse(&seed.to_string(), "RAM test seed").expect("a valid seed")
}

/// The writers of the RAM kinds' stores, to show the claims' rules the objects a watch would.
struct Writers {
    users: reflector::store::Writer<DeserializeGuard<RamUserMfaSetting>>,
    preferences: reflector::store::Writer<DeserializeGuard<RamSecurityPreference>>,
}

impl Writers {
    fn show(&mut self, user: &RamUserMfaSetting) {
        let event = watcher::Event::Apply(DeserializeGuard(Ok(user.clone())));
        self.users.apply_watcher_event(&event);
    }

    fn show_preference(&mut self, preference: &RamSecurityPreference) {
        let event = watcher::Event::Apply(DeserializeGuard(Ok(preference.clone())));
        self.preferences.apply_watcher_event(&event);
    }
}

/// A context on the fake API, as `run_controllers` builds one (no watches).
fn context(client: kube::Client) -> (Arc<Context>, Writers) {
    let (ram_users, users) = reflector::store();
    let (ram_preferences, preferences) = reflector::store();
    let stores = Stores {
        policies: reflector::store().0,
        users: reflector::store().0,
        ram_preferences,
        ram_users,
        user_policies: reflector::store().0,
    };
    (
        fakekube::context_with(client, stores),
        Writers { users, preferences },
    )
}

fn with_keys(url: &str, spec: Value) -> Value {
    let mut full = json!({"endpoint": url, "credentialsSecretRef": {"name": "keys"}});
    full.as_object_mut()
        .unwrap()
        .extend(spec.as_object().unwrap().clone());
    full
}

fn condition(status: &Value, type_: &str) -> (String, String, String) {
    let found = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == type_)
        .cloned()
        .unwrap_or_default();
    let text = |key: &str| found[key].as_str().unwrap_or_default().to_string();
    (text("status"), text("reason"), text("message"))
}

fn bob_required(state: &Value) -> bool {
    state["ramUsers"][0]["loginProfile"]["mfaBindRequired"]
        .as_bool()
        .unwrap_or_default()
}

#[tokio::test]
async fn a_preference_writes_only_what_it_names_and_repairs_drift() {
    let (url, _state) = start_emulator_with(ram_seed()).await;
    let (client, server) = fakekube::with_keys(ACCESS_KEY_ID, ACCESS_KEY_SECRET);
    let (ctx, _) = context(client);
    let spec = with_keys(
        &url,
        json!({"mfaOperationForLogin": "mandatory", "enableSaveMfaTicket": true, "deletionPolicy": "Restore"}),
    );
    let (preference, path) = object::<RamSecurityPreference>(
        &server,
        "ramsecuritypreferences",
        "account",
        "2026-12-01T00:00:00Z",
        spec,
    );
    reconcile(Arc::new(preference), ctx.clone()).await.unwrap();
    let cloud = state(&url).await["ramSecurityPreference"].clone();
    assert_eq!(cloud["mfaOperationForLogin"], "mandatory", "{cloud}");
    assert_eq!(cloud["enableSaveMfaTicket"], true);
    // Not named: as it was.
    assert_eq!(cloud["operationForRiskLogin"], "autonomous");
    assert_eq!(cloud["allowUserToManageMfaDevices"], true);
    assert_eq!(all_calls(&url, "SetSecurityPreference").await, 1);
    let status = server.lock().unwrap().last_status(&path).unwrap();
    assert_eq!(status["observed"]["mfaOperationForLogin"], "mandatory");
    assert_eq!(status["restoreTo"]["mfaOperationForLogin"], "independent");
    assert_eq!(condition(&status, "Ready").0, "True", "{status}");
    assert_eq!(condition(&status, "Synced").1, "Updated");

    // A console change is set back, and said so.
    change_state(&url, |s| {
        s["ramSecurityPreference"]["mfaOperationForLogin"] = json!("adaptive")
    })
    .await;
    let current = stored::<RamSecurityPreference>(&server, &path);
    ctx.passes.marks.mark(&current);
    reconcile(Arc::new(current), ctx.clone()).await.unwrap();
    let cloud = state(&url).await["ramSecurityPreference"].clone();
    assert_eq!(cloud["mfaOperationForLogin"], "mandatory");
    let status = server.lock().unwrap().last_status(&path).unwrap();
    assert_eq!(condition(&status, "Synced").1, "DriftRepaired", "{status}");
    assert!(
        server
            .lock()
            .unwrap()
            .events
            .contains(&"DriftRepaired".to_string())
    );

    // Restore on delete: only the named fields go back.
    change_state(&url, |s| {
        s["ramSecurityPreference"]["allowUserToManageMfaDevices"] = json!(false)
    })
    .await;
    let deleted = stored::<RamSecurityPreference>(&server, &path);
    deleted.cleanup(&ctx).await.unwrap();
    let cloud = state(&url).await["ramSecurityPreference"].clone();
    assert_eq!(cloud["mfaOperationForLogin"], "independent", "{cloud}");
    assert_eq!(cloud["enableSaveMfaTicket"], false);
    assert_eq!(
        cloud["allowUserToManageMfaDevices"], false,
        "not named: left"
    );
    assert!(
        server
            .lock()
            .unwrap()
            .events
            .contains(&"Restored".to_string())
    );
}

#[tokio::test]
async fn an_observe_preference_never_writes() {
    let (url, _state) = start_emulator_with(ram_seed()).await;
    let (client, server) = fakekube::with_keys(ACCESS_KEY_ID, ACCESS_KEY_SECRET);
    let (ctx, _) = context(client);
    let spec = with_keys(
        &url,
        json!({"mfaOperationForLogin": "mandatory", "managementPolicy": "Observe"}),
    );
    let (preference, path) = object::<RamSecurityPreference>(
        &server,
        "ramsecuritypreferences",
        "watch",
        "2026-12-01T00:00:00Z",
        spec,
    );
    reconcile(Arc::new(preference), ctx).await.unwrap();
    assert_eq!(write_calls(&url).await, 0);
    let status = server.lock().unwrap().last_status(&path).unwrap();
    let ready = condition(&status, "Ready");
    assert_eq!((ready.0.as_str(), ready.1.as_str()), ("False", "Drifted"));
    assert!(
        ready.2.contains("from independent to mandatory"),
        "{}",
        ready.2
    );
}

#[tokio::test]
async fn a_user_is_enforced_reports_its_device_and_follows_the_account() {
    let (url, _state) = start_emulator_with(ram_seed()).await;
    let (client, server) = fakekube::with_keys(ACCESS_KEY_ID, ACCESS_KEY_SECRET);
    let (ctx, mut writers) = context(client);
    let spec = with_keys(
        &url,
        json!({"userPrincipalName": BOB, "mfaBindRequired": true, "deletionPolicy": "Restore"}),
    );
    let (user, path) = object::<RamUserMfaSetting>(
        &server,
        "ramusermfasettings",
        "bob",
        "2026-12-01T00:00:00Z",
        spec.clone(),
    );
    writers.show(&user);
    reconcile(Arc::new(user), ctx.clone()).await.unwrap();
    assert!(bob_required(&state(&url).await));
    let status = server.lock().unwrap().last_status(&path).unwrap();
    assert_eq!(status["observed"]["mfaBindRequired"], true, "{status}");
    assert_eq!(status["restoreTo"]["mfaBindRequired"], false);
    assert_eq!(status["device"]["serialNumber"], "acs:ram::1234:mfa/bob");
    assert_eq!(
        condition(&status, "Effective").1,
        "RamPreferenceIndependent"
    );
    assert_eq!(all_calls(&url, "UpdateLoginProfile").await, 1);
    // Written once: GetLoginProfile once (no read back), one preference read.
    assert_eq!(all_calls(&url, "GetLoginProfile").await, 1);
    assert_eq!(all_calls(&url, "GetSecurityPreference").await, 1);

    // A younger resource for the same user (any case of its name) is not applied.
    let younger_spec = with_keys(
        &url,
        json!({"userPrincipalName": "BOB@example.onaliyun.com", "mfaBindRequired": false}),
    );
    let (younger, younger_path) = object::<RamUserMfaSetting>(
        &server,
        "ramusermfasettings",
        "bob-again",
        "2026-12-02T00:00:00Z",
        younger_spec,
    );
    writers.show(&younger);
    let error = reconcile(Arc::new(younger), ctx.clone()).await.unwrap_err();
    assert!(error.to_string().contains("team/bob"), "{error}");
    let status = server.lock().unwrap().last_status(&younger_path).unwrap();
    assert_eq!(condition(&status, "Ready").1, "Conflict", "{status}");
    assert!(
        bob_required(&state(&url).await),
        "the younger wrote nothing"
    );

    // The account turns mandatory: its RamSecurityPreference's pass shares what it saw, and the
    // user's next pass says the setting has no effect, with no read of its own.
    let preference_spec = with_keys(&url, json!({"mfaOperationForLogin": "mandatory"}));
    let (preference, _) = object::<RamSecurityPreference>(
        &server,
        "ramsecuritypreferences",
        "account",
        "2026-12-01T00:00:00Z",
        preference_spec,
    );
    reconcile(Arc::new(preference), ctx.clone()).await.unwrap();
    let reads = all_calls(&url, "GetSecurityPreference").await;
    let current = stored::<RamUserMfaSetting>(&server, &path);
    ctx.passes.marks.mark(&current);
    reconcile(Arc::new(current), ctx.clone()).await.unwrap();
    let status = server.lock().unwrap().last_status(&path).unwrap();
    let effective = condition(&status, "Effective");
    assert_eq!(effective.0, "False");
    assert_eq!(effective.1, "RamPreferenceOverrides");
    assert!(effective.2.contains("mandatory"), "{}", effective.2);
    assert_eq!(all_calls(&url, "GetSecurityPreference").await, reads);

    // Restore on delete.
    let deleted = stored::<RamUserMfaSetting>(&server, &path);
    deleted.cleanup(&ctx).await.unwrap();
    assert!(!bob_required(&state(&url).await));
}

#[tokio::test]
async fn a_user_without_a_login_profile_is_not_written_and_not_retried_hot() {
    let (url, _state) = start_emulator_with(ram_seed()).await;
    let (client, server) = fakekube::with_keys(ACCESS_KEY_ID, ACCESS_KEY_SECRET);
    let (ctx, _) = context(client);
    let spec = with_keys(
        &url,
        json!({"userPrincipalName": CI, "mfaBindRequired": true}),
    );
    let (user, path) = object::<RamUserMfaSetting>(
        &server,
        "ramusermfasettings",
        "ci",
        "2026-12-01T00:00:00Z",
        spec,
    );
    let error = reconcile(Arc::new(user), ctx).await.unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    assert_eq!(write_calls(&url).await, 0);
    let status = server.lock().unwrap().last_status(&path).unwrap();
    let ready = condition(&status, "Ready");
    assert_eq!(
        (ready.0.as_str(), ready.1.as_str()),
        ("False", "NoLoginProfile")
    );
    assert!(ready.2.contains(CI), "{}", ready.2);
    assert!(status.get("observed").is_none(), "{status}");
}

#[tokio::test]
async fn two_preferences_for_one_account_the_younger_is_not_applied() {
    let (url, _state) = start_emulator_with(ram_seed()).await;
    let (client, server) = fakekube::with_keys(ACCESS_KEY_ID, ACCESS_KEY_SECRET);
    let (ctx, mut writers) = context(client);
    let (owner, owner_path) = object::<RamSecurityPreference>(
        &server,
        "ramsecuritypreferences",
        "owner",
        "2026-12-01T00:00:00Z",
        with_keys(&url, json!({"mfaOperationForLogin": "independent"})),
    );
    let (younger, path) = object::<RamSecurityPreference>(
        &server,
        "ramsecuritypreferences",
        "younger",
        "2026-12-02T00:00:00Z",
        with_keys(&url, json!({"mfaOperationForLogin": "mandatory"})),
    );
    writers.show_preference(&owner);
    writers.show_preference(&younger);
    reconcile(Arc::new(owner), ctx.clone()).await.unwrap();
    let error = reconcile(Arc::new(younger), ctx.clone()).await.unwrap_err();
    assert!(error.to_string().contains("team/owner"), "{error}");
    let status = server.lock().unwrap().last_status(&path).unwrap();
    assert_eq!(condition(&status, "Ready").1, "Conflict", "{status}");
    assert_eq!(
        write_calls(&url).await,
        0,
        "neither wrote: the owner matched already"
    );
    assert_eq!(
        all_calls(&url, "GetSecurityPreference").await,
        1,
        "the younger read nothing"
    );
    // The owner names its contender once it knows of it.
    reconcile(
        Arc::new(stored::<RamSecurityPreference>(&server, &owner_path)),
        ctx.clone(),
    )
    .await
    .unwrap();
    let status = server.lock().unwrap().last_status(&owner_path).unwrap();
    assert_eq!(status["contenders"], json!(["team/younger"]), "{status}");
}

#[tokio::test]
async fn without_an_account_that_admits_them_no_call_is_made() {
    let (url, _state) = start_emulator_with(ram_seed()).await;
    let (client, server) = fakekube::with_keys(ACCESS_KEY_ID, ACCESS_KEY_SECRET);
    let (ctx, _) = context(client);
    // Neither accountRef nor credentialsSecretRef: the CloudAccount `default`, which is missing.
    let (preference, preference_path) = object::<RamSecurityPreference>(
        &server,
        "ramsecuritypreferences",
        "account",
        "2026-12-01T00:00:00Z",
        json!({"mfaOperationForLogin": "mandatory"}),
    );
    let (user, user_path) = object::<RamUserMfaSetting>(
        &server,
        "ramusermfasettings",
        "bob",
        "2026-12-01T00:00:00Z",
        json!({"userPrincipalName": BOB, "mfaBindRequired": true, "accountRef": {"name": "corp"}}),
    );
    for error in [
        reconcile(Arc::new(preference), ctx.clone())
            .await
            .unwrap_err(),
        reconcile(Arc::new(user), ctx.clone()).await.unwrap_err(),
    ] {
        assert_eq!(error.reason().as_str(), "AccountNotAllowed", "{error}");
    }
    for path in [preference_path, user_path] {
        let status = server.lock().unwrap().last_status(&path).unwrap();
        assert_eq!(
            condition(&status, "Ready").1,
            "AccountNotAllowed",
            "{status}"
        );
    }
    let calls = reqwest_get(&format!("{url}/_emulator/calls")).await;
    assert_eq!(calls, json!({}), "no cloud call at all");
}
