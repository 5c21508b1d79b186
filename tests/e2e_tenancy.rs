//! Tenancy end to end (a real kube-apiserver, the operator process, the emulator): a namespace
//! reaches only what a CloudAccount grants it, the API server refuses endpoints beside accounts,
//! and ownership is decided by what the cloud means (account, endpoint, directory, user), so a
//! squatter blocks nobody and two namespaces never fight over one user.
//!
//! CloudAccounts are cluster-scoped (and `default` is one name for the whole cluster), and some
//! tests run an operator over every namespace: the tests of this file run one at a time.

mod common;
mod harness;

use std::time::Duration;

use cloudsso_mfa_operator::api::{
    CloudAccount, DirectoryMfaPolicy, RamUserMfaStatus, UserMfaSetting,
};
use common::*;
use harness::{SECRET, TestContext, WAIT, eventually, ready};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;

const ALICE: &str = "u-00q8wbq42wiltcrk0001";

/// One test at a time (see the file's note).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The operator's own credentials (the emulator's key), as a pod's environment would hold them.
const OPERATOR_ENV: [(&str, &str); 2] = [
    ("ALIBABA_CLOUD_ACCESS_KEY_ID", ACCESS_KEY_ID),
    ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", ACCESS_KEY_SECRET),
];

/// Applies a CloudAccount `name` with `spec`.
async fn account(ctx: &TestContext, name: &str, spec: serde_json::Value) {
    let api: Api<CloudAccount> = Api::all(ctx.client.clone());
    let object = json!({"apiVersion": "cloudsso.mfa-operator.dev/v1alpha1", "kind": "CloudAccount",
        "metadata": {"name": name}, "spec": spec});
    api.patch(
        name,
        &PatchParams::apply("cloudsso-e2e").force(),
        &Patch::Apply(&object),
    )
    .await
    .unwrap_or_else(|error| panic!("apply CloudAccount {name}: {error}"));
}

async fn delete_account(ctx: &TestContext, name: &str) {
    let api: Api<CloudAccount> = Api::all(ctx.client.clone());
    let _ = api.delete(name, &DeleteParams::default()).await;
}

/// Sets label `key=value` on the test's namespace.
async fn label_namespace(ctx: &TestContext, namespace: &str, key: &str, value: &str) {
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    api.patch(
        namespace,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {key: value}}})),
    )
    .await
    .expect("label namespace");
}

/// Every call the emulator answered, of any action and outcome.
async fn total_calls(url: &str) -> u64 {
    let body = reqwest_get(&format!("{url}/_emulator/calls")).await;
    body.as_object()
        .map(|actions| {
            actions
                .values()
                .flat_map(|outcomes| outcomes.as_object().into_iter().flat_map(|o| o.values()))
                .filter_map(|v| v.as_u64())
                .sum()
        })
        .unwrap_or(0)
}

/// Waits until `name` shows Ready with `reason`; returns the message. On timeout the panic
/// shows the last object and the operator's log.
async fn wait_reason<K: cloudsso_mfa_operator::controller::reconciler::Kind>(
    ctx: &TestContext,
    name: &str,
    reason: &str,
    operator: &harness::Operator,
) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let object = ctx.get::<K>(name).await;
        let found = object.as_ref().and_then(|o| ready(&o.status().cloned()));
        match found {
            Some((_, r, message)) if r == reason => return message,
            _ if tokio::time::Instant::now() >= deadline => panic!(
                "{name}: no Ready reason {reason} in {WAIT:?}; last: {object:#?}\n{}",
                operator.log_tail()
            ),
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

fn suffix() -> String {
    format!("{:05}", rand::random::<u32>() % 100_000)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_namespace_the_account_does_not_admit_makes_no_cloud_call() {
    let _serial = SERIAL.lock().await;
    harness::with_namespace("tenancy-admit", |ctx| async move {
        let (url, _emulator) = start_emulator().await;
        let tag = suffix();
        let named = format!("team-{tag}");
        let selector = json!({"matchLabels": {"cloudsso-e2e/team": tag}});
        account(&ctx, &named, json!({"endpoint": url, "credentials": {"operator": {}}, "namespaceSelector": selector})).await;
        account(&ctx, "default", json!({"endpoint": url, "credentials": {"operator": {}}, "namespaceSelector": selector})).await;
        // The operator holds its own credentials: an unadmitted namespace must not reach them.
        let operator = ctx.start_operator("3s", &OPERATOR_ENV).await;
        ctx.apply::<DirectoryMfaPolicy>(json!({"metadata": {"name": "by-ref"}, "spec": {
            "directoryId": DIRECTORY, "mfaAuthenticationSettings": "Enabled", "accountRef": {"name": named}}})).await;
        ctx.apply::<UserMfaSetting>(json!({"metadata": {"name": "by-default"}, "spec": {
            "directoryId": DIRECTORY, "userId": ALICE, "userMfaAuthenticationSettings": "Disabled"}})).await;
        ctx.apply::<RamUserMfaStatus>(json!({"metadata": {"name": "ram"}, "spec": {
            "userPrincipalName": "bob@example.onaliyun.com", "accountRef": {"name": named}}})).await;
        let message = wait_reason::<DirectoryMfaPolicy>(&ctx, "by-ref", "AccountNotAllowed", &operator).await;
        assert!(message.contains(&named) && message.contains(&ctx.namespace), "{message}");
        let message = wait_reason::<UserMfaSetting>(&ctx, "by-default", "AccountNotAllowed", &operator).await;
        assert!(message.contains("default"), "{message}");
        wait_reason::<RamUserMfaStatus>(&ctx, "ram", "AccountNotAllowed", &operator).await;
        assert!(
            ctx.events_for("by-ref").await.iter().any(|(reason, _)| reason == "AccountNotAllowed"),
            "an Event says why"
        );
        // Several resyncs later, still not one call of any kind reached the cloud.
        tokio::time::sleep(Duration::from_secs(7)).await;
        assert_eq!(total_calls(&url).await, 0, "{}", operator.log_tail());
        assert_eq!(cloud_user_setting(&state(&url).await, ALICE), "Enabled");

        // The cluster admin admits the namespace (its labels): everything converges, no spec change.
        label_namespace(&ctx, &ctx.namespace, "cloudsso-e2e/team", &tag).await;
        let policy: DirectoryMfaPolicy = ctx.wait_ready("by-ref", Some(&operator)).await;
        let common = &policy.status.unwrap().common;
        assert_eq!(common.cloud_account.as_deref(), Some(named.as_str()));
        assert!(common.account_id.is_some());
        ctx.wait_ready::<UserMfaSetting>("by-default", Some(&operator)).await;
        ctx.wait_ready::<RamUserMfaStatus>("ram", Some(&operator)).await;
        assert_eq!(cloud_user_setting(&state(&url).await, ALICE), "Disabled");
        // The account's own status: its credentials resolve, and to which account.
        let accounts: Api<CloudAccount> = Api::all(ctx.client.clone());
        let resolved = eventually("the CloudAccount Ready", WAIT, || async {
            accounts.get(&named).await.ok().and_then(|a| ready(&a.status))
        }, |ready| ready.as_ref().is_some_and(|(status, _, _)| status == "True")).await;
        assert!(resolved.unwrap().2.contains("the credentials resolve"));

        // A directory outside the account's directoryIds: refused again, the RAM report is not.
        account(&ctx, &named, json!({"endpoint": url, "credentials": {"operator": {}}, "namespaceSelector": selector,
            "directoryIds": ["d-someotherdirectory"]})).await;
        let message = wait_reason::<DirectoryMfaPolicy>(&ctx, "by-ref", "AccountNotAllowed", &operator).await;
        assert!(message.contains("directoryIds"), "{message}");
        ctx.wait_ready::<RamUserMfaStatus>("ram", Some(&operator)).await;
        let writes = write_calls(&url).await;
        ctx.api::<DirectoryMfaPolicy>().patch("by-ref", &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"mfaAuthenticationSettings": "Disabled"}}))).await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(write_calls(&url).await, writes, "a refused directory is never written");

        // An account whose Secret is missing says so in its status.
        account(&ctx, &format!("broken-{tag}"), json!({"credentials": {"secretRef": {"namespace": ctx.namespace, "name": "absent"}},
            "namespaceSelector": {}})).await;
        let broken = eventually("the broken CloudAccount not Ready", WAIT, || async {
            accounts.get(&format!("broken-{tag}")).await.ok().and_then(|a| ready(&a.status))
        }, |ready| ready.as_ref().is_some_and(|(status, _, _)| status == "False")).await;
        assert_eq!(broken.unwrap().1, "CredentialsMissing");
        for name in [named.as_str(), "default", &format!("broken-{tag}")] {
            delete_account(&ctx, name).await;
        }
        operator.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_server_refuses_endpoints_and_regions_beside_an_account() {
    let _serial = SERIAL.lock().await;
    harness::with_namespace("tenancy-cel", |ctx| async move {
        let refused = |spec: serde_json::Value| {
            let ctx = ctx.clone();
            async move {
                let mut full = json!({"directoryId": DIRECTORY, "mfaAuthenticationSettings": "Enabled"});
                full.as_object_mut().unwrap().extend(spec.as_object().unwrap().clone());
                let object: DirectoryMfaPolicy = serde_json::from_value(json!({
                    "apiVersion": "cloudsso.mfa-operator.dev/v1alpha1", "kind": "DirectoryMfaPolicy",
                    "metadata": {"name": "p"}, "spec": full})).unwrap();
                match ctx.api::<DirectoryMfaPolicy>().create(&Default::default(), &object).await {
                    Err(kube::Error::Api(status)) => status.message,
                    other => panic!("accepted: {other:?}"),
                }
            }
        };
        let message = refused(json!({"endpoint": "http://127.0.0.1:1", "accountRef": {"name": "a"}})).await;
        assert!(message.contains("only together with credentialsSecretRef"), "{message}");
        let message = refused(json!({"endpoint": "http://127.0.0.1:1"})).await;
        assert!(message.contains("only together with credentialsSecretRef"), "{message}");
        let message = refused(json!({"region": "cn-hangzhou"})).await;
        assert!(message.contains("only together with credentialsSecretRef"), "{message}");
        let message = refused(json!({"accountRef": {"name": "a"}, "credentialsSecretRef": {"name": "s"}})).await;
        assert!(message.contains("at most one of credentialsSecretRef and accountRef"), "{message}");
        let message = refused(json!({"endpoint": "http://127.0.0.1:1/path", "credentialsSecretRef": {"name": "s"}})).await;
        assert!(message.contains("no path"), "{message}");
        let message = refused(json!({"endpoint": "file:///etc/passwd", "credentialsSecretRef": {"name": "s"}})).await;
        assert!(message.contains("http(s)://host"), "{message}");
        let message = refused(json!({"allowedVerificationTypes": ["SMS"], "mfaAuthenticationSettings": "Byuser"})).await;
        assert!(message.contains("Unsupported value"), "{message}");
        let message = refused(json!({"directoryId": format!("d-{}", "a".repeat(200))})).await;
        assert!(message.contains("128"), "{message}");
        // The namespace's own keys may go to its own endpoint.
        ctx.apply::<DirectoryMfaPolicy>(json!({"metadata": {"name": "own"}, "spec": {
            "directoryId": DIRECTORY, "mfaAuthenticationSettings": "Enabled",
            "endpoint": "http://127.0.0.1:1", "region": "cn-hangzhou", "credentialsSecretRef": {"name": SECRET}}})).await;
        // An account with both kinds of credentials, or neither, is refused too.
        let accounts: Api<CloudAccount> = Api::all(ctx.client.clone());
        for credentials in [json!({}), json!({"operator": {}, "secretRef": {"namespace": "n", "name": "s"}})] {
            let object: CloudAccount = serde_json::from_value(json!({
                "apiVersion": "cloudsso.mfa-operator.dev/v1alpha1", "kind": "CloudAccount",
                "metadata": {"name": format!("bad-{}", suffix())},
                "spec": {"credentials": credentials, "namespaceSelector": {}}})).unwrap();
            match accounts.create(&Default::default(), &object).await {
                Err(kube::Error::Api(status)) => assert!(status.message.contains("exactly one of secretRef or operator"), "{}", status.message),
                other => panic!("accepted: {other:?}"),
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_user_settings_for_one_user_in_two_namespaces_never_fight() {
    let _serial = SERIAL.lock().await;
    harness::with_namespace("tenancy-users-a", |first| async move {
        harness::with_namespace("tenancy-users-b", |second| async move {
            let (url, _emulator) = start_emulator().await;
            for ctx in [&first, &second] {
                ctx.credentials_secret(SECRET, ACCESS_KEY_ID, ACCESS_KEY_SECRET).await;
            }
            let operator = first.start_cluster_operator("2s", &[]).await;
            first.apply::<UserMfaSetting>(harness::user_setting("alice-off", &url, "alice", "Disabled")).await;
            first.wait_ready::<UserMfaSetting>("alice-off", Some(&operator)).await;
            assert_eq!(cloud_user_setting(&state(&url).await, ALICE), "Disabled");
            let writes = write_calls(&url).await;
            assert_eq!(writes, 1);
            // Another namespace names the same user (by id, with other keys' Secret of the same account).
            second.apply::<UserMfaSetting>(json!({"metadata": {"name": "alice-on"}, "spec": {
                "directoryId": DIRECTORY, "userId": ALICE, "userMfaAuthenticationSettings": "Enabled",
                "endpoint": url, "credentialsSecretRef": {"name": SECRET}}})).await;
            let message = wait_reason::<UserMfaSetting>(&second, "alice-on", "Conflict", &operator).await;
            assert!(message.contains(&format!("{}/alice-off", first.namespace)), "{message}");
            // Several resyncs: no write from the younger, nothing flips.
            tokio::time::sleep(Duration::from_secs(8)).await;
            assert_eq!(write_calls(&url).await, writes, "{}", operator.log_tail());
            assert_eq!(cloud_user_setting(&state(&url).await, ALICE), "Disabled");
            let owner: UserMfaSetting = first.get("alice-off").await.unwrap();
            assert!(harness::is_ready(&owner));
            operator.stop().await;
        })
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_squatting_older_policy_at_another_endpoint_blocks_nobody() {
    let _serial = SERIAL.lock().await;
    harness::with_namespace("tenancy-squat", |squatter| async move {
        harness::with_namespace("tenancy-owner", |owner| async move {
            let (real, _real) = start_emulator().await;
            let (fake, _fake) = start_emulator().await;
            for ctx in [&squatter, &owner] {
                ctx.credentials_secret(SECRET, ACCESS_KEY_ID, ACCESS_KEY_SECRET)
                    .await;
            }
            let operator = squatter.start_cluster_operator("3s", &[]).await;
            let policy = |name: &str, url: &str, setting: &str| {
                json!({"metadata": {"name": name}, "spec": {
                "directoryId": DIRECTORY, "mfaAuthenticationSettings": setting,
                "endpoint": url, "credentialsSecretRef": {"name": SECRET}}})
            };
            squatter
                .apply::<DirectoryMfaPolicy>(policy("squat", &fake, "Disabled"))
                .await;
            squatter
                .wait_ready::<DirectoryMfaPolicy>("squat", Some(&operator))
                .await;
            owner
                .apply::<DirectoryMfaPolicy>(policy("corp", &real, "Enabled"))
                .await;
            owner
                .wait_ready::<DirectoryMfaPolicy>("corp", Some(&operator))
                .await;
            assert_eq!(directory_setting(&state(&real).await), "Enabled");
            assert_eq!(directory_setting(&state(&fake).await), "Disabled");
            let squat: DirectoryMfaPolicy = squatter.get("squat").await.unwrap();
            assert!(
                squat.status.unwrap().contenders.is_empty(),
                "a claim at another endpoint is no contender"
            );
            operator.stop().await;
        })
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn restore_after_the_owner_changed_does_not_write() {
    let _serial = SERIAL.lock().await;
    harness::with_namespace("tenancy-old", |older| async move {
        harness::with_namespace("tenancy-young", |younger| async move {
            let (url, _emulator) = start_emulator().await;
            let tag = suffix();
            let named = format!("shared-{tag}");
            account(&older, &named, json!({"endpoint": url, "credentials": {"operator": {}},
                "namespaceSelector": {"matchLabels": {"cloudsso-e2e/team": tag}}})).await;
            younger.credentials_secret(SECRET, ACCESS_KEY_ID, ACCESS_KEY_SECRET).await;
            let operator = older.start_cluster_operator("2s", &OPERATOR_ENV).await;
            // The older policy is not admitted yet: it claims nothing.
            older.apply::<DirectoryMfaPolicy>(json!({"metadata": {"name": "old"}, "spec": {
                "directoryId": DIRECTORY, "mfaAuthenticationSettings": "Enabled", "accountRef": {"name": named}}})).await;
            wait_reason::<DirectoryMfaPolicy>(&older, "old", "AccountNotAllowed", &operator).await;
            // The younger, with the same account's keys at the same endpoint, owns and changes it.
            younger.apply::<DirectoryMfaPolicy>(json!({"metadata": {"name": "young"}, "spec": {
                "directoryId": DIRECTORY, "mfaAuthenticationSettings": "Disabled", "deletionPolicy": "Restore",
                "endpoint": url, "credentialsSecretRef": {"name": SECRET}}})).await;
            let young: DirectoryMfaPolicy = younger.wait_ready("young", Some(&operator)).await;
            assert!(young.status.unwrap().restore_to.is_some());
            assert_eq!(directory_setting(&state(&url).await), "Disabled");
            // The older is admitted: it owns the directory now, the younger stands down.
            label_namespace(&older, &older.namespace, "cloudsso-e2e/team", &tag).await;
            older.wait_ready::<DirectoryMfaPolicy>("old", Some(&operator)).await;
            let message = wait_reason::<DirectoryMfaPolicy>(&younger, "young", "Conflict", &operator).await;
            assert!(message.contains(&format!("{}/old", older.namespace)), "{message}");
            assert_eq!(directory_setting(&state(&url).await), "Enabled");
            // Deleting the younger (Restore) writes nothing: the directory is the older's.
            let writes = write_calls(&url).await;
            younger.api::<DirectoryMfaPolicy>().delete("young", &DeleteParams::default()).await.unwrap();
            younger.gone::<DirectoryMfaPolicy>("young").await;
            tokio::time::sleep(Duration::from_secs(3)).await;
            assert_eq!(write_calls(&url).await, writes, "{}", operator.log_tail());
            assert_eq!(directory_setting(&state(&url).await), "Enabled");
            delete_account(&older, &named).await;
            operator.stop().await;
        })
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn restore_to_follows_the_object_the_credentials_reach() {
    let _serial = SERIAL.lock().await;
    harness::with_namespace("tenancy-moved", |ctx| async move {
        let (first, _first) = start_emulator().await;
        let (second, _second) = start_emulator().await;
        change_state(&second, |s| s["directories"][0]["mfaAuthenticationSettings"] = json!("OnlyRiskyLogin")).await;
        ctx.credentials_secret(SECRET, ACCESS_KEY_ID, ACCESS_KEY_SECRET).await;
        let operator = ctx.start_operator("2s", &[]).await;
        let policy = |url: &str| json!({"metadata": {"name": "corp"}, "spec": {
            "directoryId": DIRECTORY, "mfaAuthenticationSettings": "Enabled", "deletionPolicy": "Restore",
            "endpoint": url, "credentialsSecretRef": {"name": SECRET}}});
        ctx.apply::<DirectoryMfaPolicy>(policy(&first)).await;
        ctx.wait_ready::<DirectoryMfaPolicy>("corp", Some(&operator)).await;
        assert_eq!(directory_setting(&state(&first).await), "Enabled");
        // The same spec now reaches another endpoint: what it restores is that directory's value.
        ctx.apply::<DirectoryMfaPolicy>(policy(&second)).await;
        eventually("the second directory Enabled", WAIT, || async { directory_setting(&state(&second).await) },
            |setting| setting == "Enabled").await;
        let moved: DirectoryMfaPolicy = ctx.wait_ready("corp", Some(&operator)).await;
        let restore_to = moved.status.unwrap().restore_to.unwrap();
        assert_eq!(restore_to.mfa_authentication_settings.as_deref(), Some("OnlyRiskyLogin"));
        ctx.api::<DirectoryMfaPolicy>().delete("corp", &DeleteParams::default()).await.unwrap();
        ctx.gone::<DirectoryMfaPolicy>("corp").await;
        assert_eq!(directory_setting(&state(&second).await), "OnlyRiskyLogin");
        // The first directory keeps what the policy left there (nothing of the second is written to it).
        assert_eq!(directory_setting(&state(&first).await), "Enabled");
        operator.stop().await;
    })
    .await;
}
